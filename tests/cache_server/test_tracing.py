"""Traces joining a caller's: SERVER spans continuing W3C trace context, the loader span's
key pattern, no root spans from the agent's own periodic work, trace ids in log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cache_server import create_app
from cache_server.keys import AGENT, TELEMETRY
from cache_server.logs import JsonFormatter, RequestIdFilter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def traced_config(engine: Any, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "monitoring": {"tracing": "console", "l2_count_interval": 0},
        **extra,
    }


async def traced_client(aiohttp_client: Any, config: dict[str, Any]) -> tuple[Any, Any]:
    """A test client and the exporter that receives each of its spans as it ends."""
    client = await aiohttp_client(create_app(config, env={}))
    telemetry = client.server.app[TELEMETRY]
    assert telemetry is not None and telemetry.tracer_provider is not None
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    return client, spans


def named(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    return next(s for s in spans.get_finished_spans() if s.name == name)


async def test_a_request_span_is_a_server_span_continuing_the_callers_trace(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client, spans = await traced_client(aiohttp_client, traced_config(engine, prefix))
    await client.post("/cache", json={"key": "k", "value": 1})
    client.server.app[AGENT].l1.clear()
    resp = await client.get("/cache/k", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert resp.status == 200
    request = named(spans, "GET /cache/{key}")
    assert request.kind is SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None and request.parent.is_remote
    assert format(request.parent.span_id, "016x") == PARENT_ID
    # What the request did below it joins the caller's trace too.
    l2_get = named(spans, "l2.get")
    assert l2_get.parent is not None and l2_get.parent.span_id == request.context.span_id
    assert l2_get.context.trace_id == request.context.trace_id


async def test_a_request_without_trace_context_starts_a_trace(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    client, spans = await traced_client(aiohttp_client, traced_config(engine, prefix))
    for header in ({}, {"traceparent": "not-a-traceparent"}):
        spans.clear()
        assert (await client.get("/cache/absent", headers=header)).status == 200
        request = named(spans, "GET /cache/{key}")
        assert request.kind is SpanKind.SERVER
        assert request.parent is None, header


async def test_the_loader_span_names_the_key_pattern_never_the_key(
    aiohttp_client: Any, engine: Any, prefix: str, loader_source: Any
) -> None:
    loaders = {
        "python": {"function": f"{loader_source.NAME}:profile", "match": ["user:{user_id}:profile"]}
    }
    config = traced_config(engine, prefix, loaders=loaders)
    client, spans = await traced_client(aiohttp_client, config)
    assert (await client.get("/cache/user:1:profile")).status == 200
    loader = named(spans, "loader.python")
    attributes = dict(loader.attributes or {})
    assert attributes["cache.key_pattern"] == "user:{user_id}:profile"
    assert "user:1:profile" not in json.dumps(attributes)
    request = named(spans, "GET /cache/{key}")
    assert loader.context.trace_id == request.context.trace_id


async def test_the_periodic_l2_count_makes_no_spans(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    config = traced_config(engine, prefix)
    config["monitoring"]["l2_count_interval"] = 1
    client, spans = await traced_client(aiohttp_client, config)
    agent = client.server.app[AGENT]
    await agent.set("k", 1)
    spans.clear()
    before = agent.get_stats()["l2_size_keys"]
    for _ in range(40):  # the count runs every second
        await asyncio.sleep(0.05)
        if agent.get_stats()["l2_size_keys"] != before:
            break
    assert agent.get_stats()["l2_size_keys"] == before + 1, "the periodic count did not run"
    assert spans.get_finished_spans() == ()


async def test_log_lines_within_a_span_carry_its_trace_and_span_ids(
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
        client, spans = await traced_client(aiohttp_client, traced_config(engine, prefix))
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        assert (await client.get("/cache/absent", headers=headers)).status == 200
    finally:
        routes_log.removeHandler(handler)
        routes_log.setLevel(logging.NOTSET)
    miss = next(json.loads(line) for line in out.getvalue().splitlines() if "cache_miss" in line)
    request = named(spans, "GET /cache/{key}")
    assert miss["trace_id"] == TRACE_ID
    assert miss["span_id"] == format(request.context.span_id, "016x")
    # Outside any span, a line has neither.
    logging.getLogger("cache_server.routes").addHandler(handler)
    try:
        logging.getLogger("cache_server.routes").warning("outside")
    finally:
        logging.getLogger("cache_server.routes").removeHandler(handler)
    outside = json.loads(out.getvalue().splitlines()[-1])
    assert "trace_id" not in outside and "span_id" not in outside
