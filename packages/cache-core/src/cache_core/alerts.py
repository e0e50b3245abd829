"""Alerts on the hit rate and latency over a sliding window.

Every ``monitoring.alert_interval`` seconds the agent samples its counters; the window is
the last ``monitoring.alert_window`` seconds of samples. ``low_hit_rate`` is raised while
the window's hit rate is below ``monitoring.alert_on_low_hit_rate``; ``high_latency`` while
the window's p99 operation latency exceeds ``monitoring.alert_on_high_latency``
milliseconds. Each is judged only over a window holding enough of what it measures
(``monitoring.alert_min_lookups`` lookups, ``monitoring.alert_min_latency_samples`` timed
operations): the p99 of eleven operations is the slowest of them, so one slow call would
otherwise raise the alert just after start. An alert is a structured log event
(``alert_raised`` / ``alert_cleared``), a metric and an entry in /stats; it clears by
itself when its condition does, and also when its window falls below the minimum: an
alert states what the window shows, and a window too thin to judge (traffic stopped) shows
nothing, so keeping the alert would leave it up with a stale value for as long as the
service stays idle.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from attrs import define

from cache_core.config import MonitoringSection
from cache_core.stats import LatencyHistogram, Stats

log = logging.getLogger("cache_core.alerts")


@define
class Alert:
    name: str
    value: float
    threshold: float
    since: float
    """Wall-clock time (epoch seconds) it was raised."""
    message: str

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 4),
            "threshold": self.threshold,
            "since": round(self.since, 3),
            "message": self.message,
        }


@define(frozen=True)
class _Sample:
    at: float
    hits: int
    misses: int
    latency: tuple[int, ...]


class AlertMonitor:
    def __init__(
        self,
        settings: MonitoringSection,
        stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._stats = stats
        self._clock = clock
        self._samples: deque[_Sample] = deque()
        self.active: dict[str, Alert] = {}
        self.raised_total: dict[str, int] = {"low_hit_rate": 0, "high_latency": 0}

    @property
    def enabled(self) -> bool:
        s = self._settings
        return s.alert_on_low_hit_rate is not None or s.alert_on_high_latency is not None

    def sample(self) -> None:
        """Record the counters now and re-evaluate both alerts over the window."""
        stats = self._stats
        now = self._clock()
        self._samples.append(_Sample(now, stats.hits, stats.misses, stats.latency_counts()))
        while self._samples and self._samples[0].at < now - self._settings.alert_window:
            self._samples.popleft()
        self._evaluate()

    def _evaluate(self) -> None:
        if len(self._samples) < 2:
            return
        first, last = self._samples[0], self._samples[-1]
        s = self._settings
        low = s.alert_on_low_hit_rate
        if low is not None:
            hits, misses = last.hits - first.hits, last.misses - first.misses
            if hits + misses < max(s.alert_min_lookups, 1):
                self._too_few("low_hit_rate", low)
            else:
                rate = hits / (hits + misses)
                self._set(
                    "low_hit_rate",
                    rate < low,
                    rate,
                    low,
                    f"hit rate {rate:.1%} over the last {s.alert_window:g} s is below {low:.0%}",
                )
        high = s.alert_on_high_latency
        if high is not None:
            counts = [b - a for a, b in zip(first.latency, last.latency, strict=True)]
            p99 = LatencyHistogram.quantile(counts, 0.99)
            if p99 is None or sum(counts) < s.alert_min_latency_samples:
                self._too_few("high_latency", high)
            else:
                self._set(
                    "high_latency",
                    p99 > high,
                    p99,
                    high,
                    f"p99 latency {p99:.2f} ms over the last {s.alert_window:g} s is above "
                    f"{high:g} ms",
                )

    def _too_few(self, name: str, threshold: float) -> None:
        """The window holds too little to judge ``name``: it is not raised, and an active
        one clears (the module's docstring says why)."""
        if self.active.pop(name, None) is not None:
            log.info(
                "alert_cleared",
                extra={"alert": name, "threshold": threshold, "reason": "too_few_samples"},
            )

    def _set(self, name: str, firing: bool, value: float, threshold: float, text: str) -> None:
        current = self.active.get(name)
        if firing and current is None:
            self.active[name] = Alert(name, value, threshold, time.time(), text)
            self.raised_total[name] = self.raised_total.get(name, 0) + 1
            log.warning(
                "alert_raised",
                extra={"alert": name, "value": round(value, 4), "threshold": threshold},
            )
        elif firing and current is not None:
            current.value = value
            current.message = text
        elif not firing and current is not None:
            del self.active[name]
            log.info(
                "alert_cleared",
                extra={
                    "alert": name,
                    "value": round(value, 4),
                    "threshold": threshold,
                    "reason": "recovered",
                },
            )

    def describe(self) -> list[dict[str, Any]]:
        return [alert.describe() for alert in self.active.values()]
