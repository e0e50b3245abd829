"""Bearer tokens and per-token namespaces."""

from __future__ import annotations

from typing import Any

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

    assert app[AGENT].config.server.auth_token == ADMIN
