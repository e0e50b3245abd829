"""dashboards/: the Grafana dashboard's units and queries, and the Prometheus alert rules
(checked and unit-tested by promtool where it is installed: Debian's `prometheus`).

`nox -s prometheus` (tools/prometheus_check.py) runs every query of both against a real
Prometheus scraping a real service; these are the checks that need neither.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cache_core.config import MonitoringSection

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "caching-agent.json"
RULES = ROOT / "dashboards" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
PROMTOOL_TIMEOUT = 60.0

COUNTER = re.compile(r"\b([a-z_]+_(?:total|count|sum|bucket))\{")
RATE_UNITS = {"ops", "reqps", "Bps"}


def panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def units_for(expr: str) -> set[str]:
    """The units a panel drawing ``expr`` may have: one scale per panel, so seconds, bytes
    and counts never share an axis."""
    if expr.startswith("histogram_quantile("):
        return {"s"}
    if " / " in expr:
        return {"percentunit", "short"}
    if "rate(" in expr:
        return {"Bps"} if "_bytes_" in expr else {"ops", "reqps"}
    if re.search(r"_bytes\{", expr):
        return {"bytes"}
    return {"short"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_each_panel_has_one_unit_that_fits_every_query() -> None:
    checked = 0
    for panel in panels():
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert panel["fieldConfig"]["overrides"] == [], panel["title"]
        for target in panel["targets"]:
            assert unit in units_for(target["expr"]), (panel["title"], unit, target["expr"])
            checked += 1
    assert checked >= 15


def test_counters_are_only_read_through_rate() -> None:
    """A lifetime counter plotted (or divided) as it is draws the service's age, not what
    it does now."""
    exprs = [t["expr"] for panel in panels() for t in panel["targets"]]
    exprs += [rule["expr"] for rule in rules()]
    bare = []
    for expr in exprs:
        for match in COUNTER.finditer(expr):
            before = expr[: match.start()]
            if not before.endswith(("rate(", "increase(")):
                bare.append((match.group(1), expr))
    assert not bare, bare


def test_compression_ratio_leaves_out_the_none_codec() -> None:
    (panel,) = [p for p in panels() if p["title"].startswith("Compression ratio")]
    (target,) = panel["targets"]
    assert target["expr"].count('codec!="none"') == 2


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))


def test_alert_rules_use_the_shipped_thresholds() -> None:
    """The rules state the shipped config.yaml's thresholds (alerts.yml says so); a change
    of either must change the other."""
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())["monitoring"]
    defaults = MonitoringSection()
    window = shipped.get("alert_window", defaults.alert_window)
    alerts = {rule["alert"]: rule["expr"] for rule in rules() if "alert" in rule}
    assert set(alerts) == {"CacheLowHitRate", "CacheHighLatency"}
    low = re.fullmatch(
        r"job_instance:cache_hit_rate:ratio60s < ([\d.]+)\s+"
        r"and job_instance:cache_lookups:increase60s >= (\d+)",
        alerts["CacheLowHitRate"],
    )
    assert low is not None, alerts["CacheLowHitRate"]
    assert float(low.group(1)) == shipped["alert_on_low_hit_rate"]
    assert int(low.group(2)) == shipped["alert_min_lookups"]
    high = re.fullmatch(
        r"job_instance:cache_operation_latency_seconds:p99_60s > ([\d.]+)\s+"
        r"and job_instance:cache_operations:increase60s >= (\d+)",
        alerts["CacheHighLatency"],
    )
    assert high is not None, alerts["CacheHighLatency"]
    assert float(high.group(1)) * 1000 == pytest.approx(shipped["alert_on_high_latency"])
    assert int(high.group(2)) == shipped["alert_min_latency_samples"]
    ranges = {r for rule in rules() for r in re.findall(r"\[(\w+)\]", rule["expr"])}
    assert ranges == {f"{window:g}s"}


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_alert_rules_fire_on_what_the_agent_alerts_on() -> None:
    """tests/cache_server/alerts_test.yml: each alert over its threshold, under it, and on
    a window too thin to judge."""
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
