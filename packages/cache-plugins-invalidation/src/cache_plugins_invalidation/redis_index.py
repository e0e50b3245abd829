"""Tags, dependencies and event subscriptions kept in Redis, beside the entries they index.

Every instance sharing the Redis sees the same indexes, and they survive restarts. Key
layout (``P`` is ``redis.key_prefix``, ``\\x1f`` a character no cache key may hold, so index
keys never collide with entries and scans of entries skip them):

- ``P\\x1fmeta:KEY``   hash ``{tags, deps}`` of KEY (newline-joined), expiring with KEY
- ``P\\x1ftag:TAG``    sorted set of keys carrying TAG, scored by their expiry (ms)
- ``P\\x1fdeps:KEY``   sorted set of keys depending on KEY, scored by their expiry (ms)
- ``P\\x1fevent:NAME`` set of targets subscribed to event NAME; ``P\\x1fevents`` the names

Bounded: a write trims expired members of the sorted sets it adds to; overwriting or
deleting a key removes it from the sets its old meta named; members whose meta no longer
names the tag (or dependency) are dropped when a query finds them. Only plain commands in
non-transactional pipelines: it works on Redis Cluster, keys in any slot.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from cache_core.invalidation import IndexContext
from cache_plugins_redis.tier import INDEX_MARK, RedisTier

_SEP = "\n"
_INF = "+inf"
_CHUNK = 1000
_SMALL = 16
"""Batches up to this size read old links unconditionally (one round trip, not two)."""


class RedisIndex:
    PLUGIN_NAME: ClassVar[str] = "redis"

    def __init__(self, options: object, context: IndexContext) -> None:
        if not isinstance(context.l2, RedisTier):
            raise ValueError("'redis' needs cache_tiers.l2.type: redis")
        self._tier: RedisTier = context.l2
        base: str = context.l2.prefix + INDEX_MARK
        self._meta: str = base + "meta:"
        self._tag: str = base + "tag:"
        self._deps: str = base + "deps:"
        self._event: str = base + "event:"
        self._events: str = base + "events"
        self._indexed: str = base + "indexed"
        self._sources: str = base + "sources"
        self._reg: str = base + "reg:"
        self._registered: str = base + "registered"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def _client(self) -> Any:
        return self._tier.client

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    @staticmethod
    def _split(raw: Any) -> set[str]:
        if not raw:
            return set()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return set(text.split(_SEP)) if text else set()

    async def _among(self, registry: str, keys: Sequence[str]) -> set[str]:
        """The ``keys`` that ``registry`` holds unexpired (one round trip, chunked)."""
        if not keys:
            return set()
        now = self._now_ms()
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(keys), _CHUNK):
            pipe.zmscore(registry, list(keys[start : start + _CHUNK]))
        scores = [score for reply in await pipe.execute() for score in reply]
        return {
            key
            for key, score in zip(keys, scores, strict=True)
            if score is not None and score > now
        }

    async def record(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> set[str]:
        if not entries:
            return set()
        keys = [key for key, _, _ in entries]
        tags_of = {key: list(tags) for key, _, tags in entries}
        if len(keys) > _SMALL:
            # A batch: read old links only of keys that have any (one extra round trip).
            had_meta = await self._among(self._indexed, keys)
            sources = await self._among(self._sources, keys)
            registered = await self._among(self._registered, keys)
        else:
            had_meta = sources = registered = set(keys)
        now = self._now_ms()
        pipe = self._client.pipeline(transaction=False)
        old = sorted(had_meta)
        for key in old:
            pipe.hmget(self._meta + key, "tags", "deps")
            pipe.execute_command("UNLINK", self._meta + key)
        depended = sorted(sources)
        for key in depended:
            pipe.zrangebyscore(self._deps + key, now, _INF)
        with_registrations = sorted(registered)
        for key in with_registrations:
            pipe.smembers(self._reg + key)
        all_tags = {tag for tags in tags_of.values() for tag in tags}
        for key, ttl, tags in entries:
            if not tags and not dependencies:
                continue
            expires = _INF if ttl is None else now + max(1, round(ttl * 1000))
            meta = self._meta + key
            pipe.hset(meta, mapping={"tags": _SEP.join(tags), "deps": _SEP.join(dependencies)})
            if ttl is not None:
                pipe.pexpire(meta, max(1, round(ttl * 1000)))
            pipe.zadd(self._indexed, {key: expires})
            for tag in tags:
                pipe.zadd(self._tag + tag, {key: expires})
            for dep in dependencies:
                pipe.zadd(self._deps + dep, {key: expires})
                pipe.zadd(self._sources, {dep: expires}, gt=True)
        for tag in sorted(all_tags):
            pipe.zremrangebyscore(self._tag + tag, "-inf", now)
        for dep in dependencies:
            pipe.zremrangebyscore(self._deps + dep, "-inf", now)
        if all_tags or dependencies:
            pipe.zremrangebyscore(self._indexed, "-inf", now)
        if dependencies:
            pipe.zremrangebyscore(self._sources, "-inf", now)
        replies = await pipe.execute()
        stale = _Stale()
        for i, key in enumerate(old):
            old_tags, old_deps = replies[2 * i]
            stale.add(self._tag, key, self._split(old_tags) - set(tags_of[key]))
            stale.add(self._deps, key, self._split(old_deps) - set(dependencies))
            if not tags_of[key] and not dependencies and (old_tags or old_deps):
                stale.add_member(self._indexed, key)
        dependents: set[str] = set()
        for i in range(len(depended)):
            dependents |= {m.decode() for m in replies[2 * len(old) + i]}
        first = 2 * len(old) + len(depended)
        registered_dependents: set[str] = set()
        for i in range(len(with_registrations)):
            registered_dependents |= {m.decode() for m in replies[first + i]}
        await stale.remove(self._client)
        written = set(keys)
        verified = await self._verified_dependents(dependents - written, written)
        return verified | (registered_dependents - written)

    async def _verified_dependents(self, candidates: set[str], sources: set[str]) -> set[str]:
        """The candidates whose meta still names one of ``sources`` as a dependency."""
        if not candidates:
            return set()
        ordered = sorted(candidates)
        pipe = self._client.pipeline(transaction=False)
        for key in ordered:
            pipe.hget(self._meta + key, "deps")
        replies = await pipe.execute()
        return {
            key for key, deps in zip(ordered, replies, strict=True) if self._split(deps) & sources
        }

    async def forget(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` (gone from the cache) from every index they are in. Who depends on
        them is left alone: those edges leave with their dependents (or by expiry), and a
        dependent spared by a write keeps its edge."""
        ordered = sorted(set(keys))
        indexed = sorted(await self._among(self._indexed, ordered))
        if not indexed:
            return
        pipe = self._client.pipeline(transaction=False)
        for key in indexed:
            pipe.hmget(self._meta + key, "tags", "deps")
            pipe.execute_command("UNLINK", self._meta + key)
        replies = await pipe.execute()
        stale = _Stale()
        for i, key in enumerate(indexed):
            old_tags, old_deps = replies[2 * i]
            stale.add(self._tag, key, self._split(old_tags))
            stale.add(self._deps, key, self._split(old_deps))
            stale.add_member(self._indexed, key)
        await stale.remove(self._client)

    async def _members(self, prefix: str, names: Sequence[str]) -> dict[str, set[str]]:
        now = self._now_ms()
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.zrangebyscore(prefix + name, now, _INF)
        replies = await pipe.execute()
        return {
            name: {m.decode() for m in members}
            for name, members in zip(names, replies, strict=True)
        }

    async def _metas(self, keys: Sequence[str], field: str) -> dict[str, set[str]]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._meta + key, field)
        replies = await pipe.execute()
        return {key: self._split(raw) for key, raw in zip(keys, replies, strict=True)}

    async def _verified(self, prefix: str, field: str, names: Sequence[str]) -> dict[str, set[str]]:
        """Members of each named set whose meta still names the set; stale ones removed."""
        members = await self._members(prefix, names)
        candidates = sorted(set().union(*members.values())) if members else []
        if not candidates:
            return members
        metas = await self._metas(candidates, field)
        stale = _Stale()
        verified: dict[str, set[str]] = {}
        for name, keys in members.items():
            good = {key for key in keys if name in metas[key]}
            verified[name] = good
            for key in keys - good:
                stale.add(prefix, key, {name})
        await stale.remove(self._client)
        return verified

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        names = sorted(set(tags))
        if not names:
            return set()
        verified = await self._verified(self._tag, "tags", names)
        return set().union(*verified.values())

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        seen = set(keys)
        frontier = sorted(seen)
        found: set[str] = set()
        while frontier:
            registered = sorted(await self._among(self._registered, frontier))
            frontier = sorted(await self._among(self._sources, frontier))
            fresh: set[str] = set()
            if frontier:
                verified = await self._verified(self._deps, "deps", frontier)
                fresh = set().union(*verified.values())
            if registered:
                pipe = self._client.pipeline(transaction=False)
                for key in registered:
                    pipe.smembers(self._reg + key)
                for members in await pipe.execute():
                    fresh |= {m.decode() for m in members}
            fresh -= seen
            seen |= fresh
            found |= fresh
            frontier = sorted(fresh)
        return found

    async def add_dependency(self, key: str, dependency: str) -> None:
        await self._pipeline(
            lambda p: (
                p.sadd(self._reg + dependency, key),
                p.zadd(self._registered, {dependency: _INF}),
            )
        )

    async def _pipeline(self, build: Any) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        build(pipe)
        return list(await pipe.execute())

    async def subscribe(self, event: str, target: str) -> None:
        await self._pipeline(
            lambda p: (p.sadd(self._event + event, target), p.sadd(self._events, event))
        )

    async def subscriptions(self, event: str) -> list[str]:
        members = await self._client.smembers(self._event + event)
        return sorted(m.decode() for m in members)

    async def events(self) -> list[str]:
        return sorted(m.decode() for m in await self._client.smembers(self._events))

    async def tracked(self, tag: str) -> int:
        """Members of a tag's set, verified or not (to show the index stays bounded)."""
        return int(await self._client.zcard(self._tag + tag))


class _Stale:
    """(set name, key) pairs to remove from sorted sets, sent in one pipeline."""

    def __init__(self) -> None:
        self._pairs: list[tuple[str, str]] = []

    def add(self, prefix: str, key: str, names: Iterable[str]) -> None:
        """Remove ``key`` from the set ``prefix + name`` for each name."""
        self._pairs.extend((prefix + name, key) for name in names if name)

    def add_member(self, zset: str, key: str) -> None:
        self._pairs.append((zset, key))

    async def remove(self, client: Any) -> None:
        if not self._pairs:
            return
        pipe = client.pipeline(transaction=False)
        for zset, key in self._pairs:
            pipe.zrem(zset, key)
        await pipe.execute()


__all__ = ["RedisIndex"]
