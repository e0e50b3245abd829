"""Caller patterns are bounded: a hostile one is a 400 before it reaches any tier."""

from __future__ import annotations

from typing import Any

import pytest

from cache_server import create_app

CONFIG = {"cache_tiers": {"l1": {"max_size_mb": 1}}, "compression": {"enable": False}}


@pytest.mark.parametrize(
    ("limits", "pattern", "message"),
    [
        ({}, "user:[0-9]*", "class"),
        ({"max_pattern_wildcards": 3}, "*:*:*:*", "wildcards"),
        ({"max_pattern_length": 10}, "user:*:profile", "characters long"),
        ({}, "*" * 9, "wildcards"),
    ],
)
async def test_hostile_pattern_is_refused_and_changes_nothing(
    aiohttp_client: Any, limits: dict[str, Any], pattern: str, message: str
) -> None:
    client = await aiohttp_client(create_app({**CONFIG, "limits": limits}, env={}))
    await client.post("/cache", json={"key": "user:1:profile", "value": 1})
    resp = await client.post("/invalidate", json={"pattern": pattern})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "invalid_key"
    assert message in body["error"]["message"]
    assert (await (await client.get("/cache/user:1:profile")).json())["hit"] is True


async def test_escaped_metacharacters_are_not_wildcards(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(CONFIG, env={}))
    await client.post("/cache", json={"key": "a*b", "value": 1})
    await client.post("/cache", json={"key": "axb", "value": 2})
    resp = await client.post("/invalidate", json={"pattern": "a\\*b"})
    assert (await resp.json())["invalidated_count"] == 1
    assert (await (await client.get("/cache/axb")).json())["hit"] is True


async def test_classes_are_allowed_when_configured(aiohttp_client: Any) -> None:
    config = {**CONFIG, "limits": {"allow_pattern_classes": True}}
    client = await aiohttp_client(create_app(config, env={}))
    await client.post("/cache/batch-set", json={"items": {"u1": 1, "u2": 2, "u3": 3}})
    resp = await client.post("/invalidate", json={"pattern": "u[12]"})
    assert (await resp.json())["invalidated_count"] == 2
