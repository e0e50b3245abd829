"""A pattern within the caller limits never stalls an instance, nor its peers that get the
same pattern as a change notice (issue 13, item 3): ``*a*a*a*a*a*a*a*b`` over the key
``"a" * 500`` took a backtracking matcher forever."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cache_server.keys import AGENT

PATTERN = "*a*a*a*a*a*a*a*b"  # 8 wildcards: the default limit allows it
STUCK = "a" * 500  # the pattern's last b is nowhere: every way to place the a's is tried
GONE = "a" * 499 + "b"


async def hit(client: Any, key: str) -> bool:
    resp = await client.get(f"/cache/{key}")
    assert resp.status == 200, await resp.text()
    return bool((await resp.json())["hit"])


@pytest.mark.parametrize(
    "pattern", [PATTERN, "*[a]*a*?*a*a*a*b", "a*a*a*a*a*a*a*a\\b", "*a*a*a*a*a*a*a*[^a]"]
)
async def test_a_pathological_pattern_answers_at_once(
    config_factory: Any, make_client: Any, pattern: str, deadline: Any
) -> None:
    client = await make_client(config_factory(limits={"allow_pattern_classes": True}))
    for key in (STUCK, GONE):
        assert (await client.post("/cache", json={"key": key, "value": 1})).status == 200
    with deadline(5.0):
        resp = await client.post("/invalidate", json={"pattern": pattern})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["invalidated_count"] == 1
        assert await hit(client, STUCK)
        assert not await hit(client, GONE)


async def test_peers_that_get_the_pattern_as_a_notice_keep_answering(
    engine: Any, prefix: str, config_factory: Any, make_client: Any, deadline: Any
) -> None:
    cfg = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={"l1": {"max_size_mb": 4, "ttl": 300}, "l2": {"type": "redis"}},
        limits={},
    )
    a = await make_client(cfg)
    b = await make_client(cfg)
    for client in (a, b):
        wait = time.monotonic() + 5
        while client.app[AGENT].health()["status"] != "ok":  # notices flowing: L1 serves
            assert time.monotonic() < wait
            await asyncio.sleep(0.02)
    for key in (STUCK, GONE):
        assert (await a.post("/cache", json={"key": key, "value": 1})).status == 200
    await asyncio.sleep(0.1)  # a's write notices reach b before b fills its L1
    for key in (STUCK, GONE):
        assert await hit(b, key)
        assert key in b.app[AGENT].l1  # so b's L1 has the keys the notice sweeps
    with deadline(10.0):
        resp = await a.post("/invalidate", json={"pattern": PATTERN})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["invalidated_count"] == 1
        while GONE in b.app[AGENT].l1:  # until b has matched the notice against its L1
            assert await hit(b, STUCK)  # b answers all along
            await asyncio.sleep(0.02)
        assert await hit(b, STUCK)
        assert not await hit(b, GONE)
