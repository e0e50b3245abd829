"""The agent's lifecycle: a start that fails part-way closes what it had opened (an L2
pool, the write-back flusher) before the error reaches the caller, who then has no agent
to close."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar

import pytest

from cache_core import CachingAgent, hookimpl

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}


class FailingRecorder:
    PLUGIN_NAME: ClassVar[str] = "failing"

    def __init__(self, options: object, context: object) -> None:
        pass

    async def start(self, agent: object) -> None:
        raise RuntimeError("exporter unreachable")

    async def close(self) -> None:
        return None


def plugins(sqlite_tier: ModuleType, closed: list[str]) -> list[object]:
    class Tier(sqlite_tier.SqliteTier):  # type: ignore[name-defined, misc]
        PLUGIN_NAME: ClassVar[str] = "recorded"

        async def close(self) -> None:
            closed.append("l2")
            await super().close()

    class Plugin:
        @hookimpl
        def cache_register_tiers(self) -> Sequence[type[Any]]:
            return [Tier]

        @hookimpl
        def cache_register_metrics(self) -> Sequence[type[Any]]:
            return [FailingRecorder]

    return [sqlite_tier, Plugin()]


async def test_a_failed_start_closes_what_it_opened(sqlite_tier: ModuleType) -> None:
    closed: list[str] = []
    agent = CachingAgent.from_config(
        {
            "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "recorded"}},
            "compression": {"enable": False},
            "monitoring": {"recorders": ["failing"]},
        },
        plugins=plugins(sqlite_tier, closed),
        env=NO_PLUGINS,
    )
    with pytest.raises(RuntimeError, match="exporter unreachable"):
        await agent.start()
    assert closed == ["l2"]
    flusher = agent.strategies["write_back"]._task  # type: ignore[attr-defined]
    assert flusher is None  # stopped, not left running against a closed L2
    await agent.close()  # nothing was left open: closing again does nothing
    assert closed == ["l2"]
