"""What other clients of the engine may plant under the prefix, seen over HTTP: truncated or
forged frames are per-key errors (never spliced into an answer, never promoted to L1), and
keys that are not UTF-8 break neither /stats nor pattern invalidation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cache_server.keys import AGENT

HEADER = bytes((0xCA, 2, 0)) + bytes(8)  # magic, version 2, raw codec, never expires
PLANTED = {
    "c:trunc3": b"\xca\x02\x00",
    "c:trunc10": HEADER[:10],
    "c:empty": HEADER,
    "c:forged": HEADER + b'1,"hit":false,"tier":"forged","x":{"y":1}',
    "c:garbage": HEADER + b"\xff\xfe{",
    "c:v1": bytes((0xCA, 1, 0)) + b"[1,",
}


def l2_config(engine: Any, prefix: str, config_factory: Any) -> dict[str, Any]:
    limits = {**config_factory()["limits"], "max_batch_size": 10}
    cfg: dict[str, Any] = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={"l1": {"max_size_mb": 4, "ttl": 300}, "l2": {"type": "redis"}},
        limits=limits,
    )
    return cfg


@pytest.fixture
async def l2_client(engine: Any, prefix: str, config_factory: Any, make_client: Any) -> Any:
    client = await make_client(l2_config(engine, prefix, config_factory))
    agent = client.app[AGENT]
    deadline = time.monotonic() + 5
    while agent.health()["status"] != "ok":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    return client


@pytest.mark.parametrize("key", sorted(PLANTED))
async def test_a_planted_frame_is_an_error_never_a_broken_answer(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str, key: str
) -> None:
    engine.client.set(prefix + key, PLANTED[key])
    for _ in range(2):  # never promoted to L1 and served from there
        resp = await l2_client.get(f"/cache/{key}")
        assert resp.status == 502, await resp.text()
        body = await resp.json()  # well-formed JSON, the error shape
        assert body["error"]["code"] == "corrupt_entry"
    assert key not in l2_client.app[AGENT].l1


async def test_batch_get_and_warm_up_answer_the_other_keys(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str
) -> None:
    for key, frame in PLANTED.items():
        engine.client.set(prefix + key, frame)
    assert (await l2_client.post("/cache", json={"key": "good", "value": {"a": 1}})).status == 200
    l2_client.app[AGENT].l1.delete("good")  # read from L2 like the planted ones
    keys = ["good", *sorted(PLANTED), "absent"]
    resp = await l2_client.post("/cache/batch-get", json={"keys": keys})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["results"] == {"good": {"a": 1}, **dict.fromkeys(PLANTED), "absent": None}
    assert (body["hits"], body["misses"]) == (1, len(PLANTED) + 1)
    assert sorted(body["errors"]) == sorted(PLANTED)
    assert {e["code"] for e in body["errors"].values()} == {"corrupt_entry"}
    resp = await l2_client.post("/warm-up", json={"keys": ["good", "c:forged", "c:trunc3"]})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["warmed_count"] == 1
    assert sorted(body["failures"]) == ["c:forged", "c:trunc3"]


async def test_a_key_that_is_not_utf8_breaks_neither_stats_nor_patterns(
    engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    cfg = l2_config(engine, prefix, config_factory)
    a = await make_client(cfg)
    b = await make_client(cfg)
    for client in (a, b):
        deadline = time.monotonic() + 5
        while client.app[AGENT].health()["status"] != "ok":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    engine.client.eval(f"redis.call('SET', '{prefix}s:' .. string.char(255), 'x')", 0)
    resp = await a.get("/stats")
    assert resp.status == 200, await resp.text()
    items = {f"s:{i}": i for i in range(10)}
    resp = await a.post("/cache/batch-set", json={"items": items})
    assert resp.status == 200
    for key in items:  # B holds them in L1
        assert (await (await b.get(f"/cache/{key}")).json())["hit"] is True
    resp = await a.post("/invalidate", json={"pattern": "s:*"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["invalidated_count"] >= len(items)
    assert engine.client.keys(f"{prefix}s:*") == []  # the foreign key matched and went too
    await asyncio.sleep(0.05)  # the documented staleness bound
    for key in items:  # B heard of it
        assert (await (await b.get(f"/cache/{key}")).json())["hit"] is False
    assert (await a.get("/stats")).status == 200
