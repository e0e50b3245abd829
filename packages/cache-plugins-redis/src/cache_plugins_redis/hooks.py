"""Registers the Redis/Valkey L2 tier with the Caching Agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core import hookimpl
from cache_plugins_redis.tier import RedisTier


@hookimpl
def cache_register_tiers() -> Sequence[type[Any]]:
    return [RedisTier]
