"""The L2 tests' config: the session engine (or the cluster), a prefix of the test's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection


@pytest.fixture
def l2_config(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 1, "ttl": 60}, "l2": {"type": "redis", "ttl": 3600}},
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
    }


@pytest.fixture
def cluster_config(cluster: list[Any], prefix: str) -> dict[str, Any]:
    """The 3-master cluster of tests/conftest.py, write_back flushed only when asked."""
    return {
        "redis": {
            "cluster_mode": True,
            "nodes": [{"host": "127.0.0.1", "port": node.port} for node in cluster],
            "key_prefix": prefix,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
    }


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """``sends()``: how many times any connection has sent (one per command or pipeline)."""
    count = 0
    real = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        await real(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return lambda: count
