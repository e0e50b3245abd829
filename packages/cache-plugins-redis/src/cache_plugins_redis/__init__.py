"""The Redis/Valkey L2 tier for the Caching Agent: standalone, Sentinel, Cluster, embedded."""

from cache_plugins_redis.engine import EmbeddedEngine, find_engine_binary
from cache_plugins_redis.tier import RedisTier

__all__ = ["EmbeddedEngine", "RedisTier", "find_engine_binary"]
