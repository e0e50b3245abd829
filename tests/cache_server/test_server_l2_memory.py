"""L2's memory over HTTP: /health tells the operator when the L2 server cannot serve a
cache (no memory limit, or a policy that evicts nothing) without calling the service
degraded, and a write a full engine refuses is a 503 that says so."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from cache_server.keys import AGENT


async def fill(raw: Any, most: int = 10_000) -> None:
    """New 1 kB keys without a TTL, at most ``most`` (4 MiB fill in about 3,000)."""
    for _ in range(most):
        await raw.set(f"junk:{uuid.uuid4().hex}", b"j" * 1000)


async def test_health_warns_of_a_server_without_a_limit_and_stays_ok(
    make_client: Any, config_factory: Any, engine: Any, prefix: str
) -> None:
    # The session engine runs as a server does out of the box: maxmemory 0, noeviction.
    config = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={"l1": {"type": "memory", "max_size_mb": 4}, "l2": {"type": "redis"}},
    )
    client = await make_client(config)
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["reasons"] == []
    (warning,) = body["warnings"]
    assert "maxmemory 0" in warning and "noeviction" in warning
    assert "volatile-lru" in warning  # what to set
    # It still serves.
    assert (await client.post("/cache", json={"key": "k", "value": 1})).status == 200


async def test_health_has_no_warnings_with_l1_alone(make_client: Any) -> None:
    body = await (await (await make_client()).get("/health")).json()
    assert "warnings" not in body


async def test_a_write_the_full_embedded_engine_refuses_is_a_503_that_says_it_is_full(
    make_client: Any, config_factory: Any, tmp_path: Path
) -> None:
    from redis.exceptions import OutOfMemoryError

    config = config_factory(
        redis={"url": "embedded", "data_dir": str(tmp_path / "engine")},
        cache_tiers={
            "l1": {"type": "memory", "max_size_mb": 4},
            "l2": {"type": "redis", "eviction_policy": "noeviction", "max_memory_mb": 4},
        },
    )
    client = await make_client(config)
    assert (await client.post("/cache", json={"key": "kept", "value": 1})).status == 200
    raw = client.app[AGENT].l2.client
    for _ in range(20):  # the engine's buffers shrink now and then: fill it again
        with pytest.raises(OutOfMemoryError):  # another client's keys, no TTL, fill it
            await fill(raw)
        resp = await client.post("/cache", json={"key": "new", "value": "v" * 500})
        if resp.status != 200:
            break
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "tier_unavailable"
    assert body["error"]["message"].startswith("L2 is full")
    assert "max_memory_mb" in body["error"]["message"]
    resp = await client.get("/cache/kept")  # the engine still answers
    assert resp.status == 200
    assert (await (await client.get("/health")).json())["status"] == "ok"
