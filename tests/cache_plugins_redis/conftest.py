"""The L2 tests' config: the session engine, a prefix of the test's own."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def l2_config(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 1, "ttl": 60}, "l2": {"type": "redis", "ttl": 3600}},
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
    }
