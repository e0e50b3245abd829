"""The embedded engine as ``serve --workers N`` shares it (core's ``SharedEngine``).

The parent starts the one engine ``redis.url: embedded`` asks for and each worker's tier
connects to its socket through ``REDIS_URL``, the environment override of ``redis.url``:
a worker's tier then starts no engine of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from attrs import define

from cache_plugins_redis.engine import EmbeddedEngine
from cache_plugins_redis.tier import RedisTier

if TYPE_CHECKING:
    from cache_core.tiers.base import RemoteTier


@define
class WorkersEngine:
    engine: EmbeddedEngine

    async def start(self) -> None:
        await self.engine.start()  # an EngineError says why in one line

    async def stop(self) -> None:
        await self.engine.stop()

    def worker_env(self) -> Mapping[str, str]:
        return {"REDIS_URL": self.engine.url}


def for_agent_l2(l2: RemoteTier | None) -> WorkersEngine | None:
    """The engine workers share when ``l2`` is a Redis tier asking for an embedded one."""
    if not isinstance(l2, RedisTier):
        return None
    engine = l2.embedded_engine()  # with the tier's memory bounds (max_memory_mb)
    return None if engine is None else WorkersEngine(engine)
