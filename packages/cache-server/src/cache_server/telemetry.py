"""The ``opentelemetry`` metrics recorder: OpenTelemetry metrics (Prometheus text on
GET /metrics, OTLP when ``monitoring.otlp_endpoint`` is set) and traces.

Counters the agent keeps as plain integers (hits, misses, sets, evictions, ...) are
exported through observable instruments read when a collector asks, so an L1 hit costs
the agent an integer increment whatever is exported. Durations of what leaves the process
(L2 calls, loader calls, write-back flushes, HTTP requests) are counted into fixed buckets
as they end (:class:`Durations`: a bisect and two additions, where the SDK's
``Histogram.record`` costs about 5 µs, a fifth of an L2 read) and handed over when
collected: to Prometheus by a collector on the registry, to OTLP by the exporter.

Metric names (Prometheus spelling after the exporter adds units and ``_total``):
``cache_hits_total{tier}``, ``cache_misses_total``, ``cache_sets_total{strategy}``,
``cache_deletes_total``, ``cache_invalidations_total{kind}``, ``cache_evictions_total{tier}``,
``cache_l1_size_bytes``, ``cache_l1_entries``, ``cache_l2_keys``,
``cache_write_back_pending``, ``cache_compression_bytes_in_bytes_total{codec}``,
``cache_compression_bytes_out_bytes_total{codec}``, ``cache_alerts_active{alert}``,
``cache_l2_operation_duration_seconds{cache_op,outcome}``,
``cache_loader_duration_seconds{cache_loader,outcome}``,
``cache_write_back_flush_duration_seconds{outcome}``,
``http_server_request_duration_seconds{http_request_method,http_route,http_response_status_code}``,
``cache_operation_duration_seconds`` (the agent's own latency histogram, the one the
``high_latency`` alert judges; Prometheus only).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from cache_core.stats import BUCKET_BOUNDS_NS
from cache_server.settings import AgentSettings, ExportSettings

if TYPE_CHECKING:
    from cache_core.agent_view import AgentView
    from cache_core.tiers.base import TierContext

log = logging.getLogger("cache_server.telemetry")

# Seconds: from a loopback round trip to a slow upstream.
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
)  # fmt: skip
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SCOPE = "caching_agent"
"""The instrumentation scope (meter and tracer name)."""
_SCOPE_LABELS = ("otel_scope_name", "otel_scope_schema_url", "otel_scope_version")
RecordRequest = Callable[[float, str, str, int], None]
"""``(seconds, method, route, status)``: one HTTP request's duration."""


class Durations:
    """A duration histogram kept as integer buckets per label set (OpenTelemetry's explicit
    buckets: a value counts in the first bucket whose bound is >= it)."""

    def __init__(
        self,
        name: str,
        description: str,
        labels: tuple[str, ...],
        bounds: tuple[float, ...] = DURATION_BUCKETS,
    ) -> None:
        self.name = name
        """The OpenTelemetry name (``cache.l2.operation.duration``); unit seconds."""
        self.description = description
        self.labels = labels
        """Attribute names, in the order :meth:`record` takes their values."""
        self.bounds = bounds
        # label values -> [count per bucket..., +Inf bucket, sum, min, max]
        self._series: dict[tuple[Any, ...], list[Any]] = {}
        self._size = len(bounds) + 1

    def record(self, seconds: float, values: tuple[Any, ...]) -> None:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = [0] * self._size + [0.0, seconds, seconds]
        series[bisect_left(self.bounds, seconds)] += 1
        series[-3] += seconds
        if seconds < series[-2]:
            series[-2] = seconds
        elif seconds > series[-1]:
            series[-1] = seconds

    def series(self) -> Iterator[tuple[dict[str, str], list[int], float, float, float]]:
        """Per label set: attributes, bucket counts (not cumulative), sum, min, max."""
        for values, series in list(self._series.items()):
            counts = series[: self._size]
            attributes = dict(zip(self.labels, (str(v) for v in values), strict=True))
            yield attributes, counts, series[-3], series[-2], series[-1]

    @property
    def recorded(self) -> bool:
        return bool(self._series)

    @property
    def prometheus_name(self) -> str:
        return self.name.replace(".", "_") + "_seconds"

    def prometheus(self) -> HistogramMetricFamily:
        """The histogram exactly as the SDK's Prometheus reader exposes one (names, sorted
        labels with the scope's, bucket bounds), so dashboards see no difference."""
        names = sorted((label.replace(".", "_"), i) for i, label in enumerate(self.labels))
        family = HistogramMetricFamily(
            self.name.replace(".", "_"),
            self.description,
            labels=[name for name, _ in names] + list(_SCOPE_LABELS),
            unit="seconds",
        )
        bounds = [*(f"{b}" for b in self.bounds), "+Inf"]
        for attributes, counts, total, _, _ in self.series():
            values = list(attributes.values())
            cumulative = list(itertools.accumulate(counts))
            family.add_metric(
                [values[i] for _, i in names] + [SCOPE, "", ""],
                list(zip(bounds, cumulative, strict=True)),
                total,
            )
        return family

    def otlp(self, start_ns: int, now_ns: int) -> Metric:
        points = [
            HistogramDataPoint(
                attributes=attributes,
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=sum(counts),
                sum=total,
                bucket_counts=counts,
                explicit_bounds=list(self.bounds),
                min=low,
                max=high,
            )
            for attributes, counts, total, low, high in self.series()
        ]
        data = HistogramData(points, AggregationTemporality.CUMULATIVE)
        return Metric(name=self.name, description=self.description, unit="s", data=data)


class _DurationsCollector(Collector):
    """Serves the :class:`Durations` on the Prometheus registry beside the SDK's metrics."""

    def __init__(self, histograms: list[Durations]) -> None:
        self._histograms = histograms

    def collect(self) -> Iterator[HistogramMetricFamily]:
        for histogram in self._histograms:
            yield histogram.prometheus()


class _OperationsCollector(Collector):
    """The agent's operation latency histogram (:class:`cache_core.stats.Stats`), the one its
    ``high_latency`` alert takes its p99 from, so a Prometheus rule can judge the same
    numbers (dashboards/alerts.yml). Its buckets are the agent's (25 µs to 2.5 s), untimed
    L1 hits counted in the first as the alert counts them. Not sent over OTLP: the agent
    keeps no min and max, which an OTLP histogram point carries."""

    NAME = "cache_operation_duration"

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[HistogramMetricFamily]:
        stats = self._stats()
        family = HistogramMetricFamily(
            self.NAME,
            "Public reads and writes of the agent (what the high_latency alert judges)",
            labels=list(_SCOPE_LABELS),
            unit="seconds",
        )
        bounds = [*(f"{ns / 1e9}" for ns in BUCKET_BOUNDS_NS), "+Inf"]
        cumulative = list(itertools.accumulate(stats.latency_counts()))
        family.add_metric(
            [SCOPE, "", ""], list(zip(bounds, cumulative, strict=True)), stats.latency.sum_ns / 1e9
        )
        yield family


class _WithDurations(MetricExporter):
    """An OTLP exporter that adds the :class:`Durations` to each export of the SDK's metrics."""

    def __init__(
        self, inner: MetricExporter, histograms: list[Durations], resource: Resource
    ) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._histograms = histograms
        self._resource = resource
        self._start_ns = time.time_ns()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        now_ns = time.time_ns()
        metrics = [h.otlp(self._start_ns, now_ns) for h in self._histograms if h.recorded]
        if not metrics:
            return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        # Into the SDK's entry for the same resource and scope, not beside it: the OTLP
        # encoder keys entries on their resource and scope, so a second one replaced the
        # SDK's (every counter and gauge was lost from each export).
        merged: list[ResourceMetrics] = []
        placed = False
        for entry in metrics_data.resource_metrics:
            if not placed and entry.resource == self._resource:
                scopes = _with(entry.scope_metrics, metrics)
                merged.append(ResourceMetrics(entry.resource, scopes, entry.schema_url))
                placed = True
            else:
                merged.append(entry)
        if not placed:
            scope = ScopeMetrics(InstrumentationScope(SCOPE), metrics, schema_url="")
            merged.append(ResourceMetrics(self._resource, [scope], schema_url=""))
        data = MetricsData(merged)
        return self._inner.export(data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _with(scopes: Sequence[ScopeMetrics], metrics: list[Metric]) -> list[ScopeMetrics]:
    """``scopes`` with ``metrics`` added to our scope's entry (made if there is none)."""
    out: list[ScopeMetrics] = []
    placed = False
    for scope in scopes:
        if not placed and scope.scope.name == SCOPE:
            out.append(ScopeMetrics(scope.scope, [*scope.metrics, *metrics], scope.schema_url))
            placed = True
        else:
            out.append(scope)
    if not placed:
        out.append(ScopeMetrics(InstrumentationScope(SCOPE), metrics, schema_url=""))
    return out


class OpenTelemetryRecorder:
    PLUGIN_NAME: ClassVar[str] = "opentelemetry"

    def __init__(self, options: object = None, context: TierContext | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.meter_provider: MeterProvider | None = None
        self.tracer_provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self._agent: AgentView | None = None
        self._redis_instrumented = False
        self.l2_duration = Durations(
            "cache.l2.operation.duration", "L2 calls", ("cache.op", "outcome")
        )
        self.loader_duration = Durations(
            "cache.loader.duration", "Loader calls", ("cache.loader", "outcome")
        )
        self.flush_duration = Durations(
            "cache.write_back.flush.duration", "Write-back flushes", ("outcome",)
        )
        self.http_duration = Durations(
            "http.server.request.duration",
            "HTTP requests",
            ("http.request.method", "http.route", "http.response.status_code"),
        )
        self._durations = [
            self.l2_duration,
            self.loader_duration,
            self.flush_duration,
            self.http_duration,
        ]
        self.registry.register(_DurationsCollector(self._durations))
        self.record_request: RecordRequest | None = None
        """Where the server records each request's duration; None when nothing reads them."""

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, agent: AgentView) -> None:
        self._agent = agent
        self.registry.register(_OperationsCollector(lambda: agent.stats))
        settings = agent.config.section(ExportSettings)
        service = agent.config.section(AgentSettings)
        resource = Resource.create(
            {"service.name": service.name, "service.version": service.version}
        )
        readers: list[MetricReader] = [
            PrometheusMetricReader(registry=self.registry, disable_target_info=True)
        ]
        if settings.otlp_endpoint:
            exporter = _WithDurations(
                OTLPMetricExporter(
                    endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/metrics", timeout=5
                ),
                self._durations,
                resource,
            )
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=15_000, export_timeout_millis=5_000
                )
            )
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        self._instruments()
        if settings.prometheus_enabled or settings.otlp_endpoint:
            self.record_request = self._record_request
        if settings.tracing != "none":
            self._start_tracing(resource, settings.tracing, settings.otlp_endpoint)
        agent.observe(self)

    def _start_tracing(self, resource: Resource, kind: str, endpoint: str | None) -> None:
        provider = TracerProvider(resource=resource)
        if kind == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            assert endpoint is not None
            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
            provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer_provider = provider
        self.tracer = provider.get_tracer(SCOPE)
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        instrumentor = RedisInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
            self._redis_instrumented = True

    async def close(self) -> None:
        if self._redis_instrumented:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor().uninstrument()
        # In a thread: shutting down flushes the exporters, which may wait on the network.
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.shutdown)
        if self.meter_provider is not None:
            await asyncio.to_thread(self.meter_provider.shutdown)

    # -- instruments ------------------------------------------------------------------------

    def _instruments(self) -> None:
        assert self.meter_provider is not None
        meter = self.meter_provider.get_meter(SCOPE)
        counters = {
            "cache.hits": ("{hit}", "Lookups answered, by the tier that answered", self._hits),
            "cache.misses": ("{miss}", "Lookups no tier or loader could answer", self._misses),
            "cache.sets": ("{write}", "Values written, by strategy", self._sets),
            "cache.deletes": ("{delete}", "Delete calls", self._deletes),
            "cache.invalidations": ("{key}", "Keys removed, by kind", self._invalidations),
            "cache.evictions": ("{entry}", "Entries evicted for space", self._evictions),
            "cache.compression.bytes_in": ("By", "JSON bytes framed, by codec", self._bytes_in),
            "cache.compression.bytes_out": ("By", "Payload bytes stored", self._bytes_out),
        }
        for name, (unit, description, callback) in counters.items():
            meter.create_observable_counter(
                name, callbacks=[callback], unit=unit, description=description
            )
        gauges = {
            "cache.l1.size": ("By", "Bytes held by L1 (accounted)", self._l1_size),
            "cache.l1.entries": ("{entry}", "Entries held by L1", self._l1_entries),
            "cache.l2.keys": ("{key}", "Cache keys in L2 (counted periodically)", self._l2),
            "cache.write_back.pending": ("{write}", "Buffered writes", self._pending),
            "cache.alerts.active": ("{alert}", "1 while an alert is raised", self._alerts),
        }
        for name, (unit, description, callback) in gauges.items():
            meter.create_observable_gauge(
                name, callbacks=[callback], unit=unit, description=description
            )

    @property
    def _stats(self) -> Any:
        assert self._agent is not None
        return self._agent.stats

    def _hits(self, _: CallbackOptions) -> Iterable[Observation]:
        s = self._stats
        yield Observation(s.hits_l1, {"tier": "l1"})
        yield Observation(s.hits_l2, {"tier": "l2"})
        yield Observation(s.hits_loader, {"tier": "loader"})

    def _misses(self, _: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._stats.misses)

    def _sets(self, _: CallbackOptions) -> Iterable[Observation]:
        for strategy, count in self._stats.sets_by_strategy.items():
            yield Observation(count, {"strategy": strategy})

    def _deletes(self, _: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._stats.deletes)

    def _invalidations(self, _: CallbackOptions) -> Iterable[Observation]:
        for kind, count in self._stats.invalidated_by_kind.items():
            yield Observation(count, {"kind": kind})

    def _evictions(self, _: CallbackOptions) -> Iterable[Observation]:
        assert self._agent is not None
        yield Observation(self._agent.l1.evictions, {"tier": "l1"})

    def _codec_counters(self) -> Iterator[tuple[str, Any]]:
        assert self._agent is not None
        if self._agent.l2 is not None:
            yield from self._agent.codecs.counters.items()

    def _bytes_in(self, _: CallbackOptions) -> Iterable[Observation]:
        for codec, counters in self._codec_counters():
            yield Observation(counters.bytes_in, {"codec": codec})

    def _bytes_out(self, _: CallbackOptions) -> Iterable[Observation]:
        for codec, counters in self._codec_counters():
            yield Observation(counters.bytes_out, {"codec": codec})

    def _l1_size(self, _: CallbackOptions) -> Iterable[Observation]:
        assert self._agent is not None
        yield Observation(self._agent.l1.size_bytes)

    def _l1_entries(self, _: CallbackOptions) -> Iterable[Observation]:
        assert self._agent is not None
        yield Observation(len(self._agent.l1))

    def _l2(self, _: CallbackOptions) -> Iterable[Observation]:
        # The agent's own periodic count (monitoring.l2_count_interval): a SCAN per scrape
        # would cost too much, and a second counting loop would bypass the breaker.
        assert self._agent is not None
        yield Observation(self._agent.get_stats().get("l2_size_keys") or 0)

    def _pending(self, _: CallbackOptions) -> Iterable[Observation]:
        assert self._agent is not None
        yield Observation(self._agent.write_back_pending())

    def _alerts(self, _: CallbackOptions) -> Iterable[Observation]:
        assert self._agent is not None
        active = self._agent.alerts.active
        for name in self._agent.alerts.raised_total:
            yield Observation(1 if name in active else 0, {"alert": name})

    # -- the agent's OperationObserver --------------------------------------------------------

    def _record_request(self, seconds: float, method: str, route: str, status: int) -> None:
        self.http_duration.record(seconds, (method, route, status))

    def l2_call(self, op: str, seconds: float, ok: bool) -> None:
        self.l2_duration.record(seconds, (op, "ok" if ok else "error"))

    def loader_call(self, loader: str, seconds: float, outcome: str) -> None:
        self.loader_duration.record(seconds, (loader, outcome))

    def flush(self, seconds: float, items: int, ok: bool) -> None:
        self.flush_duration.record(seconds, ("ok" if ok else "error",))

    def span(
        self, name: str, attributes: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        if self.tracer is None or not is_instrumentation_enabled():
            return contextlib.nullcontext()
        return self.tracer.start_as_current_span(name, attributes=dict(attributes))

    def untraced(self) -> contextlib.AbstractContextManager[Any]:
        # The instrumentations' own switch: the Redis instrumentation's spans stop too.
        return suppress_instrumentation() if self.tracer is not None else contextlib.nullcontext()

    # -- exposition -------------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)
