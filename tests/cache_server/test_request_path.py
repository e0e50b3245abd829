"""What every request goes through (cache_server.middleware) and how its duration is
exported: request ids, the catch-all route's 404/405, route labels, and HTTP durations
counted without the OpenTelemetry SDK and exported exactly as the SDK would export them."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cache_server.keys import TELEMETRY
from cache_server.telemetry import DURATION_BUCKETS, SCOPE, Durations, _DurationsCollector


async def test_a_request_id_is_taken_from_the_caller_or_made_up(client: Any) -> None:
    resp = await client.get("/cache/k", headers={"X-Request-ID": "caller-7"})
    assert resp.headers["X-Request-ID"] == "caller-7"
    made = set()
    for headers in ({}, {"X-Request-ID": "x" * 65}, {"X-Request-ID": ""}):
        resp = await client.get("/cache/k", headers=headers)
        made.add(resp.headers["X-Request-ID"])
    assert len(made) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_up) for made_up in made)


async def test_unmatched_requests_get_json_errors_and_an_id(client: Any) -> None:
    resp = await client.get("/nowhere/at/all")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    assert resp.headers["X-Request-ID"]
    resp = await client.put("/cache/batch-get")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    # The route /cache/batch-get (POST) and the key route /cache/{key} both match the path.
    assert resp.headers["Allow"] == "DELETE, GET, HEAD, POST"
    assert resp.headers["X-Request-ID"]


async def test_durations_are_labelled_by_route_never_by_key(client: Any) -> None:
    await client.get("/cache/user:99:secret")
    await client.get("/no/such/route")
    text = await (await client.get("/metrics")).text()
    assert "user:99:secret" not in text
    assert "/no/such/route" not in text
    counts = {
        (s.labels["http_route"], s.labels["http_response_status_code"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "http_server_request_duration_seconds_count"
    }
    assert counts[("/cache/{key}", "200")] == 1
    assert counts[("unmatched", "404")] == 1
    telemetry = client.server.app[TELEMETRY]
    assert telemetry is not None and telemetry.record_request is not None


def test_request_durations_export_as_the_sdk_histogram_would() -> None:
    # On a bound, between bounds, below the first and beyond the last (+Inf).
    observations = [
        (0.001, "GET", "/cache/{key}", 200),
        (0.0004, "GET", "/cache/{key}", 200),
        (0.00001, "GET", "/cache/{key}", 200),
        (7.5, "POST", "/cache", 503),
        (0.25, "GET", "unmatched", 404),
    ]
    sdk_registry = CollectorRegistry(auto_describe=True)
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(registry=sdk_registry, disable_target_info=True)]
    )
    histogram = provider.get_meter(SCOPE).create_histogram(
        "http.server.request.duration",
        unit="s",
        description="HTTP requests",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )
    ours_registry = CollectorRegistry(auto_describe=True)
    durations = Durations(
        "http.server.request.duration",
        "HTTP requests",
        ("http.request.method", "http.route", "http.response.status_code"),
        DURATION_BUCKETS,
    )
    ours_registry.register(_DurationsCollector([durations]))
    for seconds, method, route, status in observations:
        histogram.record(
            seconds,
            {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
            },
        )
        durations.record(seconds, (method, route, status))
    sdk_text = generate_latest(sdk_registry).decode()
    ours_text = generate_latest(ours_registry).decode()
    provider.shutdown()

    def http_lines(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if "http_server_request" in line)

    assert http_lines(ours_text) == http_lines(sdk_text)


async def test_with_an_otlp_collector_durations_still_reach_metrics(
    make_client: Any, config_factory: Any
) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    collector = web.Application()
    collector.router.add_post("/v1/metrics", accept)
    runner = web.AppRunner(collector)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = await make_client(
            config_factory(monitoring={"otlp_endpoint": f"http://127.0.0.1:{port}"})
        )
        telemetry = client.server.app[TELEMETRY]
        assert telemetry is not None and telemetry.record_request is not None
        await client.get("/cache/k")
        text = await (await client.get("/metrics")).text()
        count = next(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "http_server_request_duration_seconds_count"
            and s.labels["http_route"] == "/cache/{key}"
        )
        assert count == 1
        await client.close()  # flushes the exporter while the collector still listens
    finally:
        await runner.cleanup()
