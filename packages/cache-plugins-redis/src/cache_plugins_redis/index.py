"""Tags, dependencies and event subscriptions kept in Redis, beside the entries they index.

Every instance sharing the Redis sees the same indexes, and they survive restarts. Key
layout (``P`` is ``redis.key_prefix``, ``\\x1f`` a character no cache key may hold, so index
keys never collide with entries and scans of entries skip them):

- ``P\\x1flinks:KEY``  KEY's meta: its links ``t:TAG`` and ``d:DEP``, scored by its expiry (ms)
- ``P\\x1ftag:TAG``    keys carrying TAG, scored by their expiry
- ``P\\x1fdeps:KEY``   keys depending on KEY, scored by their expiry
- ``P\\x1findexed``    keys with any link; ``P\\x1fsources`` keys others depend on (scored alike)
- ``P\\x1freg:KEY`` (``P\\x1fregistered``), ``P\\x1fevent:NAME`` (``P\\x1fevents``): what
  ``register_dependency`` and event subscriptions added at runtime

The first four lines are sorted sets. A write is indexed in two phases:
:meth:`RedisIndex.record`, before the write, adds the new links and keeps the old ones (and
the longer of the two expiries), so should the write fail, the old value is still reached
through its old links; :meth:`RedisIndex.settle`, once the write landed, drops what only the
old value needed. It sends nothing when nothing changed (a new key, the same links, an
expiry that only grew), as decided from what ``record`` read.

Bounded: each of those sorted sets is changed only by one single-key script, which trims its
expired members and leaves the set expiring with its longest-lived member: no index key
outlives what it indexes, and one lives without an expiry only while it indexes a key that
never expires. Deleting a key removes it from the sets its meta names; members whose meta
no longer names the set are dropped when a query finds them. Runtime registrations are
configuration, not cache state: they persist. Only single-key scripts and plain commands in
non-transactional pipelines: it works on Redis Cluster, keys in any slot. Every round trip
waits at most ``circuit_breaker.operation_timeout``.

Except where the server may evict keys that carry a TTL (a ``volatile-*`` policy: the
embedded engine's, or a server's of your own, or one whose CONFIG is refused, so unknown; see
cache_plugins_redis.memory_policy): an index key with an expiry could be evicted before the
entries it reaches, which invalidating their tag would then miss. There no index key carries
a TTL, and ``indexed`` keeps the keys that expired (writes do not trim it) until
:meth:`RedisIndex.sweep`, every :data:`SWEEP_INTERVAL` on one instance at a time, trims their
links and the sets those name: the index of an expired entry outlives it by at most the
grace and an interval, and the index of an evicted one lives out the entry's TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from attrs import define
from redis.exceptions import NoScriptError

from cache_core.invalidation import IndexContext
from cache_plugins_redis.index_rounds import (
    DROP_EXPIRED,
    DROP_EXPIRED_SHA,
    DROP_VERSIONS,
    DROP_VERSIONS_SHA,
    INF,
    Round,
    Updates,
    score_of,
)
from cache_plugins_redis.memory_policy import L2FullError
from cache_plugins_redis.scripts import DEP_LINK, TAG_LINK, LinkWatch
from cache_plugins_redis.tier import INDEX_MARK, RedisTier

log = logging.getLogger("cache_plugins_redis.index")

_CHUNK = 1000
_SMALL = 16
"""Batches up to this size read old links unconditionally (one round trip, not two)."""
_TAG = TAG_LINK
_DEP = DEP_LINK
_UNSETTLED = 10_000
"""Writes between record and settle remembered at most; forgetting one only leaves its
old links in place (a superset, which invalidates too much, never too little)."""
SWEEP_INTERVAL = 30.0
"""Seconds between sweeps of the index of expired entries (:meth:`RedisIndex.sweep`)."""
SWEEP_GRACE_MS = 60_000
"""A sweep takes an entry as expired this long after its expiry by the sweeper's clock, so an
instance whose clock runs ahead never drops the index of an entry others still hold live."""
SWEEP_BATCH = 500
"""Expired keys a sweep round takes (three round trips); a sweep goes on while rounds are full."""
SWEEP_MAX_ROUNDS = 200
"""Rounds one sweep does at most (100,000 keys); the next sweep goes on from there."""
SWEEP_LEASE = 60.0
"""Seconds the sweep lock is held at most: one instance sweeps, a dead one blocks no longer."""
SWEEP_LOCK = "index-sweep"


def _expiry(now: int, ttl: float | None) -> float:
    return math.inf if ttl is None else now + max(1, round(ttl * 1000))


def _links(tags: Iterable[str], dependencies: Iterable[str]) -> frozenset[str]:
    return frozenset([*(_TAG + t for t in tags if t), *(_DEP + d for d in dependencies if d)])


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@define(frozen=True)
class _Change:
    """What :meth:`RedisIndex.settle` has left to do for one key after its record."""

    links: frozenset[str]
    expires: float
    drop: frozenset[str]
    rescore: bool
    """The expiry shrank: the links still carry the old, longer one."""


class RedisIndex:
    PLUGIN_NAME: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    @classmethod
    def lives_in(cls, l2: object) -> bool:
        """Whether this index can keep its sets in ``l2`` (``invalidation.backend: auto``)."""
        return isinstance(l2, RedisTier)

    def __init__(self, options: object, context: IndexContext) -> None:
        if not isinstance(context.l2, RedisTier):
            raise ValueError("'redis' needs cache_tiers.l2.type: redis")
        self._tier: RedisTier = context.l2
        base: str = context.l2.prefix + INDEX_MARK
        self._meta: str = base + "links:"
        self._tag: str = base + "tag:"
        self._deps: str = base + "deps:"
        self._event: str = base + "event:"
        self._events: str = base + "events"
        self._indexed: str = base + "indexed"
        self._sources: str = base + "sources"
        self._reg: str = base + "reg:"
        self._registered: str = base + "registered"
        self._unsettled: dict[str, _Change] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._reaping: set[asyncio.Task[int]] = set()
        self._floors: dict[str, int] = {}
        """The floor of each tag's last retirement here, until it is reaped."""
        self.in_step: bool = not context.l2.cluster
        self.tag_versions: bool = self.in_step
        """Whether writes record tag versions in their frames, so :meth:`retire_tags`
        invalidates a tag in one step (cache_plugins_redis.tag_versions)."""
        """Whether a write or delete made under a Landing keeps this index in its own script
        (outside Cluster), so the index needs no round trip of its own for it."""
        # Writes and deletes then say, from their own script, which keys need this index.
        self._tier.watch_links(LinkWatch(base, lambda: self._tier.memory.volatile_eviction))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep_every(), name="index-sweep")

    async def close(self) -> None:
        for task in list(self._reaping):
            task.cancel()  # what it leaves is stale already, and expires
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()  # a lock it held ends with its lease
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    def _round(self) -> Round:
        """A round whose index sets carry no TTL while the server may evict those with one
        (they would go before the entries they reach); ``indexed`` then keeps expired keys
        for the sweep, which is all that removes their links."""
        persist = self._tier.memory.volatile_eviction
        return Round(persist, self._indexed if persist else None)

    @property
    def _client(self) -> Any:
        return self._tier.client

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    async def _send(self, round_: Round) -> list[Any]:
        """One round trip (two, the first time after the engine lost the script), each
        bounded like every L2 call. Sent again, a round changes nothing more: every
        command in it is idempotent."""
        for text in (False, True):
            pipe = round_.build(self._client.pipeline(transaction=False), text)
            try:
                return list(await self._tier.step(pipe.execute()))
            except NoScriptError:
                if text:
                    raise
        raise AssertionError("unreachable")

    def _set_of(self, link: str) -> str:
        """The sorted set a meta link stands for (the tag's, or the dependency's)."""
        return (self._tag if link.startswith(_TAG) else self._deps) + link[2:]

    async def _among(self, registries: Sequence[str], keys: Sequence[str]) -> list[set[str]]:
        """For each registry, the ``keys`` it holds unexpired (one round trip, chunked)."""
        if not keys:
            return [set() for _ in registries]
        now = self._now_ms()
        round_ = self._round()
        for registry in registries:
            for start in range(0, len(keys), _CHUNK):
                round_.call("zmscore", registry, list(keys[start : start + _CHUNK]))
        replies = await self._send(round_)
        chunks = len(range(0, len(keys), _CHUNK))
        found = []
        for i in range(len(registries)):
            scores = [score for reply in replies[i * chunks : (i + 1) * chunks] for score in reply]
            found.append(
                {
                    key
                    for key, score in zip(keys, scores, strict=True)
                    if score is not None and score > now
                }
            )
        return found

    async def record(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> set[str]:
        if not entries:
            return set()
        keys = [key for key, _, _ in entries]
        if len(keys) > _SMALL:
            # A batch: read old links only of keys that have any (one extra round trip).
            had_links, sources, registered = await self._among(
                (self._indexed, self._sources, self._registered), keys
            )
        else:
            had_links = sources = registered = set(keys)
        now = self._now_ms()
        deps = sorted({dep for dep in dependencies if dep})
        round_ = self._round()
        links_of: dict[str, frozenset[str]] = {}
        expires_of: dict[str, float] = {}
        updates = Updates(now)
        read: list[str] = []
        for key, ttl, tags in entries:
            links = links_of[key] = _links(tags, deps)
            expires = expires_of[key] = _expiry(now, ttl)
            if links:
                pairs = [part for link in sorted(links) for part in (score_of(expires), link)]
                round_.update(self._meta + key, now, "GT", pairs=pairs, read=True)
                read.append(key)
                updates.add(self._indexed, key, expires)
                for link in links:
                    updates.add(self._set_of(link), key, expires)
                for dep in deps:
                    updates.add(self._sources, dep, expires)
            elif key in had_links:
                round_.call("zrangebyscore", self._meta + key, now, INF, withscores=True)
                read.append(key)
        depended = sorted(sources)
        for key in depended:
            round_.call("zrangebyscore", self._deps + key, now, INF)
        with_registrations = sorted(registered)
        for key in with_registrations:
            round_.call("smembers", self._reg + key)
        updates.queue(round_)
        replies = await self._send(round_)
        for key, old in zip(read, replies[: len(read)], strict=True):
            self._remember(key, links_of[key], expires_of[key], old)
        dependents: set[str] = set()
        for members in replies[len(read) : len(read) + len(depended)]:
            dependents |= {_text(m) for m in members}
        registered_dependents: set[str] = set()
        first = len(read) + len(depended)
        for members in replies[first : first + len(with_registrations)]:
            registered_dependents |= {_text(m) for m in members}
        written = set(keys)
        verified = await self._verified_dependents(dependents - written, written)
        if self.tag_versions:
            # A bump of one of them drops this instance's copy, buffered writes too; none (a
            # rewrite without tags): the old value's may not. Held after the round trips,
            # as the write lands (its caller buffers it with no await in between): a bump
            # noticed meanwhile takes the key off its tags' holders, and would leave the
            # write in L1 past the next bump of the same tags.
            hold = self._tier.tag_versions.hold
            for key, _, tags in entries:
                hold(key, tags)
        return verified | (registered_dependents - written)

    def _remember(self, key: str, links: frozenset[str], expires: float, old: Any) -> None:
        """Keep for :meth:`settle` what the old links (read by record) leave it to do."""
        self._unsettled.pop(key, None)  # an earlier write's record: superseded by this one
        if old and isinstance(old[0], (list, tuple)):  # zrangebyscore's (member, score) pairs
            pairs = [(_text(member), float(score)) for member, score in old]
        else:  # the script's flat member, score, member, score...
            pairs = [(_text(old[i]), float(old[i + 1])) for i in range(0, len(old), 2)]
        if not pairs:
            return
        drop = frozenset(link for link, _ in pairs) - links
        rescore = bool(links) and max(score for _, score in pairs) > expires
        if drop or rescore:
            if len(self._unsettled) >= _UNSETTLED:
                del self._unsettled[next(iter(self._unsettled))]
            self._unsettled[key] = _Change(links, expires, drop, rescore)

    def settle(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> Awaitable[None] | None:
        changes: dict[str, _Change] = {}
        for key, _, tags in entries:
            change = self._unsettled.get(key)
            # Recorded by another write of the key since: that write's settle decides.
            if change is not None and change.links == _links(tags, dependencies):
                changes[key] = self._unsettled.pop(key)
        return self._settle(changes) if changes else None

    async def _settle(self, changes: Mapping[str, _Change]) -> None:
        now = self._now_ms()
        exact = Updates(now, "XX")
        for key, change in changes.items():
            for link in change.drop:
                exact.remove(self._meta + key, link)
                exact.remove(self._set_of(link), key)
            if not change.links:
                exact.remove(self._indexed, key)
            elif change.rescore:
                for link in change.links:
                    exact.add(self._meta + key, link, change.expires)
                    exact.add(self._set_of(link), key, change.expires)
                exact.add(self._indexed, key, change.expires)
        round_ = self._round()
        exact.queue(round_)
        await self._send(round_)

    async def _live_links(self, keys: Sequence[str]) -> dict[str, set[str]]:
        """Each key's unexpired links, as its meta names them."""
        now = self._now_ms()
        round_ = self._round()
        for key in keys:
            round_.call("zrangebyscore", self._meta + key, now, INF)
        replies = await self._send(round_)
        return {
            key: {_text(link) for link in links} for key, links in zip(keys, replies, strict=True)
        }

    async def _verified_dependents(self, candidates: set[str], sources: set[str]) -> set[str]:
        """The candidates whose meta still names one of ``sources`` as a dependency."""
        if not candidates:
            return set()
        wanted = {_DEP + source for source in sources}
        links = await self._live_links(sorted(candidates))
        return {key for key, named in links.items() if named & wanted}

    async def forget(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` (gone from the cache) from every index they are in. Who depends on
        them is left alone: those edges leave with their dependents (or by expiry), and a
        dependent spared by a write keeps its edge."""
        ordered = sorted(set(keys))
        (indexed,) = await self._among((self._indexed,), ordered)
        if not indexed:
            return
        chosen = sorted(indexed)
        round_ = self._round()
        for key in chosen:
            round_.call("zrange", self._meta + key, 0, -1)
            round_.call("execute_command", "UNLINK", self._meta + key)
        replies = await self._send(round_)
        stale = Updates(self._now_ms())
        for i, key in enumerate(chosen):
            for link in replies[2 * i]:
                stale.remove(self._set_of(_text(link)), key)
            stale.remove(self._indexed, key)
        await self._apply(stale)

    async def _apply(self, updates: Updates) -> None:
        if updates:
            round_ = self._round()
            updates.queue(round_)
            await self._send(round_)

    async def _members(self, prefix: str, names: Sequence[str]) -> dict[str, set[str]]:
        now = self._now_ms()
        round_ = self._round()
        for name in names:
            round_.call("zrangebyscore", prefix + name, now, INF)
        replies = await self._send(round_)
        return {
            name: {_text(m) for m in members} for name, members in zip(names, replies, strict=True)
        }

    async def _verified(self, prefix: str, kind: str, names: Sequence[str]) -> dict[str, set[str]]:
        """Members of each named set whose meta still names the set; stale ones removed."""
        members = await self._members(prefix, names)
        candidates = sorted(set().union(*members.values())) if members else []
        if not candidates:
            return members
        links = await self._live_links(candidates)
        stale = Updates(self._now_ms())
        verified: dict[str, set[str]] = {}
        for name, keys in members.items():
            good = {key for key in keys if kind + name in links[key]}
            verified[name] = good
            for key in keys - good:
                stale.remove(prefix + name, key)
        await self._apply(stale)
        return verified

    async def retire_tags(self, tags: Sequence[str]) -> tuple[int, bool, set[str]]:
        """Invalidate ``tags`` by their versions, in one round trip whatever they hold: how
        many live keys their sets list (see :data:`~cache_plugins_redis.scripts.BUMP_TAGS`),
        whether runtime registrations exist (what they reach is not in frames), and the
        keys this instance handed out carrying the tags (for its caller to drop from L1 and
        the write buffers). Their stale entries stay until :meth:`reap_later`, or a walk."""
        count, registered, held, floor = await self._tier.bump_tags(sorted(set(tags)))
        for tag in tags:
            self._floors[tag] = floor
        return count, registered, set(held)

    def untagged(self, keys: Iterable[str]) -> None:
        """``keys`` were written without tags, not through L2 yet (write_back): what this
        instance remembered of their tags is dropped (see
        :meth:`~cache_plugins_redis.tag_versions.TagVersions.release`)."""
        self._tier.tag_versions.release(keys)

    def reap_later(self, tags: Sequence[str]) -> None:
        """Start reaping what ``tags``' retirement left stale (see :meth:`_reap`), unless
        the caller walks them itself."""
        task = asyncio.get_running_loop().create_task(
            self._reap(sorted(set(tags))), name="index-reap"
        )
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _reap(self, tags: Sequence[str]) -> int:
        """After a retirement, in the background: the entries that went stale leave L2
        and the index (memory the engine would otherwise hold until their TTL), a page of
        each tag's set per round trip. How many went; a failure is logged: what is left
        stays stale, and leaves with its TTL."""
        reaped = 0
        try:
            for tag in tags:
                cursor = 0
                while True:
                    cursor, members = await self._tier.step(
                        self._client.zscan(self._tag + tag, cursor, count=SWEEP_BATCH)
                    )
                    keys = sorted({_text(member) for member, _ in members})
                    if keys:
                        persist = self._tier.memory.volatile_eviction
                        floor = self._floors.get(tag, 0)
                        call = self._tier.reap(tag, keys, persist, floor)
                        reaped += len(await self._tier.step(call))
                    if not cursor:
                        break
                await self._drop_versions([tag])
                self._floors.pop(tag, None)
        except Exception as exc:
            log.warning("index_reap_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return reaped

    async def _drop_versions(self, tags: Sequence[str]) -> None:
        """The versions of those of ``tags`` no entry carries any more (their sets are
        gone) go too: one key a tag ever used would otherwise stay for good."""
        if not self.tag_versions or not tags:
            return
        versions = self._tier.prefix + INDEX_MARK + "tv:"
        round_ = self._round()
        pairs = [name for tag in tags for name in (self._tag + tag, versions + tag)]
        round_.script(DROP_VERSIONS, DROP_VERSIONS_SHA, pairs)
        await self._send(round_)

    async def reaped(self) -> None:
        """Wait for the reaping of retired tags under way (tests; shutdown)."""
        while self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        names = sorted(set(tags))
        if not names:
            return set()
        verified = await self._verified(self._tag, _TAG, names)
        return set().union(*verified.values())

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        seen = set(keys)
        frontier = sorted(seen)
        found: set[str] = set()
        while frontier:
            registered_set, sources = await self._among((self._registered, self._sources), frontier)
            registered, frontier = sorted(registered_set), sorted(sources)
            fresh: set[str] = set()
            if frontier:
                verified = await self._verified(self._deps, _DEP, frontier)
                fresh = set().union(*verified.values())
            if registered:
                round_ = self._round()
                for key in registered:
                    round_.call("smembers", self._reg + key)
                for members in await self._send(round_):
                    fresh |= {_text(m) for m in members}
            fresh -= seen
            seen |= fresh
            found |= fresh
            frontier = sorted(fresh)
        return found

    async def add_dependency(self, key: str, dependency: str) -> None:
        round_ = self._round()
        round_.call("sadd", self._reg + dependency, key)
        round_.call("zadd", self._registered, {dependency: INF})
        await self._send(round_)

    async def subscribe(self, event: str, target: str) -> None:
        round_ = self._round()
        round_.call("sadd", self._event + event, target)
        round_.call("sadd", self._events, event)
        await self._send(round_)

    async def register(
        self, dependencies: Sequence[tuple[str, str]], subscriptions: Sequence[tuple[str, str]]
    ) -> None:
        """:meth:`add_dependency` of each (key, dependency) and :meth:`subscribe` of each
        (event, target), in one round trip (the registrations queued while serving land
        together, not one round trip each)."""
        round_ = self._round()
        for key, dependency in dependencies:
            round_.call("sadd", self._reg + dependency, key)
        if dependencies:
            round_.call("zadd", self._registered, dict.fromkeys((d for _, d in dependencies), INF))
        for event, target in subscriptions:
            round_.call("sadd", self._event + event, target)
        if subscriptions:
            round_.call("sadd", self._events, *sorted({event for event, _ in subscriptions}))
        await self._send(round_)

    async def subscriptions(self, event: str) -> list[str]:
        members = await self._tier.step(self._client.smembers(self._event + event))
        return sorted(_text(m) for m in members)

    async def events(self) -> list[str]:
        return sorted(_text(m) for m in await self._tier.step(self._client.smembers(self._events)))

    async def sweep(self, until_ms: int | None = None) -> int:
        """Drop the links of keys that expired before ``until_ms`` (by default now, less
        :data:`SWEEP_GRACE_MS`) and trim the sets they name; how many keys' links went.
        Where index keys expire by themselves this finds little: writes trim ``indexed``."""
        until = self._now_ms() - SWEEP_GRACE_MS if until_ms is None else until_ms
        swept = 0
        for _ in range(SWEEP_MAX_ROUNDS):
            expired = await self._tier.step(
                self._client.zrangebyscore(self._indexed, "-inf", until, start=0, num=SWEEP_BATCH)
            )
            keys = sorted({_text(key) for key in expired})
            if keys:
                round_ = self._round()
                for key in keys:
                    round_.call("zrange", self._meta + key, 0, -1)
                replies = await self._send(round_)
                named = {self._set_of(_text(link)) for links in replies for link in links}
                round_ = self._round()
                # Trimming only drops what expired: a key written again since keeps its links.
                for zset in sorted({self._meta + key for key in keys} | named):
                    round_.update(zset, until, "GT")
                round_.script(DROP_EXPIRED, DROP_EXPIRED_SHA, self._indexed, until, *keys)
                await self._send(round_)
                await self._drop_versions(
                    sorted(z[len(self._tag) :] for z in named if z.startswith(self._tag))
                )
                swept += len(keys)
            if len(expired) < SWEEP_BATCH:
                break
        round_ = self._round()
        round_.update(self._sources, until, "GT")  # writes trim it only when they carry deps
        await self._send(round_)
        return swept

    async def _sweep_every(self) -> None:
        """:meth:`sweep` every :data:`SWEEP_INTERVAL`, on one instance at a time (a lock);
        a failed one is logged and tried again at the next interval."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                try:
                    token = await self._tier.step(self._tier.try_lock(SWEEP_LOCK, SWEEP_LEASE))
                except L2FullError:
                    token = ""  # no room for the lock: sweep anyway, it is what frees memory
                if token is None:
                    continue  # another instance sweeps
                swept = await self.sweep()
                if token:
                    await self._tier.step(self._tier.unlock(SWEEP_LOCK, token))
                if swept:
                    log.debug("index_swept", extra={"keys": swept})
            except Exception as exc:
                log.warning("index_sweep_failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def tracked(self, tag: str) -> int:
        """Members of a tag's set, verified or not (to show the index stays bounded)."""
        return int(await self._tier.step(self._client.zcard(self._tag + tag)))


__all__ = ["RedisIndex"]
