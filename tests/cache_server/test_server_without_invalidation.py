"""The HTTP API without cache-plugins-invalidation: a request with tags, dependencies or an
event is a 400 ``not_installed`` naming the extra and changes nothing; deletes and pattern
invalidation work."""

from __future__ import annotations

from typing import Any

import pytest

from cache_server import create_app

# Every installed plugin but tag, event and dependency invalidation.
WITHOUT_INVALIDATION = {"CACHING_AGENT_PLUGINS": "server,redis,compression"}

REFUSED = [
    ("/cache", {"key": "new", "value": 1, "tags": ["t"]}),
    ("/cache", {"key": "new", "value": 1, "dependencies": ["k"]}),
    ("/cache/batch-set", {"items": {"new": 1, "k": 2}, "tags": ["t"]}),
    ("/invalidate", {"tags": ["t"]}),
    ("/invalidate", {"pattern": "k", "tags": ["t"]}),
    ("/invalidate", {"event": "user_profile_update"}),
    ("/invalidate", {"pattern": "k", "event": "user_profile_update", "context": {"id": 1}}),
]


@pytest.fixture
async def client(aiohttp_client: Any, config_factory: Any) -> Any:
    config = config_factory(invalidation={})  # no event_triggers: they would need the plugin
    return await aiohttp_client(create_app(config, env=WITHOUT_INVALIDATION))


@pytest.mark.parametrize(("path", "body"), REFUSED)
async def test_a_request_needing_invalidation_is_a_400_naming_the_extra(
    client: Any, check_error: Any, path: str, body: dict[str, Any]
) -> None:
    assert (await client.post("/cache", json={"key": "k", "value": "old"})).status == 200
    before = await (await client.get("/stats")).json()
    resp = await client.post(path, json=body)
    assert resp.status == 400
    error = await check_error(resp)
    assert error["code"] == "not_installed"
    assert "caching-agent[invalidation]" in error["message"]
    after = await (await client.get("/stats")).json()
    for field in ("sets", "deletes", "l1_entries", "invalidated"):
        assert after[field] == before[field], field
    assert (await (await client.get("/cache/k")).json())["value"] == "old"
    assert (await (await client.get("/cache/new")).json())["hit"] is False


async def test_deletes_and_patterns_work_without_it(client: Any) -> None:
    items = {"user:1:profile": 1, "user:2:profile": 2, "other": 3}
    assert (await client.post("/cache/batch-set", json={"items": items})).status == 200
    resp = await client.post("/invalidate", json={"pattern": "user:*:profile"})
    assert await resp.json() == {"success": True, "invalidated_count": 2}
    resp = await client.delete("/cache/other")
    assert (await resp.json())["deleted"] is True
