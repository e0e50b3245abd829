"""AlertMonitor judges a window only once it holds enough samples to say anything.

Every test drives the monitor by hand: a fake monotonic clock and a bare Stats whose
counters are bumped as the agent's operations would bump them.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest

from cache_core import ConfigError, load_config
from cache_core.alerts import AlertMonitor
from cache_core.config import MonitoringSection
from cache_core.stats import Stats

FAST_NS = 10_000  # an L2 hit on a local engine: far below any threshold
SLOW_NS = 20_000_000  # 20 ms: above the shipped 10 ms latency threshold


def monitor(clock: Any, **settings: Any) -> tuple[AlertMonitor, Stats]:
    stats = Stats()
    section = attrs.evolve(MonitoringSection(), **settings)
    alerts = AlertMonitor(section, stats, clock)
    alerts.sample()  # the window's first sample: what came before it is not judged
    return alerts, stats


def operations(stats: Stats, *, fast: int = 0, slow: int = 0) -> None:
    """``fast`` + ``slow`` timed lookups that hit, as the agent records them."""
    for _ in range(fast):
        stats.latency.observe(FAST_NS)
    for _ in range(slow):
        stats.latency.observe(SLOW_NS)
    stats.hits_l2 += fast + slow


def lookups(stats: Stats, *, hits: int = 0, misses: int = 0) -> None:
    """Lookups L1 answered (counted, not timed) and misses, as the agent records them."""
    stats.l1_hit_calls += hits
    stats.misses += misses


def test_eleven_requests_after_start_with_one_slow_raise_no_latency_alert(clock: Any) -> None:
    # The report: with the shipped thresholds, the first sampled window held ~11
    # operations, one of them slow (a cold connection), and their "p99" was that one.
    alerts, stats = monitor(clock)
    lookups(stats, hits=10)
    operations(stats, slow=1)
    clock.advance(5)
    alerts.sample()
    assert alerts.active == {}
    assert alerts.raised_total["high_latency"] == 0


def test_a_slow_p99_over_enough_samples_raises_the_latency_alert(clock: Any) -> None:
    alerts, stats = monitor(clock)
    operations(stats, fast=195, slow=5)
    clock.advance(5)
    alerts.sample()
    assert list(alerts.active) == ["high_latency"]
    assert alerts.active["high_latency"].value > 10


def test_at_the_minimum_one_outlier_alone_cannot_raise_it(clock: Any) -> None:
    # 100 samples is where the p99 stops being the slowest one: it takes two.
    alerts, stats = monitor(clock)
    operations(stats, fast=99, slow=1)
    clock.advance(5)
    alerts.sample()
    assert alerts.active == {}
    operations(stats, fast=98, slow=2)  # window now 200 samples, 3 slow: 1.5 %
    clock.advance(5)
    alerts.sample()
    assert list(alerts.active) == ["high_latency"]


def test_the_latency_minimum_is_configurable(clock: Any) -> None:
    alerts, stats = monitor(clock, alert_min_latency_samples=10)
    operations(stats, fast=9, slow=1)
    clock.advance(5)
    alerts.sample()
    assert list(alerts.active) == ["high_latency"]


def test_minimum_zero_judges_any_window_with_a_sample(clock: Any) -> None:
    alerts, stats = monitor(clock, alert_min_latency_samples=0, alert_min_lookups=0)
    operations(stats, slow=1)
    lookups(stats, misses=1)
    clock.advance(5)
    alerts.sample()
    assert sorted(alerts.active) == ["high_latency", "low_hit_rate"]


def test_an_active_latency_alert_clears_when_the_window_thins_out(
    clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    alerts, stats = monitor(clock, alert_window=60)
    operations(stats, fast=100, slow=100)
    clock.advance(5)
    alerts.sample()
    assert list(alerts.active) == ["high_latency"]
    # Traffic stops: the window soon holds no operation at all, and nothing is slow.
    with caplog.at_level(logging.INFO, logger="cache_core.alerts"):
        for _ in range(13):
            clock.advance(5)
            alerts.sample()
            operations(stats, slow=1)  # a trickle below the minimum, all of it slow
    assert alerts.active == {}
    cleared = [r for r in caplog.records if r.getMessage() == "alert_cleared"]
    assert len(cleared) == 1
    assert cleared[0].__dict__["alert"] == "high_latency"
    assert cleared[0].__dict__["reason"] == "too_few_samples"


def test_a_window_below_the_lookup_minimum_raises_no_hit_rate_alert(clock: Any) -> None:
    # 30 cold-start misses say little about a hit rate (±9 % at 100 lookups, ±18 % at 30).
    alerts, stats = monitor(clock)
    lookups(stats, misses=30)
    clock.advance(5)
    alerts.sample()
    assert alerts.active == {}
    lookups(stats, hits=20, misses=50)  # window: 20 hits of 100 lookups
    clock.advance(5)
    alerts.sample()
    assert list(alerts.active) == ["low_hit_rate"]
    assert alerts.active["low_hit_rate"].value == pytest.approx(0.2)


def test_an_active_hit_rate_alert_clears_when_the_window_thins_out(
    clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    alerts, stats = monitor(clock, alert_window=60, alert_min_lookups=10)
    lookups(stats, misses=10)
    clock.advance(5)
    alerts.sample()
    assert list(alerts.active) == ["low_hit_rate"]
    with caplog.at_level(logging.INFO, logger="cache_core.alerts"):
        for _ in range(13):
            clock.advance(5)
            alerts.sample()
    assert alerts.active == {}
    cleared = [r for r in caplog.records if r.getMessage() == "alert_cleared"]
    assert [r.__dict__["alert"] for r in cleared] == ["low_hit_rate"]


def test_an_alert_stays_up_while_the_window_holds_enough_and_still_fires(clock: Any) -> None:
    alerts, stats = monitor(clock, alert_window=60)
    for _ in range(20):
        operations(stats, fast=190, slow=10)
        clock.advance(5)
        alerts.sample()
        assert list(alerts.active) == ["high_latency"]
    assert alerts.raised_total["high_latency"] == 1


def test_shipped_minimums() -> None:
    section = MonitoringSection()
    assert section.alert_min_latency_samples == 100
    assert section.alert_min_lookups == 100


@pytest.mark.parametrize("field", ["alert_min_latency_samples", "alert_min_lookups"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must be 0 or more, got -1"),
        (1.5, "expected an integer, got 1.5"),
        ("100", "expected an integer, got '100'"),
        (True, "expected an integer, got True"),
    ],
)
def test_a_bad_minimum_is_a_config_error_naming_it(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"monitoring": {field: value}}, env={})
    assert str(info.value) == f"monitoring.{field}: {message}"


def test_the_minimums_load_from_config() -> None:
    config = load_config(
        {"monitoring": {"alert_min_latency_samples": 500, "alert_min_lookups": 0}}, env={}
    )
    assert config.monitoring.alert_min_latency_samples == 500
    assert config.monitoring.alert_min_lookups == 0
