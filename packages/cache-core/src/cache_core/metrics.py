"""What a metrics recorder is: an exporter that reads the agent's counters when it collects.

The agent counts with plain integers on its hot path (:class:`cache_core.stats.Stats`); a
recorder never hooks into an operation. ``monitoring.recorders`` names the recorders to
start; each is built as ``Recorder(options, context)`` and started with the agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from cache_core.agent import CachingAgent


@runtime_checkable
class MetricsRecorder(Protocol):
    PLUGIN_NAME: ClassVar[str]

    async def start(self, agent: CachingAgent) -> None: ...
    async def close(self) -> None: ...
