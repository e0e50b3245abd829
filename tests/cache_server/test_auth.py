"""Bearer tokens and per-token namespaces."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from cache_core import ConfigError
from cache_server import create_app

ADMIN = "admin-token-0123456789"
TEAM_A = "team-a-token-0123456789"
TEAM_B = "team-b-token-0123456789"

CONFIG: dict[str, Any] = {
    "cache_tiers": {"l1": {"max_size_mb": 1}},
    "compression": {"enable": False},
    "invalidation": {"event_triggers": {"profile_update": ["user:{user_id}:*", "tag:users"]}},
    "server": {
        "auth_token": ADMIN,
        "tokens": [
            {"token": TEAM_A, "namespace": "team-a"},
            {"token": TEAM_B, "namespace": "team-b"},
        ],
    },
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(CONFIG, env={}))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": ADMIN},
        {"Authorization": f"Basic {ADMIN}"},
        {"Authorization": "Bearer "},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/cache/k"),
        ("POST", "/cache"),
        ("DELETE", "/cache/k"),
        ("GET", "/stats"),
        ("POST", "/invalidate"),
        ("GET", "/metrics"),
        ("POST", "/cache/batch-get"),
    ],
)
async def test_every_route_but_health_needs_a_valid_token(
    client: Any, headers: dict[str, str], method: str, path: str
) -> None:
    resp = await client.request(method, path, headers=headers, json={"key": "k", "value": 1})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_health_is_open_and_a_refused_write_changes_nothing(client: Any) -> None:
    assert (await client.get("/health")).status == 200
    await client.post("/cache", json={"key": "k", "value": 1})  # no token
    resp = await client.get("/cache/k", headers=bearer(ADMIN))
    assert (await resp.json())["hit"] is False


async def test_namespaces_keep_clients_apart(client: Any) -> None:
    for token, value in ((TEAM_A, "a"), (TEAM_B, "b")):
        resp = await client.post(
            "/cache",
            json={"key": "user:1:profile", "value": value, "tags": ["users"]},
            headers=bearer(token),
        )
        assert resp.status == 200
    got_a = await (await client.get("/cache/user:1:profile", headers=bearer(TEAM_A))).json()
    assert got_a == {"key": "user:1:profile", "value": "a", "hit": True, "tier": "l1"}
    batch = await client.post(
        "/cache/batch-get", json={"keys": ["user:1:profile"]}, headers=bearer(TEAM_B)
    )
    assert (await batch.json())["results"] == {"user:1:profile": "b"}
    # Patterns, tags and events of one client never reach the other's keys.
    for body in (
        {"pattern": "*"},
        {"tags": ["users"]},
        {"event": "profile_update", "context": {"user_id": 1}},
    ):
        resp = await client.post("/invalidate", json=body, headers=bearer(TEAM_A))
        assert resp.status == 200
        got_b = await (await client.get("/cache/user:1:profile", headers=bearer(TEAM_B))).json()
        assert got_b["value"] == "b", body
        await client.post(
            "/cache",
            json={"key": "user:1:profile", "value": "a", "tags": ["users"]},
            headers=bearer(TEAM_A),
        )
    # The admin token sees the namespaced keys as they are stored.
    admin = await (await client.get("/cache/team-b/user:1:profile", headers=bearer(ADMIN))).json()
    assert admin["value"] == "b"
    deleted = await client.delete("/cache/user:1:profile", headers=bearer(TEAM_A))
    assert (await deleted.json())["deleted"] is True
    got_b = await (await client.get("/cache/user:1:profile", headers=bearer(TEAM_B))).json()
    assert got_b["hit"] is True


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"auth_token": "short"}, "at least 16"),
        ({"tokens": [{"token": TEAM_A, "namespace": "a/b"}]}, "namespace"),
        ({"auth_token": TEAM_A, "tokens": [{"token": TEAM_A}]}, "twice"),
    ],
)
def test_bad_token_config_is_refused(server: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app({**CONFIG, "server": server}, env={})


def test_cache_api_token_env_sets_the_token() -> None:
    app = create_app({"compression": {"enable": False}}, env={"CACHE_API_TOKEN": ADMIN})
    from cache_server.keys import AGENT
    from cache_server.settings import ServerSettings

    assert app[AGENT].config.section(ServerSettings).auth_token == ADMIN


# -- issue 13, item 11: the scheme's case, and token bytes that are not text ------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_case_insensitive(client: Any, scheme: str) -> None:
    # RFC 9110 section 11.1: the auth-scheme is case-insensitive.
    resp = await client.get("/cache/k", headers={"Authorization": f"{scheme} {ADMIN}"})
    assert resp.status == 200


async def raw_get(client: Any, path: bytes, authorization: bytes) -> tuple[int, dict[str, Any]]:
    """GET ``path`` with an Authorization header of exactly these bytes (a client library
    would refuse to send some of them)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: %s\r\n\r\n"
            % (path, authorization)
        )
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head, answer
    return int(head.split()[1]), orjson.loads(body)


@pytest.mark.parametrize(
    "credentials",
    [
        b"Bearer \xff\xfe\xfd",
        b"Bearer \xc3\xa9t\xc3\xa9-token-0123456789",
        b"Bearer " + ADMIN.encode() + b"\xff",
        b"bearer \xed\xa0\x80",  # a UTF-8-encoded surrogate
    ],
)
async def test_a_token_that_is_not_ascii_is_a_401(client: Any, credentials: bytes) -> None:
    status, body = await raw_get(client, b"/stats", credentials)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_a_non_ascii_token_that_is_configured_is_accepted(aiohttp_client: Any) -> None:
    token = "jeton-été-0123456789"
    app = create_app({**CONFIG, "server": {"auth_token": token}}, env={})
    client = await aiohttp_client(app)
    status, body = await raw_get(client, b"/stats", b"Bearer " + token.encode())
    assert status == 200, body


# -- item 14: one rule on empty names for all, and /stats, /metrics for admins alone -----

EMPTY_NAMES = [
    ("/cache", {"key": "", "value": 1}),
    ("/cache", {"key": "k", "value": 1, "tags": ["ok", ""]}),
    ("/cache", {"key": "k", "value": 1, "dependencies": [""]}),
    ("/cache/batch-set", {"items": {"k": 1, "": 2}}),
    ("/cache/batch-set", {"items": {"k": 1}, "tags": [""]}),
    ("/cache/batch-get", {"keys": ["k", ""]}),
    ("/invalidate", {"pattern": ""}),
    ("/invalidate", {"tags": [""]}),
    ("/warm-up", {"keys": [""]}),
]


@pytest.mark.parametrize(("path", "payload"), EMPTY_NAMES)
async def test_an_empty_name_is_refused_alike_for_every_token(
    client: Any, path: str, payload: dict[str, Any]
) -> None:
    answers = {}
    for token in (ADMIN, TEAM_A):
        resp = await client.post(path, json=payload, headers=bearer(token))
        answers[token] = (resp.status, (await resp.json())["error"])
    assert answers[ADMIN][0] == 400, answers
    assert answers[TEAM_A] == answers[ADMIN]
    # and nothing was written under the namespace's bare prefix
    got = await (await client.get("/cache/team-a/", headers=bearer(ADMIN))).json()
    assert got["hit"] is False


@pytest.mark.parametrize("path", ["/stats", "/metrics"])
async def test_stats_and_metrics_are_for_admin_tokens_once_namespaces_exist(
    client: Any, path: str
) -> None:
    for token in (TEAM_A, TEAM_B):
        resp = await client.get(path, headers=bearer(token))
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"]["code"] == "forbidden"
    assert (await client.get(path, headers=bearer(ADMIN))).status == 200


async def test_without_namespaces_every_token_sees_stats(aiohttp_client: Any) -> None:
    config = {**CONFIG, "server": {"tokens": [{"token": TEAM_A}, {"token": TEAM_B}]}}
    client = await aiohttp_client(create_app(config, env={}))
    for token in (TEAM_A, TEAM_B):
        for path in ("/stats", "/metrics"):
            assert (await client.get(path, headers=bearer(token))).status == 200
