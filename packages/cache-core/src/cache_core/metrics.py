"""What a metrics recorder is, and the observer it may install for timed operations.

The agent counts with plain integers on its hot path (:class:`cache_core.stats.Stats`); a
recorder reads them when its exporter collects and never hooks into an L1 hit. Operations
that leave the process (L2 calls, loader calls, write-back flushes) are reported, as they
finish, to the agent's :class:`OperationObserver`; a recorder installs its own with
``agent.observe(observer)``. ``monitoring.recorders`` names the recorders to start (all
installed ones by default); each is built as ``Recorder(options, context)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from cache_core.agent_view import AgentView


@runtime_checkable
class MetricsRecorder(Protocol):
    PLUGIN_NAME: ClassVar[str]

    async def start(self, agent: AgentView) -> None: ...
    async def close(self) -> None: ...


class OperationObserver(Protocol):
    """Told of every operation that leaves the process, when it ends."""

    def l2_call(self, op: str, seconds: float, ok: bool) -> None:
        """An L2 tier method (``get``, ``set_many``, ...) took ``seconds``."""

    def loader_call(self, loader: str, seconds: float, outcome: str) -> None:
        """A loader call ended: ``outcome`` is ``ok``, ``not_found`` or ``error``."""

    def flush(self, seconds: float, items: int, ok: bool) -> None:
        """A write-back flush of ``items`` writes took ``seconds``."""

    def span(
        self, name: str, attributes: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        """A trace span around the operation (a no-op context when not tracing)."""

    def untraced(self) -> contextlib.AbstractContextManager[Any]:
        """Within it, operations make no trace spans, the client libraries' neither: work
        the agent does on its own schedule (the periodic L2 count), of no caller's trace."""


class NullObserver:
    """The default: nothing is measured beyond the agent's own counters."""

    def l2_call(self, op: str, seconds: float, ok: bool) -> None:
        return None

    def loader_call(self, loader: str, seconds: float, outcome: str) -> None:
        return None

    def flush(self, seconds: float, items: int, ok: bool) -> None:
        return None

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
        yield None

    def untraced(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()
