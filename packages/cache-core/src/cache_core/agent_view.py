"""What a plugin may use of the running agent: hooks and metrics recorders are handed this.

:class:`AgentView` is a protocol, so a plugin types against the few members it may rely
on, never against :class:`~cache_core.agent.CachingAgent` and its internals; the agent
satisfies it (a test checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from cache_core.alerts import AlertMonitor
    from cache_core.config import Config
    from cache_core.frames import CodecSet
    from cache_core.metrics import OperationObserver
    from cache_core.stats import Stats
    from cache_core.tiers.base import LocalTier, RemoteTier


@runtime_checkable
class AgentView(Protocol):
    config: Config
    """The whole configuration, validated."""
    stats: Stats
    """The plain-integer counters (hits, misses, sets, ...), read when an exporter collects."""
    alerts: AlertMonitor
    codecs: CodecSet
    l1: LocalTier
    l2: RemoteTier | None
    """The L2 tier plugin itself (for what it is: its name, its client); the data path
    calls it through the agent's guard, and a plugin should too (:meth:`get_stats`)."""

    def observe(self, observer: OperationObserver) -> None:
        """Report L2 calls, loader calls and write-back flushes to ``observer`` from now on."""
        ...

    def get_stats(self) -> dict[str, Any]:
        """The statistics summary, from memory (L2's key count as of its last count)."""
        ...

    def write_back_pending(self) -> int:
        """Writes buffered for L2 and not yet flushed."""
        ...

    def health(self) -> dict[str, Any]:
        """The health document: ``status`` (``ok`` or ``degraded``), ``reasons``, ..."""
        ...
