"""Every dashboard query and alert rule, evaluated by a real Prometheus (`nox -s prometheus`).

1. Start ``caching-agent serve`` on 127.0.0.1 and a free port, on the shipped config.yaml
   with what makes a short run show everything: its own engine under a temporary
   directory, a 1 MiB L1 (so entries are evicted and read back from L2), write-back
   flushes every second, alerts judged and L2 keys counted every second. The alert
   thresholds and window stay the shipped ones, which dashboards/alerts.yml states.
2. Start Prometheus (``PROMETHEUS``, else ``prometheus`` from PATH: Debian's package) on
   127.0.0.1, scraping the service every second and evaluating dashboards/alerts.yml every
   second, its storage in the temporary directory.
3. A scripted, bounded burst of traffic to the service: batch writes that evict and take
   well over 10 ms, single writes under every strategy (compressed or not), L1 hits, L2
   hits, a majority of misses, batch reads, deletes, and pattern, tag and event
   invalidations. So both of the agent's alerts must be raised: hit rate below 60 % and
   p99 latency above 10 ms, each over more than 100 lookups or operations.
4. Then, with the burst inside every query's range: each target of each panel of
   dashboards/caching-agent.json (Grafana's variables replaced: ``$job`` by the job,
   ``$__rate_interval`` and ``$__interval`` by RANGE) must return at least one series
   with a finite value; every rule group must load and every rule evaluate with health
   ok; each recording rule's series must exist; each alert must fire, its expression
   return the firing series, and the agent itself (GET /stats) must have raised the alert
   its ``agent_alert`` label names: the rules judge what the agent judges.

Exits 1 naming every expression or rule that failed, and 1 if it found no expression at
all. Every wait is bounded; every process it starts is stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "caching-agent.json"
RULES = ROOT / "dashboards" / "alerts.yml"
JOB = "caching-agent"
RANGE = "1m"
"""What ``$__rate_interval`` and ``$__interval`` become: the alert window's length, so the
whole burst is inside every range when the queries run."""
READY_LINE = "caching-agent listening on"
START_TIMEOUT = 60.0
"""Seconds for the service (and its engine) or Prometheus to come up."""
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0
"""Seconds for any one request, to the service or to Prometheus."""
SETTLE_TIMEOUT = 45.0
"""Seconds after the burst for the alerts to fire and the last flush to be scraped."""
SCRAPE_INTERVAL = "1s"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose output is kept (for the report when it fails) by reader
    threads, so a full pipe never blocks it."""

    def __init__(self, name: str, args: list[str], cwd: Path, ready: str | None = None):
        self.name = name
        self.lines: list[str] = []
        self._ready_text = ready
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        self._thread = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            if self._ready_text is not None and self._ready_text in line:
                self.ready.set()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(f"  {self.name}| {line}" for line in self.lines[-lines:])

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise Failure(f"{self.name} exited with {self.proc.returncode}\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._thread.join(STOP_TIMEOUT)


class Failure(Exception):
    pass


def wait_for(what: str, check: Callable[[], bool], timeout: float, *procs: Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            proc.check_running()
        if check():
            return
        time.sleep(0.2)
    raise Failure(f"{what}: not within {timeout:g} s")


def request(url: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
        return json.loads(resp.read())


# -- the service -------------------------------------------------------------------------


def service_config(work: Path) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["redis"]["data_dir"] = str(work / "engine")
    config["cache_tiers"]["l1"]["max_size_mb"] = 1
    config["strategies"]["write_back"]["flush_interval"] = 1
    config["monitoring"]["alert_interval"] = 1
    config["monitoring"]["l2_count_interval"] = 1
    config["monitoring"]["log_level"] = "warning"
    return dict(config)


def start_service(work: Path) -> tuple[Process, str]:
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(service_config(work)))
    port = free_port()
    args = [sys.executable, "-m", "cache_server.cli", "serve", "--config", str(path)]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    proc = Process("service", args, work, ready=READY_LINE)
    wait_for("the service listening", proc.ready.is_set, START_TIMEOUT, proc)
    return proc, f"127.0.0.1:{port}"


def prime(base: str) -> None:
    """One of each kind of traffic before the burst. Prometheus takes a series' first
    sample as its start, not as an increase from 0: a series born during the burst (the
    flush histogram at the first flush, a strategy's first write) would show rate() no
    increase unless it grew again after its first scrape."""
    request(f"{base}/cache", {"key": "user:0:profile", "value": {"bio": "x" * 2000}})
    request(f"{base}/cache", {"key": "model:m:prime", "value": 0})  # write_back
    request(f"{base}/cache/user:0:profile")
    request(f"{base}/cache/nothing:prime")
    request(f"{base}/cache/batch-get", {"keys": ["user:0:profile"]})
    request(f"{base}/cache/batch-set", {"items": {"session:prime": 0}})
    request(f"{base}/cache/session:prime", method="DELETE")
    request(f"{base}/invalidate", {"tags": ["prime"]})


def burst(base: str) -> dict[str, int]:
    """The scripted traffic; returns what it sent, by kind."""
    sent: dict[str, int] = {}

    def count(kind: str, n: int = 1) -> None:
        sent[kind] = sent.get(kind, 0) + n

    # Compressible (the user:* policy gzips) but not trivially: each value differs.
    def text(i: int) -> str:
        return " ".join(f"item-{i}-{j}" for j in range(200))

    # 5 batches of 1000 x ~2.4 KB: 12 MB through a 1 MiB L1 (evictions), each batch one
    # timed operation far above 10 ms. 5 of some 300 operations: the p99 is one of them.
    for b in range(5):
        items = {f"user:{b * 1000 + i}:learning_path": {"v": text(i)} for i in range(1000)}
        request(f"{base}/cache/batch-set", {"items": items, "tags": [f"batch{b}"]})
        count("batch_set_keys", len(items))
    for i in range(20):
        request(f"{base}/cache", {"key": f"user:{i}:profile", "value": {"bio": text(i)}})
        request(f"{base}/cache", {"key": f"model:m:{i}", "value": {"y": i}})  # write_back
        request(f"{base}/cache", {"key": f"analytics:{i}", "value": {"d": text(i)}})
        request(f"{base}/cache", {"key": f"session:{i}", "value": i, "tags": ["sessions"]})
        count("sets", 4)
    for _ in range(2):
        for i in range(20):
            request(f"{base}/cache/session:{i}")  # L1
            count("gets_l1")
    for i in range(20):
        request(f"{base}/cache/user:{i}:learning_path")  # evicted from L1 by later batches
        count("gets_l2")
    for i in range(150):
        request(f"{base}/cache/nothing:{i}")
        count("gets_missing")
    keys = [f"session:{i}" for i in range(10)] + [f"nothing:b{i}" for i in range(10)]
    request(f"{base}/cache/batch-get", {"keys": keys})
    count("batch_get_keys", len(keys))
    for i in range(10, 20):
        request(f"{base}/cache/session:{i}", method="DELETE")
        count("deletes")
    request(f"{base}/invalidate", {"pattern": "user:4*:learning_path"})
    request(f"{base}/invalidate", {"tags": ["batch1"]})
    request(f"{base}/invalidate", {"event": "user_profile_update", "context": {"user_id": "3"}})
    count("invalidations", 3)
    return sent


# -- Prometheus --------------------------------------------------------------------------


def start_prometheus(binary: str, work: Path, target: str) -> tuple[Process, str]:
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    listen = f"127.0.0.1:{free_port()}"
    args = [binary, f"--config.file={path}", f"--storage.tsdb.path={work / 'tsdb'}"]
    args += [f"--web.listen-address={listen}", "--log.level=warn"]
    proc = Process("prometheus", args, work)
    base = f"http://{listen}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=HTTP_TIMEOUT) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    wait_for("Prometheus ready", ready, START_TIMEOUT, proc)
    return proc, base


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = request(url)
    except urllib.error.HTTPError as exc:
        raise Failure(f"{expr}: {exc.code} {exc.read().decode(errors='replace')}") from None
    if answer.get("status") != "success":
        raise Failure(f"{expr}: {answer}")
    if answer["data"]["resultType"] != "vector":
        raise Failure(f"{expr}: a {answer['data']['resultType']}, not an instant vector")
    return list(answer["data"]["result"])


def finite(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in series if math.isfinite(float(s["value"][1]))]


# -- what is checked ---------------------------------------------------------------------

VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def concrete(expr: str) -> str:
    """``expr`` with Grafana's variables replaced; an unknown one is an error, not a
    silently different query."""
    values = {"job": JOB, "__rate_interval": RANGE, "__interval": RANGE}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise Failure(f"{expr}: no value for the Grafana variable ${name}")
        return values[name]

    return VARIABLE.sub(replace, expr)


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def check_dashboard(prometheus: str) -> list[str]:
    failures = []
    exprs = list(dashboard_exprs())
    if not exprs:
        raise Failure(f"{DASHBOARD}: no panel target has an expression")
    for where, expr in exprs:
        try:
            result = query(prometheus, concrete(expr))
        except Failure as exc:
            failures.append(f"{where}: {exc}")
            continue
        good = finite(result)
        print(f"  {len(good)}/{len(result)} series  {where}")
        if not good:
            failures.append(f"{where}: no series with a value: {expr}")
    return failures


def firing_alerts(prometheus: str) -> dict[str, list[dict[str, Any]]]:
    alerts: dict[str, list[dict[str, Any]]] = {}
    for alert in request(f"{prometheus}/api/v1/alerts")["data"]["alerts"]:
        if alert["state"] == "firing":
            alerts.setdefault(alert["labels"]["alertname"], []).append(alert)
    return alerts


def check_rules(prometheus: str, service: str) -> list[str]:
    failures = []
    expected = rules()
    if not expected:
        raise Failure(f"{RULES}: no rule")
    loaded = request(f"{prometheus}/api/v1/rules")["data"]["groups"]
    seen = {rule["name"]: rule for group in loaded for rule in group["rules"]}
    agent_alerts = {a["name"]: a["value"] for a in request(f"{service}/stats")["alerts"]}
    firing = firing_alerts(prometheus)
    for rule in expected:
        name = rule.get("record") or rule["alert"]
        got = seen.get(name)
        if got is None:
            failures.append(f"rule {name}: not loaded by Prometheus")
            continue
        if got["health"] != "ok":
            failures.append(f"rule {name}: health {got['health']}: {got.get('lastError')}")
        result = finite(query(prometheus, rule["expr"]))
        print(f"  {len(result)} series  rule {name}")
        if not result:
            failures.append(f"rule {name}: no series: {rule['expr']}")
        if "alert" in rule:
            agent_alert = rule["labels"]["agent_alert"]
            if name not in firing:
                failures.append(f"alert {name}: not firing after the burst: {rule['expr']}")
            values = [float(a["value"]) for a in firing.get(name, [])]
            print(f"    Prometheus: {values}, the agent: {agent_alerts.get(agent_alert)}")
            if agent_alert not in agent_alerts:
                failures.append(
                    f"alert {name}: the agent has not raised {agent_alert} "
                    f"(its alerts: {sorted(agent_alerts)})"
                )
        elif not query(prometheus, name):
            failures.append(f"rule {name}: its recorded series is missing")
    return failures


def run(binary: str, work: Path) -> list[str]:
    procs: list[Process] = []
    try:
        service, target = start_service(work)
        procs.append(service)
        prom, prometheus = start_prometheus(binary, work, target)
        procs.append(prom)
        wait_for(
            "Prometheus scraping the service",
            lambda: any(float(s["value"][1]) == 1 for s in query(prometheus, f'up{{job="{JOB}"}}')),
            START_TIMEOUT,
            *procs,
        )
        base = f"http://{target}"
        prime(base)
        flushed = f'cache_write_back_flush_duration_seconds_count{{job="{JOB}"}}'
        wait_for(
            "the first flush scraped",
            lambda: bool(query(prometheus, flushed)),
            START_TIMEOUT,
            *procs,
        )
        time.sleep(1.5)  # one more scrape: every primed series has a sample before the burst
        started = time.monotonic()
        sent = burst(base)
        print(f"burst: {sent} in {time.monotonic() - started:.1f} s")
        agent_alerts = {"low_hit_rate", "high_latency"}

        def settled() -> bool:
            stats = request(f"{base}/stats")
            raised = {a["name"] for a in stats.get("alerts", [])}
            pending = query(prometheus, f'sum(cache_write_back_pending{{job="{JOB}"}})')
            return (
                set(firing_alerts(prometheus)) >= {r["alert"] for r in rules() if "alert" in r}
                and raised >= agent_alerts
                and bool(pending)
                and float(pending[0]["value"][1]) == 0
            )

        # Bounded: a rule that never fires is reported below by name, not waited for.
        with contextlib.suppress(Failure):
            wait_for("the alerts firing", settled, SETTLE_TIMEOUT, *procs)
        # Two more scrapes, so every gauge has the state after the last flush.
        time.sleep(2.5)
        print(f"queries at {time.monotonic() - started:.1f} s after the burst began")
        print("dashboard:")
        failures = check_dashboard(prometheus)
        print("rules:")
        failures += check_rules(prometheus, base)
        if failures:
            for proc in procs:
                print(proc.tail(20), file=sys.stderr)
        return failures
    finally:
        for proc in reversed(procs):
            proc.stop()


def main() -> int:
    binary = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    if binary is None:
        print("prometheus not found: set PROMETHEUS or install it (Debian: prometheus)")
        return 1
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=HTTP_TIMEOUT, check=False
    )
    print(version.stdout.splitlines()[0] if version.stdout else binary)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="prometheus-check-") as tmp:
        try:
            failures = run(binary, Path(tmp))
        except Failure as exc:
            failures = [str(exc)]
    took = time.monotonic() - started
    if failures:
        print(f"FAILED ({len(failures)}), {took:.1f} s:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"every dashboard query and rule returned data, {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
