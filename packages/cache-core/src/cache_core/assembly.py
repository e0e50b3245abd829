"""Assembly: config.yaml and the installed plugins made into the objects the agent runs.

:class:`Assembly` builds each plugin (tiers, codecs, strategies, the invalidation index,
loaders, metrics recorders, and tag, event and dependency invalidation when a Links plugin
is installed) from the registry, structures its ``Options`` from its config section, and
wraps L2 and a shared index in the guard (breaker, timeout, observation). Every error is a
:class:`ConfigError` naming the field.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cache_core.breaker import BreakerState, CircuitBreaker
from cache_core.codecs import Codec
from cache_core.config import CORE_SECTIONS, Config
from cache_core.errors import ConfigError, PluginMissingError
from cache_core.extras import CODEC_ID_EXTRAS
from cache_core.frames import CodecSet
from cache_core.freshness import Freshness
from cache_core.invalidation import IndexContext, InvalidationIndex
from cache_core.key_rules import KeyRules
from cache_core.l1_coherence import L1Coherence
from cache_core.links import NOT_INSTALLED, Links, LinksContext
from cache_core.loaders import Loader
from cache_core.loading import LoaderSet
from cache_core.metrics import MetricsRecorder
from cache_core.plugins import Registry
from cache_core.policies import PolicyTable
from cache_core.settings import check_claims
from cache_core.strategies import Strategy, StrategyContext, WriteBuffer, buffers_of
from cache_core.tiers.base import LocalTier, RemoteTier, TierContext
from cache_core.tiers.guarded import GuardedIndex, GuardedTier, compression_by_policy

log = logging.getLogger("cache_core.agent")


DEFAULT_CODEC = "gzip"
"""What ``compression.algorithm`` means when not given, where its plugin is installed."""


class Assembly:
    """Every plugin object one config asks for, built and checked, not started."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        clock: Callable[[], float] = time.monotonic,
        on_breaker_change: Callable[[object], None] = lambda _: None,
    ) -> None:
        self.config = config
        self.registry = registry
        check_claims(config.unclaimed, CORE_SECTIONS, registry.settings)
        for settings_cls in registry.settings:
            config.section(settings_cls)  # a wrong value fails now, naming its field
        self.policies = PolicyTable(config)
        self.codecs = self._build_codecs()
        context = TierContext(config=config, registry=registry, clock=clock)
        self.l1: LocalTier = self._build_tier("l1", context, LocalTier)
        self.l2: RemoteTier | None = (
            self._build_tier("l2", context, RemoteTier) if "l2" in config.cache_tiers else None
        )
        settings = config.circuit_breaker
        self.breaker = CircuitBreaker(
            settings.failure_threshold,
            settings.reset_timeout,
            clock,
            on_change=on_breaker_change,
            probe_after=settings.probe_after,
        )
        self.guarded_l2: GuardedTier | None = (
            GuardedTier(
                self.l2,
                self.breaker,
                settings.operation_timeout,
                self.codecs,
                key_pattern=self.policies.pattern_of,
                compresses=compression_by_policy(self.policies),
            )
            if self.l2 is not None
            else None
        )
        """The L2 the data path calls: guarded by the breaker, timed and traced."""
        self.coherence = L1Coherence(self.l1, lambda: self.breaker.state is BreakerState.OPEN)
        """What other instances' change notices do to L1 (and how many have arrived)."""
        strategy_context = StrategyContext(
            l1=self.l1,
            l2=self.guarded_l2,
            clock=clock,
            changes=lambda: self.coherence.seq,
        )
        self.l1_ttl = strategy_context.l1_ttl
        self.strategies: dict[str, Strategy] = self._build_strategies(strategy_context)
        self.default_strategy = self._strategy_named(
            config.default_strategy, path="strategies.default"
        )
        for name, policy in config.cache_policies.items():
            if policy.strategy is not None:
                self._strategy_named(policy.strategy, path=f"cache_policies.{name}.strategy")
        self.links_cls = self._links_class()
        self.index: InvalidationIndex | None = None
        """None without a Links plugin: nothing is indexed then."""
        self.guarded_index: InvalidationIndex | None = None
        """What the Links plugin calls: the index behind the L2 guard when it is shared (kept
        outside the process, as in Redis)."""
        if self.links_cls is None:
            self._check_unlinked()
        else:
            self.index = self.guarded_index = self._build_index(clock)
            if self.guarded_l2 is not None and self.index.shared:
                self.guarded_index = GuardedIndex(self.index, self.guarded_l2)
        loaders, freshness = self._build_loaders(context)
        self.loading = LoaderSet(loaders, config.loading, clock, freshness)
        self.recorders: list[MetricsRecorder] = []
        names = config.monitoring.recorders
        for index, name in enumerate(registry.names("metrics") if names is None else names):
            recorder_cls = registry.get("metrics", name, path=f"monitoring.recorders[{index}]")
            self.recorders.append(recorder_cls(None, context))

    def _links_class(self) -> type[Any] | None:
        table = self.registry.tables["links"]
        if len(table) > 1:
            raise ConfigError(
                f"invalidation: {', '.join(sorted(table))} each register tag, event and "
                "dependency invalidation; one may load (see CACHING_AGENT_PLUGINS)"
            )
        for links_cls in table.values():
            _check_members(links_cls, Links, "invalidation")
            return links_cls
        return None

    def _check_unlinked(self) -> None:
        """Without a Links plugin, a config that asks for what it does fails at start, as a
        missing codec does: ignored, rules would silently leave dependents stale."""
        # Its settings (event_triggers...) are refused as any uninstalled plugin's are.
        backend = self.config.invalidation.backend
        if backend not in ("auto", "local"):  # those two need no index without one
            self.registry.get("invalidator", backend, path="invalidation.backend")
            raise PluginMissingError(
                f"invalidation.backend: {backend!r} indexes tags, dependencies and events: "
                f"{NOT_INSTALLED}"
            )

    def build_links(
        self,
        purge: Callable[[set[str]], Awaitable[set[str]]],
        drop_local: Callable[[set[str]], Awaitable[set[str]]],
        buffered: Callable[[set[str]], set[str]],
        rules: KeyRules,
    ) -> Links | None:
        """The Links plugin, removing through ``purge`` (None when none is installed)."""
        if self.links_cls is None or self.guarded_index is None:
            return None
        context = LinksContext(
            config=self.config,
            index=self.guarded_index,
            purge=purge,
            drop_local=drop_local,
            buffered=buffered,
            check_key=rules.check_key,
            check_pattern=rules.check_pattern,
            check_caller_pattern=rules.check_caller_pattern,
            check_names=rules.check_names,
        )
        try:
            links: Links = self.links_cls(None, context)
        except ValueError as exc:
            raise ConfigError(f"invalidation: {exc}") from None
        for buffer in buffers_of(self.strategies.values()):
            if hasattr(buffer, "on_landed"):  # optional (see WriteBuffer)
                buffer.on_landed = links.landed
            if hasattr(buffer, "landing_for"):
                buffer.landing_for = links.flush_landing
        return links

    def _build_index(self, clock: Callable[[], float]) -> InvalidationIndex:
        backend = self.config.invalidation.backend
        if backend == "auto":
            # An index L2 can hold when one is installed (every instance sees every tag),
            # asked of each index, not assumed of a name; else this process's own.
            backend = next(
                (
                    name
                    for name, cls in sorted(self.registry.tables["invalidator"].items())
                    if self.l2 is not None and getattr(cls, "lives_in", _never)(self.l2)
                ),
                "local",
            )
        index_cls = self.registry.get("invalidator", backend, path="invalidation.backend")
        _check_members(index_cls, InvalidationIndex, "invalidation.backend")
        try:
            index: InvalidationIndex = index_cls(
                None, IndexContext(config=self.config, clock=clock, l2=self.l2)
            )
        except ValueError as exc:
            raise ConfigError(f"invalidation.backend: {exc}") from None
        if not hasattr(index, "shared"):
            raise ConfigError(
                f"invalidation.backend: {backend!r} lacks shared of InvalidationIndex "
                "(whether every instance on the same L2 sees it)"
            )
        return index

    def _build_loaders(self, context: TierContext) -> tuple[list[Loader], list[Freshness]]:
        """The loaders, and each one's refresh-ahead and stale-if-error (its section's
        fields beside its own options, read here so that every loader has them)."""
        loaders: list[Loader] = []
        freshness: list[Freshness] = []
        for name, raw in self.config.loaders.items():
            path = f"loaders.{name}"
            section = dict(raw or {})
            fresh = Freshness.from_section(section, path, self.config.limits.max_ttl)
            if fresh.active and self.guarded_l2 is None:
                raise ConfigError(
                    f"{path}: refresh_ahead and stale_if_error judge a value by its TTL in "
                    "L2, and this agent has none (cache_tiers.l2)"
                )
            loader_cls = self.registry.get("loader", name, path=path)
            options = self.registry.options(loader_cls, section, path=path)
            try:
                loaders.append(loader_cls(options, context))
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            freshness.append(fresh)
        return loaders, freshness

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
        _check_members(tier_cls, role, f"cache_tiers.{name}.type", type_name)
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
            if compression.algorithm is None:
                # The default compresses where its plugin is installed; without it (an
                # install without the extra) values are stored as they are.
                writer_cls = self.registry.tables["codec"].get(DEFAULT_CODEC)
            else:
                writer_cls = self.registry.get(
                    "codec", compression.algorithm, path="compression.algorithm"
                )
            if writer_cls is not None:
                writer = readers[writer_cls.CODEC_ID]
        return CodecSet(
            writer,
            readers,
            threshold=compression.threshold_bytes,
            max_size=compression.max_decompressed_bytes,
            missing=CODEC_ID_EXTRAS,
        )

    def _build_strategies(self, context: StrategyContext) -> dict[str, Strategy]:
        sections = {k: v for k, v in self.config.strategies.items() if k != "default"}
        for name in sections:
            self.registry.get("strategy", name, path=f"strategies.{name}")
        built: dict[str, Strategy] = {}
        for name, strategy_cls in self.registry.tables["strategy"].items():
            path = f"strategies.{name}"
            _check_members(strategy_cls, Strategy, path)
            # Half a write buffer would be taken for none: its held writes then outlive
            # deletes and go unread. Any member of one makes a strategy owe them all.
            owes_buffer = bool(_BUFFER_NAMES & set(dir(strategy_cls)))
            if owes_buffer:
                _check_members(strategy_cls, WriteBuffer, path)
            options = self.registry.options(strategy_cls, sections.get(name), path=path)
            try:
                built[name] = strategy_cls(options, context)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            if owes_buffer and not hasattr(built[name], "on_flush"):
                raise ConfigError(f"{path}: {name!r} lacks on_flush of WriteBuffer")
        return built

    def _strategy_named(self, name: str, *, path: str) -> Strategy:
        if name not in self.strategies:
            self.registry.get("strategy", name, path=path)  # raises naming the extra
        return self.strategies[name]

    def describe(self) -> dict[str, Any]:
        """What was assembled: plugins, tiers, strategies, codecs, policies (for the CLI)."""
        tables = self.registry.tables
        return {
            "plugins": self.registry.plugin_names,
            "tiers": {
                "l1": f"{self.l1.PLUGIN_NAME} ({self.l1.max_bytes // (1024 * 1024)} MB)",
                "l2": self.l2.PLUGIN_NAME if self.l2 is not None else None,
            },
            "strategies": sorted(self.strategies),
            "default_strategy": self.default_strategy.PLUGIN_NAME,
            "codecs": sorted(tables["codec"]),
            "compression": "off" if self.codecs.writer is None else self.codecs.writer.PLUGIN_NAME,
            "invalidation": (
                self.index.PLUGIN_NAME if self.index is not None else "none (TTL and patterns)"
            ),
            "loaders": [loader.PLUGIN_NAME for loader in self.loading.loaders],
            "policies": {
                p.name: {
                    "match": self.policies.globs[p.name],
                    "ttl": p.ttl,
                    "strategy": p.strategy,
                    "compress": p.compress,
                    "sliding": p.sliding,
                }
                for p in self.policies.policies
            },
        }


def missing_methods(cls: type[Any], protocol: type[Any]) -> list[str]:
    """The methods ``protocol`` (and the protocols it extends) declare that ``cls`` has
    not: its attributes are set by the constructor, so only methods can be checked here."""
    declared = {
        name
        for base in protocol.__mro__
        if getattr(base, "_is_protocol", False) and base is not object
        for name, member in vars(base).items()
        if callable(member) and _is_member(name)
    }
    return sorted(name for name in declared if not callable(getattr(cls, name, None)))


_PROTOCOL_MACHINERY = {"__init__", "__init_subclass__", "__subclasshook__", "__class_getitem__"}


def _is_member(name: str) -> bool:
    """Public methods, and the dunders a protocol declares (``__len__``, ``__contains__``),
    not typing's own."""
    if name.startswith("__") and name.endswith("__"):
        return name not in _PROTOCOL_MACHINERY
    return not name.startswith("_")


def _never(l2: object) -> bool:
    """An index class without ``lives_in`` keeps nothing in L2: ``auto`` never picks it."""
    return False


def warn_if_unshared(index: InvalidationIndex | None, shares_l2: bool) -> None:
    """Instances sharing one L2 with a process-local index miss each other's tags,
    dependencies and subscriptions: said once at start, not found out by a stale read."""
    if shares_l2 and index is not None and not index.shared:
        log.warning(
            "invalidation_index_not_shared",
            extra={
                "index": index.PLUGIN_NAME,
                "detail": "L2 is shared, but tags, dependencies and subscriptions are "
                "kept in this process: other instances will not see them",
            },
        )


def _check_members(cls: type[Any], protocol: type[Any], path: str, name: str = "") -> None:
    """At assembly, naming them: not an AttributeError at the first call."""
    missing = missing_methods(cls, protocol)
    if missing:
        shown = name or getattr(cls, "PLUGIN_NAME", cls.__name__)
        raise ConfigError(
            f"{path}: {shown!r} ({cls.__module__}.{cls.__qualname__}) lacks "
            f"{', '.join(missing)} of {protocol.__name__}"
        )


_BUFFER_NAMES = {*missing_methods(object, WriteBuffer), "buffers"}
"""Every method of :class:`WriteBuffer` (object has none), and the old ``buffers`` flag."""
