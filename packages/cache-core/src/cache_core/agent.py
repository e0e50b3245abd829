"""The orchestrator: the composition root of the agent's jobs, and their facade.

Lookup: L1 -> write-back buffer -> L2 (promoted to L1 with its remaining TTL, capped by
L1's) -> loader (single-flight per key) -> miss. :class:`CachingAgent` assembles the
plugins once (:mod:`cache_core.assembly`) and hands each job what it needs: key rules
(:mod:`~cache_core.key_rules`), L1's coherence (:mod:`~cache_core.l1_coherence`), reads
(:mod:`~cache_core.reads`), writes (:mod:`~cache_core.writes`), removal and invalidation
(:mod:`~cache_core.invalidator`; tags, dependencies and events through the Links plugin,
:mod:`~cache_core.links`), warm-up (:mod:`~cache_core.warmup`) and statistics
(:mod:`~cache_core.stats_report`). After that every call goes straight to the objects they built.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Self

import pluggy

from cache_core import decorators, serialization
from cache_core.alerts import AlertMonitor
from cache_core.assembly import Assembly, warn_if_unshared
from cache_core.config import Config, load_config, name_env_source
from cache_core.errors import CacheError, ConfigError
from cache_core.etags import etag_of
from cache_core.health import health_document
from cache_core.invalidator import Invalidator
from cache_core.key_rules import KeyRules
from cache_core.l1_coherence import SWEEP_CHUNK
from cache_core.lifecycle import Step, open_in_order
from cache_core.links import Registrations, Unregistered
from cache_core.locks import Lock, Locks
from cache_core.metrics import NullObserver, OperationObserver
from cache_core.plugins import Registry, make_plugin_manager
from cache_core.reads import Found, Reads
from cache_core.sliding import SlidingView, Toucher
from cache_core.stats import Stats
from cache_core.stats_report import StatsReport
from cache_core.strategies import CacheStrategy, buffers_of
from cache_core.tiers.base import LocalTier, TouchMany
from cache_core.tiers.memory import BypassTier
from cache_core.warmup import WarmUp, WarmUpReport
from cache_core.writes import Writes

__all__ = ["SWEEP_CHUNK", "CachingAgent", "Found", "WarmUpReport"]

log = logging.getLogger("cache_core.agent")

_decode = serialization.decode


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
        built = Assembly(config, registry, clock, on_breaker_change=self._breaker_changed)
        self.assembly = built
        self.policies, self.codecs = built.policies, built.codecs
        self.l1, self.l2, self.breaker = built.l1, built.l2, built.breaker
        self.guarded_l2 = built.guarded_l2  # as the data path calls it (None: L1 alone)
        self.strategies, self.default_strategy = built.strategies, built.default_strategy
        self.index, self.guarded_index = built.index, built.guarded_index
        self.loading, self.recorders = built.loading, built.recorders
        self.observer: OperationObserver = NullObserver()
        self.rules = KeyRules(config.limits)

        self.coherence = built.coherence
        # Through the guard: it also reports this instance's writes L2 refused as older.
        self.shares_l2 = self.guarded_l2 is not None and self.guarded_l2.attach(self.coherence)
        """True when L2 reports other instances' changes: several instances (or ``serve
        --workers``) on that L2 keep their L1 copies coherent."""
        if self.shares_l2:
            self.coherence.shared()
        self._l1: LocalTier = self.coherence.view
        self._l1_tagged: Callable[[str], tuple[bytes, str, float | None] | None] | None = getattr(
            self._l1, "tagged", None
        )
        self.coherence.on_view_change = self._serve_from

        buffering = self.buffers = buffers_of(self.strategies.values())
        contesting = [buffer.contest for buffer in buffering if hasattr(buffer, "contest")]

        def contest(keys: Sequence[str] | None = None) -> None:
            for of_buffer in contesting:
                of_buffer(keys)

        if contesting:
            self.coherence.on_keys_changed = contest
            self.coherence.on_restored = contest
        self._invalidator = Invalidator(
            l1=self.l1,
            buffering=buffering,
            l2=self.guarded_l2,
            loading=self.loading,
            stats=self.stats,
            rules=self.rules,
        )
        self.links = self._invalidator.links = built.build_links(
            self._invalidator.purge,
            self._invalidator.drop_local,
            self._invalidator.buffered,
            self.rules,
        )
        self.invalidation_manager: Registrations = (
            Unregistered() if self.links is None else self.links.registrations
        )
        backing = self.l2 if self.l2 is not None else self.l1
        self._writes = Writes(
            l1=self.l1,
            has_l2=self.l2 is not None,
            default_ttl=backing.default_ttl,
            policies=self.policies,
            strategies=self.strategies,
            default_strategy=self.default_strategy,
            buffers=buffering,
            links=self.links,
            loading=self.loading,
            stats=self.stats,
            rules=self.rules,
        )
        self._reads = Reads(
            l1=self.l1,
            coherence=self.coherence,
            l1_ttl=built.l1_ttl,
            buffering=buffering,
            l2=self.guarded_l2,
            loading=self.loading,
            stats=self.stats,
            rules=self.rules,
            write=self._writes.write,
            resolve=self._writes.resolve,
            strategies=self.strategies,
            lock_lease=config.loading.lock_lease,
        )
        self._warm_up = WarmUp(self._reads, self.rules, config.loading.warm_concurrency)
        self._locks = Locks(self.guarded_l2, self.rules)
        self._l1_ttl = built.l1_ttl
        self._toucher: Toucher | None = None
        if self.policies.sliding and self.guarded_l2 is not None:
            if not isinstance(self.guarded_l2.inner, TouchMany):
                raise ConfigError(
                    "cache_policies: sliding needs an L2 tier that can extend an entry's TTL "
                    f"(cache_core.tiers.base.TouchMany); {type(self.guarded_l2.inner).__name__} "
                    "cannot"
                )
            self._toucher = Toucher(self.guarded_l2)
        self._serve_from(self.coherence.view)  # the reads' view, wrapped if sliding
        self.alerts = AlertMonitor(config.monitoring, self.stats, clock)
        self._report = StatsReport(
            stats=self.stats,
            l1=self.l1,
            l2=self.guarded_l2,
            buffering=buffering,
            codecs=self.codecs,
            alerts=self.alerts,
            plugin_names=registry.plugin_names,
            monitoring=config.monitoring,
            count_timeout=config.circuit_breaker.operation_timeout,
            clock=clock,
        )
        self._started = False

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

    def describe(self) -> dict[str, Any]:  # what was assembled (for the CLI)
        return self.assembly.describe()

    def _breaker_changed(self, _: object) -> None:
        self.coherence.refresh()  # an open breaker lets L1 answer

    def _serve_from(self, view: LocalTier) -> None:
        if self.policies.sliding and not isinstance(view, BypassTier):
            view = SlidingView(view, self.policies, self._l1_ttl, self._toucher)  # type: ignore[assignment]
        self._l1 = self._reads.view = view
        self._l1_tagged = getattr(view, "tagged", None)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        if self.l2 is None:
            log.warning("l1_only", extra={"detail": "no L2 tier configured: L1 alone serves"})
        warn_if_unshared(self.index, self.shares_l2)
        await open_in_order(self._parts(), undo_first=self.coherence.close)
        self._started = True
        if self.config.loading.warm_on_start:
            report = await self.warm_up_report(self.config.loading.warm_on_start)
            log.info(
                "warm_on_start",
                extra={"warmed": report.warmed, "failed": len(report.failures)},
            )
        self.plugin_manager.hook.cache_agent_started(agent=self)

    def _parts(self) -> list[tuple[Step, Step]]:
        """What start opens, in order, each with how it closes."""
        timeout = self.config.circuit_breaker.operation_timeout
        parts: list[tuple[Step, Step]] = [(self.l2.start, self.l2.close)] if self.l2 else []
        if self.index is not None:
            parts.append((self.index.start, self.index.close))
        if (links := self.links) is not None:
            parts.append((links.start, lambda: links.close(timeout)))
        parts += [(strategy.start, strategy.close) for strategy in self.strategies.values()]
        parts.append((self.loading.start, self.loading.close))
        parts += [(partial(r.start, self), r.close) for r in self.recorders]
        return [*parts, (self._report.start, self._report.close)]

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self.plugin_manager.hook.cache_agent_stopping(agent=self)
        await self._report.close()
        await self._reads.close()
        if self._toucher is not None:
            await self._toucher.close()
        await self.coherence.close()
        try:
            for strategy in self.strategies.values():
                await strategy.close()  # write-back flushes here
        finally:
            await self.loading.close()
            for recorder in self.recorders:
                await recorder.close()
            if self.links is not None:
                await self.links.close(self.config.circuit_breaker.operation_timeout)
            if self.index is not None:
                await self.index.close()
            if self.l2 is not None:
                await self.l2.close()

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

    def health(self) -> dict[str, Any]:
        """``{"status": "ok" | "degraded", "reasons", "warnings"?, "tiers"}``: see
        :mod:`cache_core.health`."""
        return health_document(self.breaker, coherent=self.coherence.coherent, l2=self.guarded_l2)

    def observe(self, observer: OperationObserver) -> None:
        """Report L2 calls, loader calls and write-back flushes to ``observer`` from now on
        (metrics plugins call this from their ``start``)."""
        self.observer = observer
        if self.guarded_l2 is not None:
            self.guarded_l2.observer = observer
        self.loading.observer = observer
        for buffer in self.buffers:
            buffer.on_flush = observer.flush

    # -- reads (an L1 hit is answered here: it is the hot path, a call costs a tenth of it)

    def lookup_l1(self, key: str) -> bytes | None:
        """:meth:`lookup` of an L1 hit without a coroutine: the JSON bytes, counted as
        that lookup would, or None, counting nothing (then :meth:`lookup` looks and counts).
        An HTTP GET tries this first: on an L1 hit the await costs as much as the lookup."""
        data = self._l1.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1  # counted, not timed (see Stats.l1_hit_calls)
        return data

    def lookup_l1_tagged(self, key: str) -> tuple[bytes, str, float | None] | None:
        """:meth:`lookup_l1` with the entry's entity tag (cache_core.etags, kept with the
        entry once computed) and its seconds left in L1 (None: no expiry)."""
        tagged = self._l1_tagged
        found: tuple[bytes, str, float | None] | None
        if tagged is None:  # an L1 plugin without tags: its bytes digested each time
            data = self._l1.get(key)
            found = None if data is None else (data, etag_of(data), None)
        else:
            found = tagged(key)
        if found is not None:
            self.stats.l1_hit_calls += 1
        return found

    def entity_of(self, key: str, data: bytes) -> tuple[str, float | None]:
        """The entity tag of ``data``, a value of ``key`` a lookup below L1 answered, and
        its seconds left in L1 if L1 took it (None: not known here, or no expiry)."""
        ttl_remaining = getattr(self._l1, "ttl_remaining", None)
        left = None
        if ttl_remaining is not None:
            with contextlib.suppress(KeyError):
                left = ttl_remaining(key)
        return etag_of(data), left

    async def lookup_fresh(self, key: str) -> Found | None:
        """:meth:`lookup` past L1 (HTTP ``Cache-Control: no-cache``): the key's loader
        computes it again when one serves it; else L2 answers (and L1 takes what it read).
        With neither, L1 is all there is and answers."""
        return await self._reads.lookup_fresh(key)

    async def lookup(self, key: str) -> Found | None:
        """The JSON bytes of ``key`` and the tier that had them, or None on a miss."""
        data = self._l1.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1
            return data, "l1"
        return await self._reads.lookup_below_l1(key)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` on a miss."""
        data = self._l1.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1
            return _decode(data)
        found = await self._reads.lookup_below_l1(key)
        return default if found is None else _decode(found[0])

    async def lookup_many(
        self, keys: Sequence[str], failures: dict[str, CacheError] | None = None
    ) -> dict[str, Found | None]:
        """Each key's bytes and tier (None for a miss), L2 asked once for all L1 misses; a
        key whose stored entry is unreadable is None, its error put in ``failures``."""
        return await self._reads.lookup_many(keys, failures)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Each key's value (None for a miss)."""
        return await self._reads.get_many(keys)

    async def get_or_compute(
        self,
        key: str,
        fn: Callable[[], Any],
        *,
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
        unless: Callable[[Any], bool] | None = None,
    ) -> Any:
        """The cached value of ``key``; on a miss, ``fn()`` (sync or async) computed once for
        all concurrent callers, stored (unless ``unless(value)`` is true: ``lambda v: v is
        None`` keeps a "nothing found" from being cached), and returned."""
        return await self._reads.get_or_compute(
            key,
            fn,
            ttl=ttl,
            strategy=strategy,
            tags=tags,
            dependencies=dependencies,
            unless=unless,
        )

    def cached(
        self,
        key: str,
        *,
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
        unless: Callable[[Any], bool] | None = None,
    ) -> decorators.Decorator:
        """Decorate an async function so its result is cached under ``key``, a template of
        its parameters (``"user:{user_id}:recs"``; ``tags`` and ``dependencies`` are
        templates too), computed on a miss once for all concurrent callers; a result for
        which ``unless(result)`` is true is returned but not stored. The templates are
        checked against the function's signature when it is decorated."""
        return decorators.cached(
            self,
            key,
            ttl=ttl,
            strategy=strategy,
            tags=tags,
            dependencies=dependencies,
            unless=unless,
        )

    def invalidates(
        self,
        key: str | Sequence[str] = (),
        *,
        tags: Sequence[str] = (),
        pattern: str | None = None,
    ) -> decorators.Decorator:
        """Decorate an async function that changes data: once it returns, the keys it
        names (templates of its parameters, as for :meth:`cached`) are deleted and the
        ``tags`` and ``pattern`` invalidated. A call that raises removes nothing."""
        return decorators.invalidates(self, key, tags=tags, pattern=pattern)

    def lock(self, name: str, *, lease: float = 10.0, timeout: float = 10.0) -> Lock:
        """A lock across every instance sharing L2: ``async with agent.lock("name",
        lease=5) as lock:`` waits up to ``timeout`` seconds for it (else
        :class:`LockTimeoutError`), holds it for at most ``lease`` seconds (a dead holder
        frees it then; ``await lock.extend()`` renews it), and gives ``lock.token``, a
        fencing token larger than any earlier holder's. Leaving the block releases it;
        :class:`LockLostError` if the lease had run out meanwhile."""
        return self._locks.lock(name, lease, timeout)

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
        policy's, else the backing tier's default. Overwriting invalidates dependents."""
        return await self._writes.set(key, value, ttl, strategy, tags, dependencies)

    async def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | str | None = None,
        strategy: str | CacheStrategy | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Store every item (all validated before anything is written); returns the count."""
        return await self._writes.set_many(items, ttl, strategy, tags)

    # -- deletes and invalidation ---------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (and, transitively, its dependents); True if ``key`` was cached."""
        return await self._invalidator.delete(key)

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a Redis glob (``user:*:profile``); returns how many."""
        return await self._invalidator.invalidate_pattern(pattern)

    async def invalidate_by_tags(self, tags: Sequence[str]) -> int:
        """Remove every key carrying ANY of ``tags``; returns how many."""
        return await self._invalidator.invalidate_by_tags(tags)

    async def invalidate_by_event(
        self, event: str, context: Mapping[str, Any] | None = None
    ) -> int:
        """Remove what ``event`` reaches (config targets and subscriptions, placeholders
        filled from ``context``; a field it lacks matches any segment); returns how many."""
        return await self._invalidator.invalidate_by_event(event, context)

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
        return await self._invalidator.invalidate(
            pattern=pattern, tags=tags, event=event, context=context, scope=scope
        )

    # -- warm-up and stats ----------------------------------------------------------------

    async def warm_up(self, keys: Sequence[str], compute_strategy: str = "parallel") -> int:
        """Bring ``keys`` into the cache: promoted from L2 or computed by a loader. Returns
        how many are cached after the call (see :meth:`warm_up_report` for failures)."""
        return (await self._warm_up.report(keys, compute_strategy)).warmed

    async def warm_up_report(
        self, keys: Sequence[str], compute_strategy: str = "parallel"
    ) -> WarmUpReport:
        """Warm ``keys`` (``parallel``: ``loading.warm_concurrency`` loader calls at once, or
        ``sequential``); each key that could not be warmed is in ``failures`` with why.
        Lookups made here do not count as hits or misses."""
        return await self._warm_up.report(keys, compute_strategy)

    def write_back_pending(self) -> int:  # writes held for L2, not flushed yet
        return self._report.write_back_pending()

    def get_stats(self) -> dict[str, Any]:
        """The description's statistics plus per-tier hits, L1 entries and write-back state,
        from what the agent knows now: ``l2_size_keys`` is L2's key count as of its last
        periodic count (``l2_size_keys_age_seconds`` ago). :meth:`fetch_stats` counts now."""
        return self._report.get()

    async def fetch_stats(self) -> dict[str, Any]:
        """:meth:`get_stats` with L2's keys counted now: None, with ``l2_error``, when L2
        cannot count them now."""
        return await self._report.fetch()
