"""The orchestrator: lookups through the tiers, writes through a strategy, invalidation.

Lookup: L1 -> write-back buffer -> L2 (promoted to L1 with its remaining TTL, capped by
L1's) -> loader (single-flight per key) -> miss. Plugins are assembled once in
:meth:`CachingAgent.from_config`; after that every call goes straight to the objects they
built, and the counters are plain integers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import pluggy
from attrs import define

from cache_core import serialization
from cache_core.alerts import AlertMonitor
from cache_core.breaker import BreakerState, CircuitBreaker
from cache_core.categories import CategoryRules
from cache_core.codecs import Codec
from cache_core.config import Config, load_config, name_env_source
from cache_core.errors import (
    CacheError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    InvalidValueError,
    LoaderError,
    NoLoaderError,
    NotLoadedError,
    TierUnavailableError,
    UnknownEventError,
    UnknownNameError,
)
from cache_core.frames import KNOWN_CODEC_EXTRAS, CodecSet
from cache_core.globs import glob_features, is_literal, matcher
from cache_core.invalidation import (
    TAG_PREFIX,
    IndexContext,
    InvalidationIndex,
    LocalIndex,
    fill,
)
from cache_core.loaders import Loader, NotFound
from cache_core.loading import LoaderSet, with_instance_lock
from cache_core.metrics import MetricsRecorder, NullObserver, OperationObserver
from cache_core.plugins import Registry, make_plugin_manager
from cache_core.policies import Policy, PolicyTable
from cache_core.registrations import InvalidationManager
from cache_core.stats import Stats
from cache_core.strategies import CacheStrategy, Strategy, StrategyContext, Write
from cache_core.tiers.base import LocalTier, RemoteTier, StoredValue, TierContext
from cache_core.tiers.memory import BypassTier
from cache_core.tiers.observed import GuardedIndex, ObservedTier

log = logging.getLogger("cache_core.agent")

_perf = time.perf_counter_ns
_decode = serialization.decode
# C0, DEL and C1 controls, and lone surrogates (text no UTF-8 can carry to L2).
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

SWEEP_CHUNK = 4096
"""Keys of L1 a pattern sweep matches between two yields to the event loop."""

KeySet = set[str]  # spelled once here: inside the class, `set` is CachingAgent.set

Found = tuple[bytes, str]
"""A hit: the value's JSON bytes and the tier that answered (``l1``, ``l2``, ``loader``)."""


@define(frozen=True)
class WarmUpReport:
    warmed: int
    requested: int
    failures: dict[str, CacheError]
    """Every key not cached after the warm-up, with why (``no_loader``, ``not_found``,
    ``loader_failed``, ``corrupt_entry``)."""

    @property
    def success(self) -> bool:
        """Whether every key asked for is cached after the warm-up."""
        return self.warmed == self.requested


class _L1Coherence:
    """Applies other instances' changes (reported by L2) to this instance's L1."""

    def __init__(self, agent: CachingAgent) -> None:
        self._agent = agent

    def keys_changed(self, keys: Sequence[str]) -> None:
        agent = self._agent
        agent._coherence_seq += 1
        for key in keys:
            agent.l1.delete(key)

    def pattern_changed(self, pattern: str) -> None:
        agent = self._agent
        agent._coherence_seq += 1
        if len(agent.l1) <= SWEEP_CHUNK:
            agent.l1.delete_matching(pattern)
            return
        # A large L1 is swept in steps, between which the loop serves others.
        task = asyncio.get_running_loop().create_task(agent._sweep_l1(pattern))
        agent._sweeps.add(task)
        task.add_done_callback(agent._sweeps.discard)

    def lost(self) -> None:
        agent = self._agent
        agent._coherence_seq += 1
        agent._coherent = False
        agent._refresh_l1()
        log.warning("l1_bypassed", extra={"detail": "coherence notices stopped: reads go to L2"})

    def restored(self) -> None:
        agent = self._agent
        agent._coherence_seq += 1
        # Whatever L1 took in while notices were not flowing may be stale: start empty.
        agent.l1.clear()
        agent._coherent = True
        agent._refresh_l1()
        log.info("l1_serving", extra={"detail": "coherence notices flowing"})


class CachingAgent:
    """A multi-tier cache. Use as ``async with CachingAgent.from_config(...) as agent:``."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        plugin_manager: pluggy.PluginManager,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry
        self.plugin_manager = plugin_manager
        self.clock = clock
        self.stats = Stats()
        self.policies = PolicyTable(config)
        self.categories = CategoryRules(config)
        self._limits = config.limits
        self.codecs = self._build_codecs()
        context = TierContext(
            config=config,
            registry=registry,
            clock=clock,
            codecs=self.codecs,
            policies=self.policies,
        )

        self.l1: LocalTier = self._build_tier("l1", context, LocalTier)
        self.l2: RemoteTier | None = (
            self._build_tier("l2", context, RemoteTier) if "l2" in config.cache_tiers else None
        )
        # The L2 the data path calls: timed and traced through the installed observer.
        self.observer: OperationObserver = NullObserver()
        breaker_settings = config.circuit_breaker
        self.breaker = CircuitBreaker(
            breaker_settings.failure_threshold,
            breaker_settings.reset_timeout,
            clock,
            on_change=lambda _: self._refresh_l1(),
            probe_after=breaker_settings.probe_after,
        )
        self._l2: ObservedTier | None = (
            ObservedTier(
                self.l2, self.policies.pattern_of, self.breaker, breaker_settings.operation_timeout
            )
            if self.l2 is not None
            else None
        )
        # What reads are served from: L1 itself, or a tier that holds nothing while L1 may
        # be stale (with L2, until this instance hears other instances' changes).
        self._coherence_seq = 0
        self.shares_l2 = self.l2 is not None and self.l2.attach(_L1Coherence(self))
        """True when L2 reports other instances' changes: several instances (or ``serve
        --workers``) on that L2 keep their L1 copies coherent."""
        # An L2 no other instance shares cannot make L1 stale behind its back.
        self._coherent = not self.shares_l2
        self._l1: LocalTier = self.l1
        self._refresh_l1()

        strategy_context = StrategyContext(l1=self.l1, l2=self._l2, clock=clock)
        self._l1_ttl = strategy_context.l1_ttl
        self.strategies: dict[str, Strategy] = self._build_strategies(strategy_context)
        self._buffering = [s for s in self.strategies.values() if s.buffers]
        self.default_strategy = self._strategy_named(
            config.default_strategy, path="strategies.default"
        )
        for name, policy in config.cache_policies.items():
            if policy.strategy is not None:
                self._strategy_named(policy.strategy, path=f"cache_policies.{name}.strategy")

        backend = config.invalidation.backend
        if backend == "auto":
            # Shared indexes when L2 can hold them, so every instance sees every tag.
            shared = self.l2 is not None and "redis" in registry.tables["invalidator"]
            backend = "redis" if shared else "local"
        index_cls = registry.get("invalidator", backend, path="invalidation.backend")
        try:
            self.index: InvalidationIndex = index_cls(
                None, IndexContext(config=config, clock=clock, l2=self.l2)
            )
        except ValueError as exc:
            raise ConfigError(f"invalidation.backend: {exc}") from None
        # What the agent calls: the index behind the L2 guard when it lives in L2.
        self._index: InvalidationIndex = self.index
        if self._l2 is not None and not isinstance(self.index, LocalIndex):
            self._index = GuardedIndex(self.index, self._l2)
        self.invalidation_manager = InvalidationManager(
            self._index,
            check_key=self.check_key,
            check_pattern=self.check_caller_pattern,
            check_names=self._check_names,
        )
        loaders: list[Loader] = []
        for name, section in config.loaders.items():
            loader_cls = registry.get("loader", name, path=f"loaders.{name}")
            options = registry.options(loader_cls, section, path=f"loaders.{name}")
            try:
                loaders.append(loader_cls(options, context))
            except ValueError as exc:
                raise ConfigError(f"loaders.{name}: {exc}") from None
        self.loading = LoaderSet(loaders, config.loading, clock)
        self.recorders: list[MetricsRecorder] = []
        names = config.monitoring.recorders
        for index, name in enumerate(registry.names("metrics") if names is None else names):
            recorder_cls = registry.get("metrics", name, path=f"monitoring.recorders[{index}]")
            self.recorders.append(recorder_cls(None, context))
        self.alerts = AlertMonitor(config.monitoring, self.stats, clock)
        self._alert_task: asyncio.Task[None] | None = None
        self._l2_count: tuple[int, float] | None = None
        """L2's key count and when (the agent's clock) it was taken, for get_stats()."""
        self._l2_count_error: str | None = None
        self._count_task: asyncio.Task[None] | None = None

        self._inflight: dict[str, asyncio.Future[Found | None]] = {}
        self._sweeps: set[asyncio.Task[list[str]]] = set()
        """Sweeps of L1 started by other instances' pattern notices, still running."""
        self._started = False
        self._started_at = 0.0

    # -- assembly -------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        source: str | Any | Mapping[str, Any] | Config | None = None,
        *,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> CachingAgent:
        """Build an agent from a config path, mapping or :class:`Config`; nothing is opened
        until ``async with`` (or :meth:`start`). Raises :class:`ConfigError` naming the field."""
        config = load_config(source, env=env)
        pm = make_plugin_manager(plugins, load_entry_points=load_entry_points, env=env)
        registry = Registry.from_plugin_manager(pm)
        try:
            return cls(config, registry, pm, clock=clock)
        except ConfigError as exc:
            raise type(exc)(name_env_source(str(exc), config.env_sources)) from None

    def _build_tier(self, name: str, context: TierContext, role: type[Any]) -> Any:
        section = dict(self.config.cache_tiers[name])
        type_name = section.pop("type")
        path = f"cache_tiers.{name}.type"
        eviction = section.get("eviction")
        if type_name == "memory" and eviction not in (None, "lru"):
            # An eviction policy is a tier plugin named after it (``wtinylfu``).
            type_name, path = eviction, f"cache_tiers.{name}.eviction"
        tier_cls = self.registry.get("tier", type_name, path=path)
        wanted = "get" if role is LocalTier else "get_many"
        if role is LocalTier and inspect.iscoroutinefunction(getattr(tier_cls, "get", None)):
            raise ConfigError(
                f"cache_tiers.{name}.type: {type_name!r} is a remote tier; L1 needs a local one"
            )
        if role is RemoteTier and not inspect.iscoroutinefunction(getattr(tier_cls, wanted, None)):
            raise ConfigError(
                f"cache_tiers.{name}.type: {type_name!r} is a local tier; L2 needs a remote one"
            )
        options = self.registry.options(tier_cls, section, path=f"cache_tiers.{name}")
        try:
            return tier_cls(options, context)
        except ValueError as exc:
            raise ConfigError(f"cache_tiers.{name}: {exc}") from None

    def _build_codecs(self) -> CodecSet:
        compression = self.config.compression
        level = compression.compression_level
        readers: dict[int, Codec] = {}
        for name, codec_cls in self.registry.tables["codec"].items():
            codec_id = codec_cls.CODEC_ID
            if not 0 < codec_id < 256 or codec_id in readers:
                raise ConfigError(f"codec {name!r}: CODEC_ID {codec_id} is invalid or taken")
            readers[codec_id] = codec_cls(level)
        writer = None
        if compression.enable:
            writer_cls = self.registry.get(
                "codec", compression.algorithm, path="compression.algorithm"
            )
            writer = readers[writer_cls.CODEC_ID]
        return CodecSet(
            writer,
            readers,
            threshold=compression.threshold_bytes,
            max_size=compression.max_decompressed_bytes,
            missing=KNOWN_CODEC_EXTRAS,
        )

    def _build_strategies(self, context: StrategyContext) -> dict[str, Strategy]:
        sections = {k: v for k, v in self.config.strategies.items() if k != "default"}
        for name in sections:
            self.registry.get("strategy", name, path=f"strategies.{name}")
        built: dict[str, Strategy] = {}
        for name, strategy_cls in self.registry.tables["strategy"].items():
            path = f"strategies.{name}"
            options = self.registry.options(strategy_cls, sections.get(name), path=path)
            try:
                built[name] = strategy_cls(options, context)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        return built

    def _strategy_named(self, name: str, *, path: str) -> Strategy:
        if name not in self.strategies:
            self.registry.get("strategy", name, path=path)  # raises naming the extra
        return self.strategies[name]

    def describe(self) -> dict[str, Any]:
        """What was assembled: plugins, tiers, strategies, codecs, policies (for the CLI)."""
        tables = self.registry.tables
        compression = self.config.compression
        return {
            "plugins": self.registry.plugin_names,
            "tiers": {
                "l1": f"{self.l1.PLUGIN_NAME} ({self.l1.max_bytes // (1024 * 1024)} MB)",
                "l2": self.l2.PLUGIN_NAME if self.l2 is not None else None,
            },
            "strategies": sorted(self.strategies),
            "default_strategy": self.default_strategy.PLUGIN_NAME,
            "codecs": sorted(tables["codec"]),
            "compression": compression.algorithm if compression.enable else "off",
            "invalidation": self.index.PLUGIN_NAME,
            "loaders": [loader.PLUGIN_NAME for loader in self.loading.loaders],
            "policies": {
                p.name: {
                    "match": self.policies.globs[p.name],
                    "ttl": p.ttl,
                    "strategy": p.strategy,
                    "compress": p.compress,
                }
                for p in self.policies.policies
            },
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        if self.l2 is not None:
            await self.l2.start()
        else:
            log.warning("l1_only", extra={"detail": "no L2 tier configured: L1 alone serves"})
        await self.index.start()
        await self.invalidation_manager.start()
        for strategy in self.strategies.values():
            await strategy.start()
        await self.loading.start()
        for recorder in self.recorders:
            await recorder.start(self)
        if self.alerts.enabled:
            self._alert_task = asyncio.create_task(self._sample_alerts(), name="alerts")
        if self._l2 is not None:
            # The first count is waited for (bounded), so get_stats() has a number at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._count_l2(), self.config.circuit_breaker.operation_timeout
                )
            interval = self.config.monitoring.l2_count_interval
            if interval > 0:
                self._count_task = asyncio.create_task(
                    self._count_l2_every(interval), name="l2-count"
                )
        self._started = True
        self._started_at = time.time()
        if self.config.loading.warm_on_start:
            report = await self.warm_up_report(self.config.loading.warm_on_start)
            log.info(
                "warm_on_start",
                extra={"warmed": report.warmed, "failed": len(report.failures)},
            )
        self.plugin_manager.hook.cache_agent_started(agent=self)

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self.plugin_manager.hook.cache_agent_stopping(agent=self)
        for task in (self._alert_task, self._count_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._alert_task = self._count_task = None
        for sweep in list(self._sweeps):
            sweep.cancel()  # nothing to finish: L1 goes with the agent
            with contextlib.suppress(asyncio.CancelledError):
                await sweep
        try:
            for strategy in self.strategies.values():
                await strategy.close()  # write-back flushes here
        finally:
            await self.loading.close()
            for recorder in self.recorders:
                await recorder.close()
            await self.invalidation_manager.close(self.config.circuit_breaker.operation_timeout)
            await self.index.close()
            if self.l2 is not None:
                await self.l2.close()

    def _refresh_l1(self) -> None:
        """Serve L1 while it is coherent, or while L2 is out of reach (the breaker is open:
        nobody can change L2 through it, and L1 answering is the point of having it); bypass
        it while L2 answers but change notices do not flow."""
        serve = self._coherent or self.breaker.state is BreakerState.OPEN
        if serve and self._l1 is not self.l1:
            self._l1 = self.l1
        elif not serve and self._l1 is self.l1:
            self._l1 = BypassTier(self.l1)

    def health(self) -> tuple[str, list[str]]:
        """``ok`` or ``degraded``, with the reasons."""
        reasons = []
        if self.breaker.state is not BreakerState.CLOSED:
            reasons.append(f"L2 circuit {self.breaker.state}: {self.breaker.last_error}")
        if not self._coherent:
            reasons.append("L2 change notices are not flowing")
        return ("degraded" if reasons else "ok"), reasons

    def health_warnings(self) -> list[str]:
        """What the operator should change about L2 (a server with no memory limit, or one
        that refuses writes once full): shown on /health, never making it degraded."""
        return self._l2.health_notes() if self._l2 is not None else []

    def observe(self, observer: OperationObserver) -> None:
        """Report L2 calls, loader calls and write-back flushes to ``observer`` from now on
        (metrics plugins call this from their ``start``)."""
        self.observer = observer
        if self._l2 is not None:
            self._l2.observer = observer
        self.loading.observer = observer
        for strategy in self._buffering:
            strategy.on_flush = observer.flush

    async def _sample_alerts(self) -> None:
        while True:
            await asyncio.sleep(self.config.monitoring.alert_interval)
            self.alerts.sample()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- validation -----------------------------------------------------------------------

    def check_key(self, key: object) -> str:
        if not isinstance(key, str) or not key:
            raise InvalidKeyError("key must be a non-empty string")
        if len(key) > self._limits.max_key_length:
            raise InvalidKeyError(
                f"key is {len(key)} characters long; the limit is {self._limits.max_key_length}"
            )
        if _BAD_KEY_CHARS.search(key):
            raise InvalidKeyError("key must not contain control characters or lone surrogates")
        return key

    def check_keys(self, keys: Sequence[object]) -> None:
        """:meth:`check_key` for each of ``keys``, in one pass over the valid ones."""
        if (
            all(type(key) is str for key in keys)
            and all(keys)
            and max(map(len, keys), default=0) <= self._limits.max_key_length  # type: ignore[arg-type]
            and not _BAD_KEY_CHARS.search("".join(keys))  # type: ignore[arg-type]
        ):
            return
        for key in keys:  # one is bad: say which, as one check would
            self.check_key(key)

    def check_pattern(self, pattern: object) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidKeyError("pattern must be a non-empty string")
        if len(pattern) > self._limits.max_key_length:
            raise InvalidKeyError(
                f"pattern is {len(pattern)} characters long; "
                f"the limit is {self._limits.max_key_length}"
            )
        if _BAD_KEY_CHARS.search(pattern):
            raise InvalidKeyError("pattern must not contain control characters or lone surrogates")
        return pattern

    def check_caller_pattern(self, pattern: object) -> str:
        """A pattern from a caller: bounded in length, wildcards and classes, so a hostile
        one is refused before it reaches L2."""
        checked = self.check_pattern(pattern)
        limits = self._limits
        if len(checked) > limits.max_pattern_length:
            raise InvalidKeyError(
                f"pattern is {len(checked)} characters long; "
                f"the limit is {limits.max_pattern_length}"
            )
        wildcards, has_class = glob_features(checked)
        if wildcards > limits.max_pattern_wildcards:
            raise InvalidKeyError(
                f"pattern has {wildcards} wildcards; the limit is {limits.max_pattern_wildcards}"
            )
        if has_class and not limits.allow_pattern_classes:
            raise InvalidKeyError(
                "pattern uses a [...] class; set limits.allow_pattern_classes to allow it"
            )
        return checked

    def _encode(self, value: Any) -> bytes:
        data = serialization.encode(value)
        if len(data) > self._limits.max_value_bytes:
            raise InvalidValueError(
                f"value is {len(data)} bytes as JSON; the limit is {self._limits.max_value_bytes}"
            )
        return data

    def _resolve(
        self, key: str, ttl: float | str | None, strategy: str | None
    ) -> tuple[float | None, Strategy]:
        policy: Policy | None = self.policies.match(key)
        if ttl is not None:
            seconds: float | None = self.policies.ttl_seconds(ttl)
        elif policy is not None and policy.ttl is not None:
            seconds = policy.ttl
        else:
            backing = self.l2 if self.l2 is not None else self.l1
            seconds = backing.default_ttl
        name = strategy or (policy.strategy if policy is not None else None)
        if name is None:
            return seconds, self.default_strategy
        chosen = self.strategies.get(str(name))
        if chosen is None:
            known = ", ".join(sorted(self.strategies))
            raise UnknownNameError(f"unknown strategy {name!r} (known: {known})")
        return seconds, chosen

    # -- reads ----------------------------------------------------------------------------

    def lookup_l1(self, key: str) -> bytes | None:
        """:meth:`lookup` of an L1 hit without a coroutine: the JSON bytes, counted as
        that lookup would, or None, counting nothing (then :meth:`lookup` looks and counts).
        An HTTP GET tries this first: on an L1 hit the await costs as much as the lookup."""
        data = self._l1.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1  # counted, not timed (see Stats.l1_hit_calls)
        return data

    async def lookup(self, key: str) -> Found | None:
        """The JSON bytes of ``key`` and the tier that had them, or None on a miss."""
        data = self._l1.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1  # counted, not timed (see Stats.l1_hit_calls)
            return data, "l1"
        start = _perf()
        stats = self.stats
        found = await self._below_l1(key)
        self._count_lookup(found)
        stats.latency.observe(_perf() - start)
        return found

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` on a miss."""
        # lookup() inlined: an L1 hit is the hot path and a call costs a tenth of it.
        data = self._l1.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1  # counted, not timed (see Stats.l1_hit_calls)
            return _decode(data)
        start = _perf()
        stats = self.stats
        found = await self._below_l1(key)
        self._count_lookup(found)
        stats.latency.observe(_perf() - start)
        return default if found is None else serialization.decode(found[0])

    def _count_lookup(self, found: Found | None) -> None:
        if found is None:
            self.stats.misses += 1
        elif found[1] == "l2":
            self.stats.hits_l2 += 1
        elif found[1] == "l1":
            self.stats.l1_batch_hits += 1  # timed with the lookup, unlike l1_hit_calls
        else:
            self.stats.hits_loader += 1

    def _stale_if_error(self, key: str) -> Found | None:
        """With L2 failing, L1's copy of ``key`` even while L1 is bypassed (change notices
        stopped, as they do the moment L2 dies): possibly stale, better than an error.
        L1 is still emptied once notices flow again."""
        data = self.l1.get(key)
        if data is None:
            return None
        self.stats.served_stale += 1
        return data, "l1"

    async def _below_l1(self, key: str, *, load: bool = True) -> Found | None:
        self.check_key(key)
        for strategy in self._buffering:
            if not strategy.holds_writes():
                continue
            pending = strategy.pending(key)
            if pending is not None:
                self._l1.set(key, pending[0], self._l1_ttl(pending[1]))
                return pending[0], "l2"
        if self._l2 is not None:
            seq = self._coherence_seq
            try:
                stored = await self._l2.get(key)
            except TierUnavailableError:
                stale = self._stale_if_error(key)
                if stale is None:
                    raise
                return stale
            if stored is not None:
                # A notice that arrived during the read may concern this very value.
                if seq == self._coherence_seq:
                    self._l1.set(key, stored.data, self._l1_ttl(stored.ttl_remaining))
                return stored.data, "l2"
        if load and self.loading:
            chosen = self.loading.find(key)
            if chosen is not None and not self.loading.known_missing(key):
                return await self._single_flight(key, lambda: self._load(key, *chosen))
        return None

    async def _load(self, key: str, loader: Loader, ids: dict[str, str]) -> Found | None:
        """Call ``loader`` for ``key`` (once across instances sharing L2, by lock) and store
        what it returns, written through so the instances waiting on the lock find it."""

        async def load() -> Found | None:
            try:
                value = await self.loading.call(loader, key, ids)
            except NotFound:
                self.loading.remember_missing(key)
                return None
            data = self._encode(value)
            ttl, strategy = self._resolve(key, None, None)
            if strategy.buffers:
                strategy = self.strategies.get("write_through", strategy)
            await self._write(strategy, [(key, data, ttl)], (), ())
            return data, "loader"

        def from_l2(stored: StoredValue) -> Found:
            self._l1.set(key, stored.data, self._l1_ttl(stored.ttl_remaining))
            return stored.data, "l2"

        if self._l2 is None:
            return await load()
        result: Found | None = await with_instance_lock(
            self._l2, key, self.config.loading.lock_lease, load, from_l2
        )
        return result

    async def _single_flight(
        self, key: str, produce: Callable[[], Awaitable[Found | None]]
    ) -> Found | None:
        """``produce()`` once for all concurrent callers of ``key``. If the caller running
        it is cancelled, a waiter that was not takes over rather than failing with it."""
        while True:
            waiting = self._inflight.get(key)
            if waiting is None:
                break
            try:
                return await asyncio.shield(waiting)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if waiting.cancelled() and task is not None and not task.cancelling():
                    continue  # the leader was cancelled, not us: lead or wait anew
                raise
        future: asyncio.Future[Found | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await produce()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody may be waiting
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def get_or_compute(
        self,
        key: str,
        fn: Callable[[], Any],
        *,
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
    ) -> Any:
        """The cached value of ``key``; on a miss, ``fn()`` (sync or async) computed once for
        all concurrent callers, stored, and returned."""
        found = await self.lookup(key)
        if found is not None:
            return serialization.decode(found[0])

        async def compute() -> Found | None:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            data = self._encode(value)
            seconds, chosen = self._resolve(key, ttl, strategy)
            await self._write(chosen, [(key, data, seconds)], tags, dependencies)
            return data, "loader"

        computed = await self._single_flight(key, compute)
        return None if computed is None else serialization.decode(computed[0])

    async def lookup_many(
        self, keys: Sequence[str], failures: dict[str, CacheError] | None = None
    ) -> dict[str, Found | None]:
        """Each key's bytes and tier (None for a miss), L2 asked once for all L1 misses.

        A key whose entry in L2 is unreadable is None and, with ``failures`` given, its error
        is put there: one bad entry never costs the others their answer."""
        if len(keys) > self._limits.max_batch_size:
            raise InvalidValueError(
                f"{len(keys)} keys in one batch; the limit is {self._limits.max_batch_size}"
            )
        self.check_keys(keys)
        start = _perf()
        results: dict[str, Found | None] = {}
        missing: list[str] = []
        l1_get = self._l1.get
        for key in keys:
            if key in results:  # a repeated key is looked up and counted once
                continue
            data = l1_get(key)
            if data is not None:
                results[key] = (data, "l1")
            else:
                results[key] = None
                missing.append(key)
        self.stats.l1_batch_hits += len(results) - len(missing)
        buffering = [s for s in self._buffering if s.holds_writes()]
        if missing and buffering:
            still = []
            for key in missing:
                for strategy in buffering:
                    pending = strategy.pending(key)
                    if pending is not None:
                        self._l1.set(key, pending[0], self._l1_ttl(pending[1]))
                        results[key] = (pending[0], "l2")
                        break
                else:
                    still.append(key)
            self.stats.hits_l2 += len(missing) - len(still)  # the buffer stands in for L2
            missing = still
        if missing and self._l2 is not None:
            missing = await self._lookup_l2(missing, results, failures)
        if missing and self.loading:
            loadable = [key for key in missing if self.loading.find(key) is not None]
            loaded = await asyncio.gather(*(self._below_l1(key) for key in loadable))
            results.update(zip(loadable, loaded, strict=True))
            for found in loaded:
                self._count_lookup(found)
            self.stats.misses += len(missing) - len(loadable)
        else:
            self.stats.misses += len(missing)
        self.stats.latency.observe(_perf() - start)
        return results

    async def _lookup_l2(
        self,
        missing: list[str],
        results: dict[str, Found | None],
        failures: dict[str, CacheError] | None,
    ) -> list[str]:
        """Fill ``results`` from L2 for ``missing``; return the keys L2 does not hold."""
        assert self._l2 is not None
        seq = self._coherence_seq
        try:
            stored = await self._l2.get_many(missing)
        except TierUnavailableError as exc:
            # Stale-if-error: what L1 holds is answered. The rest is each key's error when
            # the caller takes per-key errors and something was answered; else the call
            # fails, as a single lookup would.
            l1_get = self.l1.get
            stale = {key: l1_get(key) for key in missing}
            lost = [key for key, data in stale.items() if data is None]
            answered = (
                len(missing) - len(lost) + sum(found is not None for found in results.values())
            )
            if lost and (failures is None or not answered):
                raise
            for key, data in stale.items():
                if data is not None:
                    results[key] = (data, "l1")
            if failures is not None:
                failures.update(dict.fromkeys(lost, exc))
            self.stats.l1_batch_hits += len(missing) - len(lost)
            self.stats.served_stale += len(missing) - len(lost)
            self.stats.misses += len(lost)
            return []
        promote = seq == self._coherence_seq
        still = []
        unreadable = 0
        l1_set, l1_ttl = self._l1.set, self._l1_ttl
        for key, value in zip(missing, stored, strict=True):
            if value is None:
                still.append(key)
            elif isinstance(value, CorruptEntryError):
                unreadable += 1
                if failures is not None:
                    failures[key] = value
            else:
                if promote:
                    l1_set(key, value.data, l1_ttl(value.ttl_remaining))
                results[key] = (value.data, "l2")
        self.stats.hits_l2 += len(missing) - len(still) - unreadable
        self.stats.misses += unreadable
        return still

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Each key's value (None for a miss)."""
        found = await self.lookup_many(keys)
        return {k: None if f is None else serialization.decode(f[0]) for k, f in found.items()}

    # -- writes ---------------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | str | None = None,
        strategy: str | CacheStrategy | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
    ) -> str:
        """Store ``value`` under ``key``; returns the name of the strategy that wrote it.

        ``ttl`` is seconds or a ``ttl_presets`` name; without one, the first matching
        policy's, else the backing tier's default. Overwriting a key invalidates its
        dependents.
        """
        start = _perf()
        self.check_key(key)
        self._check_tags(tags)
        if isinstance(dependencies, str):
            raise InvalidValueError("dependencies must be a list of keys, not one string")
        if len(dependencies) > self._limits.max_dependencies:
            raise InvalidValueError(
                f"{len(dependencies)} dependencies on one write; the limit is "
                f"limits.max_dependencies ({self._limits.max_dependencies})"
            )
        for dependency in dependencies:
            self.check_key(dependency)
        data = self._encode(value)
        # Encoded, the value is not needed again: a multi-MiB one must not wait out the L2
        # round trip beside its bytes (when the caller lets go of it too).
        del value
        seconds, chosen = self._resolve(key, ttl, strategy)
        await self._write(chosen, [(key, data, seconds)], tags, dependencies)
        self.stats.latency.observe(_perf() - start)
        return chosen.PLUGIN_NAME

    async def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | str | None = None,
        strategy: str | CacheStrategy | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Store every item (all validated before anything is written); returns the count."""
        if len(items) > self._limits.max_batch_size:
            raise InvalidValueError(
                f"{len(items)} items in one batch; the limit is {self._limits.max_batch_size}"
            )
        self._check_tags(tags)
        start = _perf()
        groups: dict[str, tuple[Strategy, list[Write]]] = {}
        for key, value in items.items():
            self.check_key(key)
            data = self._encode(value)
            seconds, chosen = self._resolve(key, ttl, strategy)
            groups.setdefault(chosen.PLUGIN_NAME, (chosen, []))[1].append((key, data, seconds))
        for chosen, writes in groups.values():
            await self._write(chosen, writes, tags, ())
        self.stats.latency.observe(_perf() - start)
        return len(items)

    def _check_tags(self, tags: Sequence[str]) -> None:
        """The tags one write carries: valid names, at most ``limits.max_tags``."""
        self._check_names(tags, "tag", self._limits.max_tags, "limits.max_tags")

    def _check_names(
        self, names: Sequence[str], what: str, limit: int | None = None, limit_name: str = ""
    ) -> None:
        """Valid names, at most ``limit`` (``limits.max_batch_size`` unless given)."""
        if isinstance(names, str):
            raise InvalidValueError(f"{what}s must be a list of strings, not one string")
        if limit is None:
            limit, limit_name = self._limits.max_batch_size, "limits.max_batch_size"
        if len(names) > limit:
            raise InvalidValueError(
                f"{len(names)} {what}s in one call; the limit is {limit_name} ({limit})"
            )
        longest = self._limits.max_key_length
        for name in names:
            if not isinstance(name, str) or not name or _BAD_KEY_CHARS.search(name):
                raise InvalidValueError(
                    f"each {what} must be a non-empty string without control characters"
                )
            if len(name) > longest:
                # A tag names an index key: bounded like the keys it indexes.
                raise InvalidValueError(
                    f"a {what} is {len(name)} characters long; the limit is "
                    f"limits.max_key_length ({longest})"
                )

    async def _write(
        self,
        strategy: Strategy,
        writes: list[Write],
        tags: Sequence[str],
        dependencies: Sequence[str],
    ) -> None:
        keys = [key for key, _, _ in writes]
        if strategy.buffers:
            await strategy.admit(writes)  # a write the buffer refuses must change nothing
        self.loading.forget_missing(keys)
        if self.l2 is None:
            # L1 is the store: a value it can never hold is refused, not silently dropped.
            for key, data, _ in writes:
                if not self.l1.fits(key, data):
                    raise InvalidValueError(
                        f"value for {key!r} is larger than the whole L1 "
                        f"({self.l1.max_bytes} bytes) and there is no L2"
                    )
        if self.categories:
            # Before the write: the written keys may be of a dependent category too.
            await self._invalidate_tags(sorted(self.categories.targets(set(keys))), set())
        # A buffered (or in-flight) older write from another strategy must not land after
        # this one.
        for other in self._buffering:
            if other is not strategy and any(other.pending(k) is not None for k in keys):
                await other.discard(keys)
        # Indexed first: should the write fail half-way, its tags still reach what it cached.
        categorize = self.categories.tags_for if self.categories else None
        entries = [
            (key, ttl, [*tags, *categorize(key)] if categorize else tags) for key, _, ttl in writes
        ]
        try:
            if self.invalidation_manager.pending:
                await self.invalidation_manager.land()  # a registration may name these keys
            dependents = await self._index.record(entries, dependencies)
        except TierUnavailableError:
            # With L2 away, write-back still takes plain writes (the point of buffering);
            # one carrying tags or dependencies is refused: its invalidation could not work.
            if not strategy.buffers or dependencies or any(tags for _, _, tags in entries):
                raise
            dependents = set()
        await strategy.write(writes)
        # Landed: only now may the index drop the links the old value needed. Should that
        # fail, both values' links stay, which invalidates too much, never too little.
        settling = self._index.settle(entries, dependencies)
        if settling is not None:
            with contextlib.suppress(TierUnavailableError):
                await settling
        self.stats.sets += len(writes)
        by_strategy = self.stats.sets_by_strategy
        by_strategy[strategy.PLUGIN_NAME] = by_strategy.get(strategy.PLUGIN_NAME, 0) + len(writes)
        if dependents:
            # The written keys stay, even where a dependency cycle leads back to them.
            await self._remove(dependents, cascade=True, spare=frozenset(keys))

    # -- deletes and invalidation ---------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (and, transitively, its dependents); True if ``key`` was cached."""
        start = _perf()
        self.check_key(key)
        removed = await self._remove({key}, cascade=True)
        self.stats.deletes += 1
        self.stats.count_invalidated("delete", len(removed))
        self.stats.latency.observe(_perf() - start)
        return key in removed

    async def _remove(
        self,
        keys: KeySet,
        *,
        cascade: bool,
        visited: KeySet | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> KeySet:
        """Remove ``keys`` from every tier and buffer; with ``cascade``, their dependents too
        (by key and by category), except ``spare``. Returns the keys that were actually
        held somewhere."""
        if cascade:
            keys = keys | await self._dependents(keys)
        keys -= spare
        self.loading.forget_missing(keys)
        removed = {key for key in keys if self.l1.delete(key)}
        for strategy in self._buffering:
            removed.update(await strategy.discard(keys))
        if self._l2 is not None and keys:
            removed.update(await self._l2.delete(sorted(keys)))
        await self._index.forget(keys)
        if cascade and self.categories:
            tags = sorted(self.categories.targets(keys))
            removed |= await self._invalidate_tags(tags, visited, spare)
        return removed

    async def _dependents(self, keys: KeySet) -> KeySet:
        if self.invalidation_manager.pending:
            await self.invalidation_manager.land()  # a registration may name these keys
        return await self._index.dependents(keys)

    async def _invalidate_pattern(self, pattern: str, visited: KeySet | None = None) -> KeySet:
        self.check_pattern(pattern)
        if is_literal(pattern):
            return await self._remove({pattern}, cascade=True, visited=visited)
        self.loading.clear_missing()
        removed = set(await self._sweep_l1(pattern))
        for strategy in self._buffering:
            removed.update(await strategy.discard_matching(pattern))
        if self._l2 is not None:
            removed.update(await self._l2.delete_matching(pattern))
        dependents = await self._dependents(removed)
        await self._index.forget(removed)
        if dependents:
            removed |= await self._remove(dependents, cascade=True, visited=visited)
        if self.categories:
            tags = sorted(self.categories.targets(removed))
            removed |= await self._invalidate_tags(tags, visited)
        return removed

    async def _sweep_l1(self, pattern: str) -> list[str]:
        """``l1.delete_matching(pattern)``, but over a large L1 in steps of
        :data:`SWEEP_CHUNK` keys, yielding to the loop between them: one invalidation must
        not stop every other request while it walks a million keys."""
        l1 = self.l1
        keys = getattr(l1, "keys", None)
        if len(l1) <= SWEEP_CHUNK or keys is None or is_literal(pattern):
            return l1.delete_matching(pattern)
        match = matcher(pattern)
        delete = l1.delete
        removed: list[str] = []
        snapshot: list[str] = keys()
        for start in range(0, len(snapshot), SWEEP_CHUNK):
            if start:
                await asyncio.sleep(0)
            removed += [
                key for key in snapshot[start : start + SWEEP_CHUNK] if match(key) and delete(key)
            ]
        return removed

    async def _invalidate_tags(
        self,
        tags: Sequence[str],
        visited: KeySet | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> KeySet:
        """Remove every key carrying any of ``tags``, each tag once per request (``visited``),
        so category rules that loop end."""
        visited = set() if visited is None else visited
        fresh = [tag for tag in tags if tag not in visited]
        if not fresh:
            return set()
        visited.update(fresh)
        keys = await self._index.keys_for_tags(fresh)
        if not keys:
            return set()
        return await self._remove(keys, cascade=True, visited=visited, spare=spare)

    async def _event_targets(
        self, event: str, context: Mapping[str, Any] | None, scope: str = ""
    ) -> list[str]:
        """The event's targets with placeholders filled, ``scope`` (a caller's namespace)
        put before each key glob and tag; raises before anything is removed."""
        configured = self.config.invalidation.event_triggers
        if self.invalidation_manager.pending:
            await self.invalidation_manager.land()
        subscribed = await self._index.subscriptions(event)
        if event not in configured and not subscribed:
            known = sorted(set(configured) | set(await self._index.events()))
            raise UnknownEventError(
                f"unknown event {event!r} (known: {', '.join(known) or 'none'})"
            )
        targets = []
        for target in [*configured.get(event, []), *subscribed]:
            filled = fill(target, context or {}, event)
            if filled.startswith(TAG_PREFIX):
                tag = scope + filled.removeprefix(TAG_PREFIX)
                self._check_names([tag], "tag")
                targets.append(TAG_PREFIX + tag)
            else:
                targets.append(self.check_pattern(scope + filled))
        return targets

    async def _invalidate_targets(self, targets: Sequence[str]) -> KeySet:
        removed: KeySet = KeySet()
        tags = [t.removeprefix(TAG_PREFIX) for t in targets if t.startswith(TAG_PREFIX)]
        if tags:
            removed |= await self._invalidate_tags(tags)
        for target in targets:
            if not target.startswith(TAG_PREFIX):
                removed |= await self._invalidate_pattern(target)
        return removed

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a Redis glob (``user:*:profile``); returns how many."""
        removed = await self._invalidate_pattern(self.check_caller_pattern(pattern))
        self.stats.count_invalidated("pattern", len(removed))
        return len(removed)

    async def invalidate_by_tags(self, tags: Sequence[str]) -> int:
        """Remove every key carrying ANY of ``tags``; returns how many."""
        self._check_names(tags, "tag")
        removed = await self._invalidate_tags(tags)
        self.stats.count_invalidated("tags", len(removed))
        return len(removed)

    async def invalidate_by_event(
        self, event: str, context: Mapping[str, Any] | None = None
    ) -> int:
        """Remove what ``event`` reaches (config targets and subscriptions, placeholders
        filled from ``context``); returns how many keys."""
        targets = await self._event_targets(str(event), context)
        removed = await self._invalidate_targets(targets)
        self.stats.count_invalidated("event", len(removed))
        return len(removed)

    async def invalidate(
        self,
        *,
        pattern: str | None = None,
        tags: Sequence[str] = (),
        event: str | None = None,
        context: Mapping[str, Any] | None = None,
        scope: str = "",
    ) -> int:
        """Any combination of the three; each removed key counted once. ``scope`` is put
        before every key glob and tag the event reaches (a caller's namespace)."""
        if pattern is not None:
            self.check_caller_pattern(pattern)
        self._check_names(tags, "tag")
        # Every part is validated before anything is removed: bad input changes nothing.
        targets = [] if event is None else await self._event_targets(str(event), context, scope)
        removed: KeySet = KeySet()
        if pattern is not None:
            removed |= self._tally("pattern", await self._invalidate_pattern(pattern), removed)
        if tags:
            removed |= self._tally("tags", await self._invalidate_tags(tags), removed)
        if targets:
            removed |= self._tally("event", await self._invalidate_targets(targets), removed)
        return len(removed)

    def _tally(self, kind: str, found: KeySet, already: KeySet) -> KeySet:
        """Count the keys ``kind`` removed that no earlier part of the request did."""
        fresh = found - already
        self.stats.count_invalidated(kind, len(fresh))
        return fresh

    # -- warm-up and stats ----------------------------------------------------------------

    async def warm_up(self, keys: Sequence[str], compute_strategy: str = "parallel") -> int:
        """Bring ``keys`` into the cache: promoted from L2 or computed by a loader. Returns
        how many are cached after the call (see :meth:`warm_up_report` for failures)."""
        return (await self.warm_up_report(keys, compute_strategy)).warmed

    async def warm_up_report(
        self, keys: Sequence[str], compute_strategy: str = "parallel"
    ) -> WarmUpReport:
        """Warm ``keys`` (``parallel``: ``loading.warm_concurrency`` loader calls at once, or
        ``sequential``); each key that could not be warmed is in ``failures`` with why.
        Lookups made here do not count as hits or misses."""
        if len(keys) > self._limits.max_warmup_keys:
            raise InvalidValueError(
                f"{len(keys)} keys to warm; the limit is {self._limits.max_warmup_keys}"
            )
        if compute_strategy not in ("parallel", "sequential"):
            raise UnknownNameError(
                f"unknown compute_strategy {compute_strategy!r} (known: parallel, sequential)"
            )
        for key in keys:
            self.check_key(key)
        unique = list(dict.fromkeys(keys))
        failures: dict[str, CacheError] = {}

        async def warm(key: str) -> bool:
            if key in self._l1:
                return True
            try:
                if await self._below_l1(key) is not None:
                    return True
            except (LoaderError, CorruptEntryError, InvalidValueError, TierUnavailableError) as exc:
                # One key's trouble (a loaded value too large, L2 away) is that key's failure.
                failures[key] = exc
                return False
            if self.loading.find(key) is None:
                failures[key] = NoLoaderError("not in the cache, and no loader serves this key")
            else:
                failures[key] = NotLoadedError("the loader found no value for this key")
            return False

        if compute_strategy == "sequential":
            warmed = sum([await warm(key) for key in unique])
        else:
            limit = asyncio.Semaphore(self.config.loading.warm_concurrency)

            async def bounded(key: str) -> bool:
                async with limit:
                    return await warm(key)

            warmed = sum(await asyncio.gather(*(bounded(key) for key in unique)))
        return WarmUpReport(warmed=warmed, requested=len(unique), failures=failures)

    def write_back_pending(self) -> int:
        """Writes buffered for L2 and not yet flushed."""
        return sum(int(str(s.describe().get("pending", 0))) for s in self._buffering)

    def get_stats(self) -> dict[str, Any]:
        """The description's statistics plus per-tier hits, L1 entries and write-back state,
        from what the agent knows now: ``l2_size_keys`` is L2's key count as of its last
        periodic count (``l2_size_keys_age_seconds`` ago; None before the first). See
        :meth:`fetch_stats` to count L2 now."""
        summary = self.stats.summary()
        summary["l1_size_bytes"] = self.l1.size_bytes
        summary["l1_max_bytes"] = self.l1.max_bytes
        summary["l1_entries"] = len(self.l1)
        summary["l1_evictions"] = self.l1.evictions
        # An L1 plugin may describe its policy's state (W-TinyLFU: the window, the guard).
        describe = getattr(self.l1, "describe", None)
        if callable(describe):
            summary["l1_policy"] = describe()
        if self._l2 is None:
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
        summary["uptime_seconds"] = round(time.time() - self._started_at, 3) if self._started else 0
        summary["plugins"] = self.registry.plugin_names
        if self.l2 is not None:
            summary["compression"] = self.codecs.summary()
        summary["alerts"] = self.alerts.describe()
        return summary

    async def fetch_stats(self) -> dict[str, Any]:
        """:meth:`get_stats` with L2's keys counted now (a SCAN of the prefix): None, with
        ``l2_error``, when L2 cannot count them now."""
        counted = await self._count_l2()
        summary = self.get_stats()
        if not counted:
            summary["l2_size_keys"] = summary["l2_size_keys_age_seconds"] = None
        return summary

    async def _count_l2(self) -> bool:
        """Count L2's keys now; False when L2 could not (the last count stays, aging)."""
        if self._l2 is None:
            return True
        try:
            self._l2_count = (await self._l2.count(), self.clock())
        except (TierUnavailableError, CorruptEntryError) as exc:
            # L2 away: the rest of the numbers still answer.
            self._l2_count_error = str(exc)
            return False
        self._l2_count_error = None
        return True

    async def _count_l2_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._count_l2()
