"""Metrics, traces, logs, alerts and the dashboard, against a server with a real engine."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from cache_core.stats import BUCKET_BOUNDS_NS
from cache_server import create_app
from cache_server.keys import AGENT, TELEMETRY
from cache_server.logs import JsonFormatter, RequestIdFilter

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "caching-agent.json"


def config_for(engine: Any, prefix: str, **monitoring: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
        "key_patterns": {"user": "user:{user_id}:{resource}"},
        "monitoring": monitoring,
    }


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page: (name, labels without otel scope) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset(
                (k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope")
            )
            found[(sample.name, labels)] = sample.value
    return found


def value(page: dict[Any, float], name: str, **labels: str) -> float:
    return page[(name, frozenset(labels.items()))]


async def scrape(client: Any) -> dict[Any, float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(await resp.text())


async def test_metrics_count_a_known_sequence_exactly(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    agent = client.server.app[AGENT]
    await client.post("/cache", json={"key": "user:1:profile", "value": 1, "tags": ["t"]})
    await client.post("/cache", json={"key": "user:2:profile", "value": 2})
    await client.post("/cache", json={"key": "a:1", "value": 3, "strategy": "write_back"})
    await client.get("/cache/user:1:profile")  # l1
    await client.get("/cache/user:2:profile")  # l1
    await client.get("/cache/nope")  # miss
    agent.l1.clear()
    await client.get("/cache/user:2:profile")  # l2
    await client.delete("/cache/user:2:profile")
    await client.post("/invalidate", json={"tags": ["t"]})
    page = await scrape(client)
    assert value(page, "cache_hits_total", tier="l1") == 2
    assert value(page, "cache_hits_total", tier="l2") == 1
    assert value(page, "cache_hits_total", tier="loader") == 0
    assert value(page, "cache_misses_total") == 1
    assert value(page, "cache_sets_total", strategy="write_through") == 2
    assert value(page, "cache_sets_total", strategy="write_back") == 1
    assert value(page, "cache_deletes_total") == 1
    assert value(page, "cache_invalidations_total", kind="tags") == 1
    assert value(page, "cache_write_back_pending") == 1
    assert value(page, "cache_l1_entries") == len(agent.l1)
    assert value(page, "cache_l1_size_bytes") == agent.l1.size_bytes
    route = {"http_request_method": "GET", "http_route": "/cache/{key}"}
    assert (
        value(
            page,
            "http_server_request_duration_seconds_count",
            http_response_status_code="200",
            **route,
        )
        == 4
    )
    assert (
        value(page, "cache_l2_operation_duration_seconds_count", cache_op="get", outcome="ok") == 2
    )  # the miss and the L2 hit
    # The raw key never becomes a label.
    assert "user:1:profile" not in await (await client.get("/metrics")).text()


async def test_every_dashboard_query_uses_an_exported_metric(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    agent = client.server.app[AGENT]
    await client.post("/cache", json={"key": "k", "value": 1, "strategy": "write_back"})
    await agent.strategies["write_back"].flush()
    await client.get("/cache/k")
    exported = {name for name, _ in await scrape(client)}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        name for expr in exprs for name in re.findall(r"\b((?:cache|http)_[a-z0-9_]+)(?=\{)", expr)
    }
    assert len(used) >= 12
    assert used <= exported, sorted(used - exported)


async def test_metrics_on_a_port_of_their_own(engine: Any, prefix: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = config_for(engine, prefix, prometheus_port=port)
    config["agent"] = {"host": "127.0.0.1"}
    app = create_app(config, env={})
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            assert resp.status == 200
            assert "cache_hits_total" in await resp.text()
    finally:
        await runner.cleanup()


async def test_requests_and_l2_calls_are_traced_without_raw_keys(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix, tracing="console"), env={}))
    telemetry = client.server.app[TELEMETRY]
    assert telemetry is not None and telemetry.tracer_provider is not None
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    await client.post("/cache", json={"key": "user:42:profile", "value": {"n": 1}})
    client.server.app[AGENT].l1.clear()
    resp = await client.get("/cache/user:42:profile", headers={"X-Request-ID": "req-1"})
    assert resp.headers["X-Request-ID"] == "req-1"
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.name == "GET /cache/{key}")
    children = [
        s for s in finished if s.parent is not None and s.parent.span_id == request.context.span_id
    ]
    l2_get = next(s for s in children if s.name == "l2.get")
    assert dict(l2_get.attributes or {})["cache.key_pattern"] == "user:{user_id}:{resource}"
    assert dict(request.attributes or {})["http.response.status_code"] == 200
    for span in finished:
        assert "user:42:profile" not in json.dumps(dict(span.attributes or {}))


async def test_every_log_line_of_a_request_has_its_id(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    routes_log = logging.getLogger("cache_server.routes")
    routes_log.addHandler(handler)
    routes_log.setLevel(logging.DEBUG)
    try:
        client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
        await client.post("/cache", json={"key": "user:7:profile", "value": 1})
        await client.get("/cache/user:7:profile", headers={"X-Request-ID": "abc123"})
        await client.get("/cache/user:8:profile", headers={"X-Request-ID": "def456"})
    finally:
        routes_log.removeHandler(handler)
        routes_log.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    hit = next(line for line in lines if line["event"] == "cache_hit")
    miss = next(line for line in lines if line["event"] == "cache_miss")
    assert hit["request_id"] == "abc123"
    assert hit["tier"] == "l1"
    assert hit["key_pattern"] == "user:{user_id}:{resource}"
    assert miss["request_id"] == "def456"


async def test_low_hit_rate_alert_is_raised_then_cleared(
    aiohttp_client: Any, engine: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(
        engine,
        prefix,
        alert_on_low_hit_rate=0.5,
        alert_min_lookups=4,
        alert_window=3600,
        alert_interval=3600,
    )
    client = await aiohttp_client(create_app(config, env={}))
    agent = client.server.app[AGENT]
    agent.alerts.sample()
    for i in range(4):
        await client.get(f"/cache/missing:{i}")
    with caplog.at_level(logging.INFO, logger="cache_core.alerts"):
        agent.alerts.sample()
    stats = await (await client.get("/stats")).json()
    assert [a["name"] for a in stats["alerts"]] == ["low_hit_rate"]
    assert value(await scrape(client), "cache_alerts_active", alert="low_hit_rate") == 1
    assert any(r.getMessage() == "alert_raised" for r in caplog.records)
    await client.post("/cache", json={"key": "hot", "value": 1})
    for _ in range(20):
        await client.get("/cache/hot")
    with caplog.at_level(logging.INFO, logger="cache_core.alerts"):
        agent.alerts.sample()
    stats = await (await client.get("/stats")).json()
    assert stats["alerts"] == []
    assert value(await scrape(client), "cache_alerts_active", alert="low_hit_rate") == 0
    assert any(r.getMessage() == "alert_cleared" for r in caplog.records)


async def test_stats_show_latency_percentiles_and_uptime(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    await client.post("/cache", json={"key": "k", "value": 1})
    for _ in range(10):
        await client.get("/cache/k")
    stats = await (await client.get("/stats")).json()
    assert 0 < stats["p50_latency_ms"] <= stats["p99_latency_ms"]
    assert stats["uptime_seconds"] > 0
    # The plugins that assembled this agent, by registered name: this config's L2 tier and
    # default codec (gzip), and the server's, whose OpenTelemetry recorder feeds /metrics.
    assert {"cache_core.builtins", "redis", "compression", "server"} <= set(stats["plugins"])
    assert stats["write_back_pending"] == 0


async def test_otlp_export_reaches_a_collector(engine: Any, prefix: str) -> None:
    received: list[tuple[str, str, int]] = []
    histograms: dict[str, int] = {}
    sums: dict[str, float] = {}
    gauges: set[str] = set()

    async def collect(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.read()
        received.append((request.path, request.headers.get("Content-Type", ""), len(body)))
        if request.path == "/v1/metrics":
            export = ExportMetricsServiceRequest.FromString(body)
            for resource in export.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        if metric.HasField("histogram"):
                            points = metric.histogram.data_points
                            histograms[metric.name] = sum(point.count for point in points)
                        elif metric.HasField("sum"):
                            total = sum(p.as_int or p.as_double for p in metric.sum.data_points)
                            sums[metric.name] = total
                        elif metric.HasField("gauge"):
                            gauges.add(metric.name)
        return aiohttp.web.Response(status=200)

    collector = aiohttp.web.Application()
    collector.router.add_post("/v1/metrics", collect)
    collector.router.add_post("/v1/traces", collect)
    runner = aiohttp.web.AppRunner(collector)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = config_for(
            engine, prefix, otlp_endpoint=f"http://127.0.0.1:{port}", tracing="otlp"
        )
        app = create_app(config, env={})
        app_runner = aiohttp.web.AppRunner(app)
        await app_runner.setup()
        agent = app[AGENT]
        await agent.set("user:1:profile", {"n": 1})
        agent.l1.clear()
        telemetry = app[TELEMETRY]
        assert telemetry is not None and telemetry.tracer is not None
        with telemetry.tracer.start_as_current_span("test"):
            await agent.get("user:1:profile")
        assert await agent.get("user:2:profile") is None
        # Shutting down flushes both exporters (they run in threads of their own).
        await app_runner.cleanup()
    finally:
        await runner.cleanup()
    paths = {path for path, _, _ in received}
    assert paths == {"/v1/metrics", "/v1/traces"}
    assert histograms["cache.l2.operation.duration"] >= 2  # the set and the get
    # The SDK's own counters and gauges arrive beside our histograms (the same resource:
    # an export of two entries for it kept only the last).
    assert sums["cache.sets"] == 1 and sums["cache.hits"] == 1 and sums["cache.misses"] == 1
    assert {"cache.l1.size", "cache.l1.entries", "cache.alerts.active"} <= gauges
    assert all(kind == "application/x-protobuf" and size > 0 for _, kind, size in received)


def test_durations_follow_explicit_bucket_rules() -> None:
    from cache_server.telemetry import Durations

    histogram = Durations("cache.x.duration", "x", ("op",), bounds=(0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5):
        histogram.record(seconds, ("get",))
    histogram.record(0.003, ("set",))
    series = {attributes["op"]: rest for attributes, *rest in histogram.series()}
    counts, total, low, high = series["get"]
    assert counts == [2, 2, 1]  # a value on a bound counts in that bound's bucket
    assert (total, low, high) == (pytest.approx(0.5135), 0.0005, 0.5)
    family = histogram.prometheus()
    assert family.name == "cache_x_duration_seconds"
    buckets = {
        (s.labels["op"], s.labels.get("le")): s.value
        for s in family.samples
        if s.name.endswith("_bucket")
    }
    assert buckets[("get", "0.001")] == 2
    assert buckets[("get", "0.01")] == 4  # cumulative
    assert buckets[("get", "+Inf")] == 5
    point: Any = histogram.otlp(0, 1).data.data_points[0]
    assert (point.count, list(point.bucket_counts)) == (5, [2, 2, 1])


async def test_the_l2_keys_gauge_is_the_agents_own_count(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    agent = client.server.app[AGENT]
    await client.post("/cache/batch-set", json={"items": {"a": 1, "b": 2, "c": 3}})
    assert value(await scrape(client), "cache_l2_keys") == 0  # as counted at start
    assert (await agent.fetch_stats())["l2_size_keys"] == 3
    assert value(await scrape(client), "cache_l2_keys") == 3


async def test_the_operation_latency_histogram_is_the_alerts_own(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    """cache_operation_duration_seconds is the histogram high_latency takes its p99 from
    (dashboards/alerts.yml judges it): the same buckets and counts, L1 hits included."""
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    agent = client.server.app[AGENT]
    await client.post("/cache", json={"key": "user:1:profile", "value": 1})
    for _ in range(3):
        await client.get("/cache/user:1:profile")  # l1, untimed
    await client.get("/cache/nope")
    page = await scrape(client)
    counts = agent.stats.latency_counts()
    assert sum(counts) == 5
    assert value(page, "cache_operation_duration_seconds_count") == 5
    seen = 0
    for bound_ns, count in zip(BUCKET_BOUNDS_NS, counts, strict=False):
        seen += count
        le = f"{bound_ns / 1e9}"
        assert value(page, "cache_operation_duration_seconds_bucket", le=le) == seen
    assert value(page, "cache_operation_duration_seconds_bucket", le="+Inf") == 5
    assert value(page, "cache_operation_duration_seconds_sum") == pytest.approx(
        agent.stats.latency.sum_ns / 1e9
    )
