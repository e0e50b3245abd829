"""Event invalidation's context and a namespaced client's scope: what a context value may
be, and a refused invalidation changing nothing once the namespace is put on."""

from __future__ import annotations

from typing import Any

import pytest

from cache_server import create_app

ADMIN = "admin-token-0123456789"
TEAM_A = "team-a-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def namespaced(aiohttp_client: Any, config_factory: Any) -> Any:
    cfg = config_factory(
        server={"auth_token": ADMIN, "tokens": [{"token": TEAM_A, "namespace": "team-a"}]}
    )
    return await aiohttp_client(create_app(cfg, env={}))


async def test_a_namespaced_event_target_too_long_once_scoped_changes_nothing(
    namespaced: Any,
) -> None:
    """Event targets are length-checked before the caller's namespace is put on; the scoped
    target is checked again only when its turn comes, after the request's pattern part has
    already removed keys: a 400 that changed something."""
    headers = bearer(TEAM_A)
    resp = await namespaced.post("/cache", json={"key": "doomed", "value": 1}, headers=headers)
    assert resp.status == 200
    user_id = "u" * 56  # user:<56>:* is 63 characters (limit 64); team-a/ makes it 70
    body = {"pattern": "doomed", "event": "user_profile_update", "context": {"user_id": user_id}}
    resp = await namespaced.post("/invalidate", json=body, headers=headers)
    if resp.status >= 400:
        got = await namespaced.get("/cache/doomed", headers=headers)
        assert (await got.json())["hit"] is True, "a refused invalidation removed a key"


@pytest.mark.parametrize("value", [None, True, {"id": 1}])
async def test_a_context_value_that_is_not_text_or_a_number_is_not_its_python_repr(
    client: Any, value: Any
) -> None:
    """fill() uses str(): a JSON null becomes "None", true "True", an object its Python
    repr, so {"user_id": null} invalidates user:None:* (200, silently the wrong keys)
    instead of a 400 naming the field (or null read as "no context")."""
    shown = str(value)
    for key in (f"user:{shown}:profile", "user:1:profile"):
        assert (await client.post("/cache", json={"key": key, "value": 1})).status == 200
    body = {"event": "user_profile_update", "context": {"user_id": value}}
    resp = await client.post("/invalidate", json=body)
    if resp.status == 200:
        # Accepted: then it cannot have matched the Python spelling of the value alone.
        got = await client.get("/cache/user:1:profile")
        assert (await got.json())["hit"] is False, f"{value!r} matched user:{shown}:* only"
    else:
        assert resp.status == 400


async def test_a_context_field_no_target_uses_is_refused_and_changes_nothing(
    client: Any,
) -> None:
    # A typo ("userid") must not widen the event to every user silently.
    for key in ("user:1:profile", "user:2:profile"):
        assert (await client.post("/cache", json={"key": key, "value": 1})).status == 200
    body = {"event": "user_profile_update", "context": {"userid": 1}}
    resp = await client.post("/invalidate", json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_value"
    assert "userid" in error["message"] and "user_id" in error["message"]
    got = await client.post("/cache/batch-get", json={"keys": ["user:1:profile", "user:2:profile"]})
    assert (await got.json())["hits"] == 2
