"""The statistics the agent reports, and the background work that keeps them current.

:meth:`StatsReport.get` answers from memory (the description's ``agent.get_stats()`` is a
plain call): L2's key count is the last periodic count, with its age. :meth:`fetch`
counts L2 now. The alert monitor is sampled on its own interval here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from cache_core.alerts import AlertMonitor
from cache_core.config import MonitoringSection
from cache_core.errors import CorruptEntryError, TierUnavailableError
from cache_core.frames import CodecSet
from cache_core.stats import Stats
from cache_core.strategies import WriteBuffer
from cache_core.tiers.base import LocalTier
from cache_core.tiers.guarded import GuardedTier


class StatsReport:
    """The counters, the tiers' sizes and the L2 key count, as one summary."""

    def __init__(
        self,
        *,
        stats: Stats,
        l1: LocalTier,
        l2: GuardedTier | None,
        buffering: Sequence[WriteBuffer],
        codecs: CodecSet,
        alerts: AlertMonitor,
        plugin_names: list[str],
        monitoring: MonitoringSection,
        count_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.stats = stats
        self.l1 = l1
        self.l2 = l2
        self.buffering = list(buffering)
        self.codecs = codecs
        self.alerts = alerts
        self.plugin_names = plugin_names
        self.monitoring = monitoring
        self.count_timeout = count_timeout
        self.clock = clock
        self.started_at: float | None = None
        self._l2_count: tuple[int, float] | None = None
        """L2's key count and when (``clock``) it was taken."""
        self._l2_count_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.alerts.enabled:
            self._tasks.append(asyncio.create_task(self._sample_alerts(), name="alerts"))
        if self.l2 is not None:
            # The first count is waited for (bounded), so get() has a number at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._count_unasked(), self.count_timeout)
            interval = self.monitoring.l2_count_interval
            if interval > 0:
                self._tasks.append(
                    asyncio.create_task(self._count_l2_every(interval), name="l2-count")
                )
        self.started_at = time.time()

    async def close(self) -> None:
        self.started_at = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def write_back_pending(self) -> int:
        """Writes buffered for L2 and not yet flushed."""
        return sum(buffer.held_keys() for buffer in self.buffering)

    def get(self) -> dict[str, Any]:
        """The description's statistics plus per-tier hits, L1 entries and write-back state,
        from what is known now: ``l2_size_keys`` is L2's key count as of its last count
        (``l2_size_keys_age_seconds`` ago; None before the first)."""
        summary = self.stats.summary()
        l1 = self.l1
        summary["l1_size_bytes"] = l1.size_bytes
        summary["l1_max_bytes"] = l1.max_bytes
        summary["l1_entries"] = len(l1)
        summary["l1_evictions"] = l1.evictions
        # An L1 plugin may describe its policy's state (W-TinyLFU: the window, the guard).
        describe = getattr(l1, "describe", None)
        if callable(describe):
            summary["l1_policy"] = describe()
        if self.l2 is None:
            summary["l2_size_keys"] = 0
        else:
            counted = self._l2_count
            summary["l2_size_keys"] = None if counted is None else counted[0]
            summary["l2_size_keys_age_seconds"] = (
                None if counted is None else round(max(0.0, self.clock() - counted[1]), 3)
            )
            if self._l2_count_error is not None:
                summary["l2_error"] = self._l2_count_error
        summary["tiers"] = ["l1", "l2"] if self.l2 is not None else ["l1"]
        summary["write_back_pending"] = self.write_back_pending()
        started = self.started_at
        summary["uptime_seconds"] = 0 if started is None else round(time.time() - started, 3)
        summary["plugins"] = self.plugin_names
        if self.l2 is not None:
            summary["compression"] = self.codecs.summary()
        summary["alerts"] = self.alerts.describe()
        return summary

    async def fetch(self) -> dict[str, Any]:
        """:meth:`get` with L2's keys counted now (a SCAN of the prefix): None, with
        ``l2_error``, when L2 cannot count them now."""
        counted = await self.count_l2()
        summary = self.get()
        if not counted:
            summary["l2_size_keys"] = summary["l2_size_keys_age_seconds"] = None
        return summary

    async def count_l2(self) -> bool:
        """Count L2's keys now; False when L2 could not (the last count stays, aging)."""
        if self.l2 is None:
            return True
        try:
            self._l2_count = (await self.l2.count(), self.clock())
        except (TierUnavailableError, CorruptEntryError) as exc:
            # L2 away: the rest of the numbers still answer.
            self._l2_count_error = str(exc)
            return False
        self._l2_count_error = None
        return True

    async def _count_unasked(self) -> bool:
        """:meth:`count_l2` not on anyone's behalf: it makes no trace span (a root span
        every ``l2_count_interval``, of no caller's trace, would be noise)."""
        assert self.l2 is not None
        with self.l2.observer.untraced():
            return await self.count_l2()

    async def _count_l2_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._count_unasked()

    async def _sample_alerts(self) -> None:
        while True:
            await asyncio.sleep(self.monitoring.alert_interval)
            self.alerts.sample()
