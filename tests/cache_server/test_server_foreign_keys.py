"""A name under the prefix that is not UTF-8 (another client wrote it; ours never are),
seen over HTTP against a real engine: /stats answers and counts it, a pattern sweeps it
along with the rest, and the other instances hear of the sweep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cache_server.keys import AGENT


def l2_config(engine: Any, prefix: str, config_factory: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={"l1": {"max_size_mb": 4, "ttl": 300}, "l2": {"type": "redis"}},
    )
    return cfg


async def test_stats_and_patterns_with_a_non_utf8_name_under_the_prefix(
    engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    foreign = prefix.encode() + b"s:\xff"
    # As in the report: EVAL "redis.call('SET','<prefix>s:'..string.char(255),'x')" 0
    engine.client.eval(f"redis.call('SET', '{prefix}s:' .. string.char(255), 'x')", 0)
    assert engine.client.exists(foreign) == 1
    cfg = l2_config(engine, prefix, config_factory)
    a = await make_client(cfg)
    b = await make_client(cfg)
    for client in (a, b):
        deadline = time.monotonic() + 5
        while client.app[AGENT].health()["status"] != "ok":  # notices flowing: L1 serves
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    for i in range(3):
        assert (await a.post("/cache", json={"key": f"s:{i}", "value": i})).status == 200
    await asyncio.sleep(0.1)  # a's write notices reach b before b fills its L1
    for i in range(3):
        body = await (await b.get(f"/cache/s:{i}")).json()
        assert body["value"] == i

    resp = await a.get("/stats")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["l2_size_keys"] == 4  # the foreign name is counted

    resp = await a.post("/invalidate", json={"pattern": "s:*"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["invalidated_count"] == 3  # cache keys: the foreign one is not
    assert engine.client.exists(foreign) == 0
    assert engine.client.exists(*(f"{prefix}s:{i}" for i in range(3))) == 0
    deadline = time.monotonic() + 2
    while any(f"s:{i}" in b.app[AGENT].l1 for i in range(3)):
        assert time.monotonic() < deadline, "b never heard of the sweep"
        await asyncio.sleep(0.02)
    body = await (await b.get("/cache/s:0")).json()
    assert body["hit"] is False
