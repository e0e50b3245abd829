"""The config a fixture's agent or app runs on: a default on the session's store, under a
prefix of the test's own, with the test's overrides merged over it."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any


def private_prefix() -> str:
    """A key prefix no other test uses, so tests sharing one engine never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}:"


def default_config(url: str, prefix: str) -> dict[str, Any]:
    """L1 in front of the Redis tier at ``url``, every key under ``prefix``; the rest (the
    strategies, compression, limits...) as an install without a config file has it."""
    return {
        "redis": {"url": url, "key_prefix": prefix},
        "cache_tiers": {
            "l1": {"type": "memory", "max_size_mb": 16, "ttl": 60},
            "l2": {"type": "redis", "ttl": 3600},
        },
    }


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` over it: mappings merge key by key, all the way down;
    anything else (a list, a number, None) replaces what ``base`` had. Neither is changed."""
    result = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
