"""Reads: L1 -> write-back buffer -> L2 (promoted to L1) -> loader (single-flight) -> miss.

:class:`Reads` answers lookups from the tiers it is handed. A loaded or computed value is
stored through the ``write`` callable (the writes' path), so its tags, dependencies and
strategy are those of any write.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from cache_core import serialization
from cache_core.errors import CacheError, LoaderError, TierUnavailableError
from cache_core.freshness import Freshness, Phase
from cache_core.key_rules import KeyRules
from cache_core.l1_coherence import L1Coherence
from cache_core.loaders import Loader, NotFound
from cache_core.loading import LoaderSet, with_instance_lock
from cache_core.stats import Stats
from cache_core.strategies import Strategy, Write, WriteBuffer
from cache_core.tiers.base import LocalTier, StoredValue
from cache_core.tiers.guarded import GuardedTier

log = logging.getLogger("cache_core.reads")

_perf = time.perf_counter_ns
_decode = serialization.decode
REFRESH_RETRY = 1.0
"""Seconds after a failed background refresh before a hit starts another."""
_REFRESH_FAILURES_MAX = 10_000

Found = tuple[bytes, str]
"""A hit: the value's JSON bytes and the tier that answered (``l1``, ``l2``, ``loader``)."""

WriteFn = Callable[[Strategy, list[Write], Sequence[str], Sequence[str]], Awaitable[None]]
ResolveFn = Callable[
    [str, "float | str | None", "str | None"], tuple["float | None", Strategy, bool]
]


class Reads:
    """Lookups through the tiers; each handed in, none owned."""

    def __init__(
        self,
        *,
        l1: LocalTier,
        coherence: L1Coherence,
        l1_ttl: Callable[[float | None], float | None],
        buffering: Sequence[WriteBuffer],
        l2: GuardedTier | None,
        loading: LoaderSet,
        stats: Stats,
        rules: KeyRules,
        write: WriteFn,
        resolve: ResolveFn,
        strategies: Mapping[str, Strategy],
        lock_lease: float,
    ) -> None:
        self.l1 = l1
        self.coherence = coherence
        self.view: LocalTier = coherence.view
        """What L1 hits are served from (see :class:`L1Coherence`); kept current by the
        agent."""
        self.l1_ttl = l1_ttl
        self.buffering = list(buffering)
        self._buffer_ids = {id(buffer) for buffer in buffering}
        self.l2 = l2
        self.loading = loading
        self.stats = stats
        self.rules = rules
        self.write = write
        self.resolve = resolve
        self.strategies = strategies
        self.lock_lease = lock_lease
        self.inflight: dict[str, asyncio.Future[Found | None]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        """Background refreshes running (refresh_ahead), by key."""
        self._refresh_failed: dict[str, float] = {}
        """Keys whose last refresh failed, and when (monotonic) another may start."""

    async def close(self) -> None:
        """Stop the background refreshes: what they would store is reloaded on demand."""
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def lookup_below_l1(self, key: str) -> Found | None:
        """A lookup L1 could not answer: timed and counted."""
        start = _perf()
        found = await self.below_l1(key)
        self.count_lookup(found)
        self.stats.latency.observe(_perf() - start)
        return found

    async def lookup_fresh(self, key: str) -> Found | None:
        """A lookup that skips L1 (see CachingAgent.lookup_fresh): timed and counted."""
        self.rules.check_key(key)
        start = _perf()
        chosen = self.loading.find(key) if self.loading else None
        if chosen is not None:
            self.loading.forget_missing([key])  # asked to look again: so it does
            loader, ids = chosen
            found = await self.single_flight(key, lambda: self._load(key, loader, ids, again=True))
        elif self.l2 is not None or any(s.holds_writes() for s in self.buffering):
            found = await self.below_l1(key, load=False)
        else:
            data = self.view.get(key)
            found = None if data is None else (data, "l1")
        self.count_lookup(found)
        self.stats.latency.observe(_perf() - start)
        return found

    def count_lookup(self, found: Found | None) -> None:
        if found is None:
            self.stats.misses += 1
        elif found[1] == "l2":
            self.stats.hits_l2 += 1
        elif found[1] == "l1":
            self.stats.l1_batch_hits += 1  # timed with the lookup, unlike l1_hit_calls
        else:
            self.stats.hits_loader += 1

    def stale_if_error(self, key: str) -> Found | None:
        """With L2 failing, L1's copy of ``key`` even while L1 is bypassed (change notices
        stopped, as they do the moment L2 dies): possibly stale, better than an error.
        L1 is still emptied once notices flow again."""
        data = self.l1.get(key)
        if data is None:
            return None
        self.stats.served_stale += 1
        return data, "l1"

    async def below_l1(self, key: str, *, load: bool = True) -> Found | None:
        self.rules.check_key(key)
        for strategy in self.buffering:
            if not strategy.holds_writes():
                continue
            pending = strategy.pending(key)
            if pending is not None and (wait := contested(strategy, [key])) is not None:
                await wait  # another instance's write may be newer: L2 decides first
                pending = strategy.pending(key)
            if pending is not None:
                self.view.set(key, pending[0], self.l1_ttl(pending[1]))
                return pending[0], "l2"
        if self.l2 is not None:
            seq = self.coherence.seq
            try:
                stored = await self.l2.get(key)
            except TierUnavailableError:
                stale = self.stale_if_error(key)
                if stale is None:
                    raise
                return stale
            if stored is not None:
                if self.loading.judges_freshness and (plan := self._plan(key)) is not None:
                    return await self._judged(key, stored, plan, seq, load)
                # A notice that arrived during the read may concern this very value.
                if seq == self.coherence.seq:
                    self.view.set(key, stored.data, self.l1_ttl(stored.ttl_remaining))
                return stored.data, "l2"
        if load and self.loading:
            chosen = self.loading.find(key)
            if chosen is not None and not self.loading.known_missing(key):
                return await self.single_flight(key, lambda: self._load(key, *chosen))
        return None

    async def _load(
        self, key: str, loader: Loader, ids: dict[str, str], *, again: bool = False
    ) -> Found | None:
        """Call ``loader`` for ``key`` (once across instances sharing L2, by lock) and store
        what it returns, written through so the instances waiting on the lock find it.
        With refresh-ahead or stale-if-error, L2 keeps it past its TTL by the stale window
        and L1 until its refresh point; a value in L2 not fresh by those is reloaded.
        ``again``: loaded though L2 holds a value (asked past the cache: no-cache)."""
        fresh = self.loading.freshness_of(loader)
        seq = self.coherence.seq

        async def load() -> Found | None:
            try:
                value = await self.loading.call(loader, key, ids)
            except NotFound:
                self.loading.remember_missing(key)
                return None
            data = self.rules.encode(value)
            ttl, strategy, compress = self.resolve(key, None, None)
            if id(strategy) in self._buffer_ids:
                # Written through: instances waiting on the load lock look for it in L2.
                strategy = self.strategies.get("write_through", strategy)
            if fresh is None or ttl is None:
                await self.write(strategy, [(key, data, ttl, compress)], (), ())
                return data, "loader"
            before = self.coherence.seq
            await self.write(strategy, [(key, data, fresh.stored_ttl(ttl), compress)], (), ())
            # L1 keeps it until its refresh point, then reads reach L2 and are judged there.
            if before == self.coherence.seq:
                self.view.set(key, data, self.l1_ttl(fresh.fresh_for(ttl)))
            return data, "loader"

        def from_l2(stored: StoredValue) -> Found:
            keep = stored.ttl_remaining
            if fresh is not None and (ttl := self.resolve(key, None, None)[0]) is not None:
                keep = fresh.judge(keep, ttl)[1]
            # A notice since the load began may concern this very value: not promoted.
            if seq == self.coherence.seq:
                self.view.set(key, stored.data, self.l1_ttl(keep))
            return stored.data, "l2"

        def current(stored: StoredValue) -> bool:
            if again:
                return False
            if fresh is None or (ttl := self.resolve(key, None, None)[0]) is None:
                return True
            return fresh.judge(stored.ttl_remaining, ttl)[0] is Phase.FRESH

        if self.l2 is None:
            return await load()
        result: Found | None = await with_instance_lock(
            self.l2, key, self.lock_lease, load, from_l2, current
        )
        return result

    def _plan(self, key: str) -> _Plan | None:
        """How ``key``'s value is judged, when its loader refreshes ahead or serves stale."""
        chosen = self.loading.find(key)
        if chosen is None:
            return None
        fresh = self.loading.freshness_of(chosen[0])
        if fresh is None:
            return None
        ttl = self.resolve(key, None, None)[0]
        return None if ttl is None else _Plan(chosen[0], chosen[1], fresh, ttl)

    async def _judged(
        self, key: str, stored: StoredValue, plan: _Plan, seq: int, load: bool
    ) -> Found | None:
        """An L2 hit of a key whose loader refreshes ahead or serves stale."""
        phase, keep = plan.fresh.judge(stored.ttl_remaining, plan.ttl)
        if phase is Phase.FRESH:
            if seq == self.coherence.seq:
                self.view.set(key, stored.data, self.l1_ttl(keep))
            return stored.data, "l2"
        if phase is Phase.REFRESH:
            self.refresh_later(key, plan)
            return stored.data, "l2"
        if not load:
            return None
        try:
            return await self.single_flight(key, lambda: self._load(key, plan.loader, plan.ids))
        except (LoaderError, TierUnavailableError) as exc:
            # Past its TTL, inside the stale window: the old value rather than the error.
            self.stats.served_stale += 1
            log.warning(
                "served_stale",
                extra={"key_pattern": self.loading.pattern_of(plan.loader, key), "error": str(exc)},
            )
            return stored.data, "l2"

    def refresh_later(self, key: str, plan: _Plan) -> None:
        """Reload ``key`` in the background, once: nobody waits for it."""
        if key in self._refreshing or self.loading.known_missing(key):
            return
        retry = self._refresh_failed.get(key)
        if retry is not None and retry > time.monotonic():
            return
        task = asyncio.get_running_loop().create_task(self._refresh(key, plan))
        self._refreshing[key] = task
        task.add_done_callback(lambda _: self._refreshing.pop(key, None))

    async def _refresh(self, key: str, plan: _Plan) -> None:
        try:
            found = await self.single_flight(key, lambda: self._load(key, plan.loader, plan.ids))
        except CacheError as exc:  # the current value is still answered; retried later
            self._refresh_later_again(key)
            log.warning(
                "refresh_failed",
                extra={"key_pattern": self.loading.pattern_of(plan.loader, key), "error": str(exc)},
            )
            return
        if found is None:
            # The loader has nothing now: the value stays answered until its TTL, and is
            # not reloaded meanwhile (loading.negative_ttl, then REFRESH_RETRY).
            self._refresh_later_again(key)
        else:
            self._refresh_failed.pop(key, None)

    def _refresh_later_again(self, key: str) -> None:
        failed = self._refresh_failed
        failed[key] = time.monotonic() + REFRESH_RETRY
        while len(failed) > _REFRESH_FAILURES_MAX:
            del failed[next(iter(failed))]

    async def single_flight(
        self, key: str, produce: Callable[[], Awaitable[Found | None]]
    ) -> Found | None:
        """``produce()`` once for all concurrent callers of ``key``. If the caller running
        it is cancelled, a waiter that was not takes over rather than failing with it."""
        while True:
            waiting = self.inflight.get(key)
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
        self.inflight[key] = future
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
            del self.inflight[key]

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
        all concurrent callers, stored (unless ``unless(value)`` is true), and returned."""
        data = self.view.get(key)
        if data is not None:
            self.stats.l1_hit_calls += 1  # counted, not timed (see Stats.l1_hit_calls)
            return _decode(data)
        found = await self.lookup_below_l1(key)
        if found is not None:
            return _decode(found[0])

        async def compute() -> Found | None:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            data = self.rules.encode(value)
            if unless is None or not unless(value):
                seconds, chosen, compress = self.resolve(key, ttl, strategy)
                await self.write(chosen, [(key, data, seconds, compress)], tags, dependencies)
            return data, "loader"

        computed = await self.single_flight(key, compute)
        return None if computed is None else serialization.decode(computed[0])

    async def lookup_many(
        self,
        keys: Sequence[str],
        failures: dict[str, CacheError] | None = None,
        values: dict[str, Any] | None = None,
    ) -> dict[str, Found | None]:
        """Each key's bytes and tier (None for a miss), L2 asked once for all L1 misses.

        A key whose entry in L2 is unreadable is None and, with ``failures`` given, its error
        is put there: one bad entry never costs the others their answer. With ``values``
        given, each hit's value goes there too (an L2 entry's JSON is parsed once, to check
        it and to decode it)."""
        self.rules.check_batch(len(keys), "keys")
        self.rules.check_keys(keys)
        start = _perf()
        view = self.view
        # A repeated key is looked up and counted once.
        results: dict[str, Found | None] = dict.fromkeys(keys)
        unique = keys if len(results) == len(keys) else list(results)
        get_many = getattr(view, "get_many", None)  # LocalBatches, optional
        in_l1 = get_many(unique) if get_many is not None else list(map(view.get, unique))
        if in_l1.count(None) == len(in_l1):
            missing = list(unique)
        else:
            missing = []
            for key, data in zip(unique, in_l1, strict=True):
                if data is None:
                    missing.append(key)
                else:
                    results[key] = (data, "l1")
                    if values is not None:
                        values[key] = _decode(data)
        self.stats.l1_batch_hits += len(unique) - len(missing)
        buffering = [s for s in self.buffering if s.holds_writes()]
        if missing and buffering:
            for strategy in buffering:
                if (wait := contested(strategy, missing)) is not None:
                    await wait  # another instance's write may be newer: L2 decides first
            still = []
            for key in missing:
                for strategy in buffering:
                    pending = strategy.pending(key)
                    if pending is not None:
                        view.set(key, pending[0], self.l1_ttl(pending[1]))
                        results[key] = (pending[0], "l2")
                        if values is not None:
                            values[key] = _decode(pending[0])
                        break
                else:
                    still.append(key)
            self.stats.hits_l2 += len(missing) - len(still)  # the buffer stands in for L2
            missing = still
        if missing and self.l2 is not None:
            missing = await self._lookup_l2(missing, results, failures, values)
        if missing and self.loading:
            loadable = [key for key in missing if self.loading.find(key) is not None]
            loaded = await asyncio.gather(*(self.below_l1(key) for key in loadable))
            for key, found in zip(loadable, loaded, strict=True):
                results[key] = found
                self.count_lookup(found)
                if found is not None and values is not None:
                    values[key] = _decode(found[0])
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
        values: dict[str, Any] | None,
    ) -> list[str]:
        """Fill ``results`` (and ``values``) from L2 for ``missing``; return the keys L2
        does not hold."""
        assert self.l2 is not None
        seq = self.coherence.seq
        try:
            opened = await self.l2.open_many(missing, decode=values is not None)
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
                    if values is not None:
                        values[key] = _decode(data)
            if failures is not None:
                failures.update(dict.fromkeys(lost, exc))
            self.stats.l1_batch_hits += len(missing) - len(lost)
            self.stats.served_stale += len(missing) - len(lost)
            self.stats.misses += len(lost)
            return []
        still: list[str] = []
        unreadable = 0
        promoted: list[tuple[str, bytes, float | None]] = []
        promote = promoted.append
        # L1's TTL for each entry is its own, capped (l1_ttl): the cap found once, not
        # asked a key.
        cap = self.l1_ttl(None)
        judging = self.loading.judges_freshness
        for key, entry in zip(missing, opened, strict=True):
            if type(entry) is tuple:
                data, left, value = entry
                if judging and (plan := self._plan(key)) is not None:
                    phase, left = plan.fresh.judge(left, plan.ttl)
                    if phase is Phase.EXPIRED:
                        still.append(key)  # reloaded below, by below_l1, stale if it fails
                        continue
                    if phase is Phase.REFRESH:
                        self.refresh_later(key, plan)
                        results[key] = (data, "l2")
                        if values is not None:
                            values[key] = value
                        continue
                results[key] = (data, "l2")
                if values is not None:
                    values[key] = value
                ttl = cap if left is None or (cap is not None and left > cap) else left
                promote((key, data, ttl))
            elif entry is None:
                still.append(key)
            else:
                unreadable += 1
                if failures is not None:
                    failures[key] = entry  # type: ignore[assignment]
        # A notice that arrived during the read may concern any of these values.
        if promoted and seq == self.coherence.seq:
            view = self.view
            set_many = getattr(view, "set_many", None)  # LocalBatches, optional
            if set_many is not None:
                set_many(promoted)
            else:
                for item in promoted:
                    view.set(*item)
        self.stats.hits_l2 += len(missing) - len(still) - unreadable
        self.stats.misses += unreadable
        return still

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Each key's value (None for a miss)."""
        values: dict[str, Any] = {}
        found = await self.lookup_many(keys, values=values)
        answer = dict.fromkeys(found)
        answer.update(values)
        return answer


def contested(buffer: WriteBuffer, keys: Sequence[str]) -> Awaitable[None] | None:
    """What a read of ``keys`` waits for before ``buffer`` serves its held writes (its
    optional ``contested``; see :class:`~cache_core.strategies.WriteBuffer`), or None."""
    check = getattr(buffer, "contested", None)
    return None if check is None else check(keys)


class _Plan:
    """A key whose loader refreshes ahead or serves stale: the loader, the ids it gets,
    its freshness settings and the key's TTL."""

    __slots__ = ("fresh", "ids", "loader", "ttl")

    def __init__(self, loader: Loader, ids: dict[str, str], fresh: Freshness, ttl: float) -> None:
        self.loader = loader
        self.ids = ids
        self.fresh = fresh
        self.ttl = ttl
