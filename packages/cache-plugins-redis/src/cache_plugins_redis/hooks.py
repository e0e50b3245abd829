"""Registers the Redis/Valkey L2 tier and the invalidation index kept in Redis with the
Caching Agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cache_core import hookimpl
from cache_plugins_redis.index import RedisIndex
from cache_plugins_redis.settings import RedisSettings
from cache_plugins_redis.shared_engine import for_agent_l2
from cache_plugins_redis.tier import RedisTier

if TYPE_CHECKING:
    from cache_core.agent_view import AgentView
    from cache_core.shared_engine import SharedEngine


@hookimpl
def cache_register_tiers() -> Sequence[type[Any]]:
    return [RedisTier]


@hookimpl
def cache_register_settings() -> Sequence[type[Any]]:
    return [RedisSettings]


@hookimpl
def cache_register_invalidators() -> Sequence[type[Any]]:
    return [RedisIndex]


@hookimpl
def cache_shared_engine(agent: AgentView) -> SharedEngine | None:
    return for_agent_l2(agent.l2)
