"""The Redis/Valkey L2 tier: standalone, Sentinel or Cluster, shared by many instances
whose L1 copies it keeps coherent.

Every key lives under ``redis.key_prefix``. Values are opaque bytes to the tier: core
frames and compresses them before a write and checks every frame read back
(cache_core.tiers.guarded); the tier stores them with the engine's own TTL (PX) and
returns them as stored. Names found by SCAN stay bytes: another client may have written
one that is not UTF-8. Reads asked for in one event-loop tick go out as one MGET;
pipelines executed in one tick go out as one (autopipeline.py); outside Cluster, commands
are packed for the wire at a third of redis-py's cost (packing.py).
Every write and delete also publishes a notice on ``<prefix>__coherence__`` (in the same
round trip outside Cluster); other instances drop their L1 copies when it arrives, and an
instance whose subscription drops stops serving L1 until it is subscribed again.

Core writes through :meth:`RedisTier.set_unless_newer` (the tier is a
:class:`~cache_core.tiers.base.ConditionalSet`): a script per key compares the stamp in the
stored frame's header with the new frame's and sets only where the stored one is older,
so a late write_back flush never puts an older value over a newer one. The scripts ride in
the write's one pipeline, beside its notice; the script is loaded at start and sent whole
again to an engine that forgot it (NOSCRIPT: a SCRIPT FLUSH, a restart, a failover). Each
script touches one key, so Cluster runs it on that key's node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from attrs import define
from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_core.errors import (
    ConfigError,
    CorruptEntryError,
    InvalidValueError,
    TierUnavailableError,
)
from cache_core.frames import (
    EXPIRY_AT,
    MAGIC,
    TOMBSTONE_CODEC_ID,
    TOMBSTONE_TTL,
    VERSION,
    tombstone,
)
from cache_core.globs import matcher
from cache_core.links import LANDING
from cache_core.progress import advance
from cache_core.tiers.base import CoherenceListener, TierContext
from cache_plugins_redis.autopipeline import CoalescingClient, TickBatcher
from cache_plugins_redis.coherence import SEP, CoherenceSubscriber, notice
from cache_plugins_redis.engine import EMBEDDED, EmbeddedEngine
from cache_plugins_redis.locks import FencedLockScripts
from cache_plugins_redis.memory_policy import DEFAULT_MAX_MEMORY_MB, MemoryPolicy
from cache_plugins_redis.packing import fast_packing
from cache_plugins_redis.scripts import (
    BUMP_TAGS,
    BUMP_TAGS_SHA,
    CASCADE_LIMIT,
    DELETE,
    DELETE_SHA,
    REAP,
    REAP_SHA,
    SCRIPT_BATCH,
    SCRIPT_BATCH_BYTES,
    SCRIPTS,
    SET_UNLESS_NEWER,
    SET_UNLESS_NEWER_SHA,
    UNLINK_LIVE,
    UNLINK_LIVE_SHA,
    LinkWatch,
    link_names,
)
from cache_plugins_redis.settings import RedisSettings
from cache_plugins_redis.tag_versions import (
    VERSION_SIZE,
    TagVersions,
    annotated,
    parse_notice,
    strip,
)
from cache_plugins_redis.tracking import Tracking
from cache_plugins_redis.wire import Endpoint, Wire, open_connection, ssl_context

log = logging.getLogger("cache_plugins_redis.tier")

T = TypeVar("T")

_UNLOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_TOUCH = f"""
if redis.call('type', KEYS[1])['ok'] ~= 'string' then return 0 end
local head = redis.call('getrange', KEYS[1], 0, 2)
if #head < 3 or head:byte(1) ~= {MAGIC} or head:byte(2) ~= {VERSION}
    or head:byte(3) == {TOMBSTONE_CODEC_ID} then return 0 end
redis.call('setrange', KEYS[1], {EXPIRY_AT}, ARGV[1])
redis.call('pexpireat', KEYS[1], ARGV[2])
redis.call('publish', ARGV[3], ARGV[4])
return 1
"""
"""Move an entry's expiry (its frame's and the key's) for a sliding policy; a tombstone
or a frame of an older format is left to expire as it would. Its ``t`` notice comes before
the engine's tracking report of the same change (cache_plugins_redis.tracking): no
instance drops its copy of a value only extended."""
TOMBSTONE_PX = round(TOMBSTONE_TTL * 1000)
MAX_PX = 2**53
"""Milliseconds of TTL the tier sends at most: far beyond any limits.max_ttl, well inside
what the engine accepts (its clock plus the TTL must fit in 63 bits)."""
ANNOUNCE_RETRY = 0.1
ANNOUNCE_RETRY_MAX = 2.0
"""Seconds between tries of a notice that did not get through: from the first, doubling."""
READ_CHUNK = 1000
"""Keys per MGET: bounds how long one read holds the engine."""
SCAN_COUNT = 500
UNLINK_BATCH = 500
INDEX_MARK = "\x1f"
"""Starts the names of keys that are not cache entries (invalidation indexes) right after
the prefix: no cache key can hold it, so they never collide with one, and scans skip them."""


def escape_glob(text: str) -> str:
    """``text`` with every glob metacharacter escaped, to match it literally in SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisTier:
    PLUGIN_NAME: ClassVar[str] = "redis"

    @define(frozen=True)
    class Options:
        ttl: float | None = 3600.0
        """Default TTL in seconds for entries written without one (None: no expiry; that is
        limits.max_ttl unless eviction_policy is noeviction, or no policy could evict it)."""
        eviction_policy: str = "lru"
        """lru, lfu, random, ttl: the embedded engine's volatile-* policy, which evicts entries
        (they carry TTLs) but never the invalidation indexes (they carry none); noeviction:
        writes fail as full. A server of your own keeps its own (read at start, never set)."""
        max_memory_mb: float = DEFAULT_MAX_MEMORY_MB
        """The embedded engine's maxmemory in MiB (at least 4)."""

    def __init__(self, options: RedisTier.Options, context: TierContext) -> None:
        self.memory = MemoryPolicy(options.eviction_policy, options.max_memory_mb)
        self.default_ttl = self.memory.default_ttl(options.ttl, context.config.limits.max_ttl)
        self.health_notes = self.memory.health_notes
        self._settings = context.config.section(RedisSettings)
        self.step_timeout = context.config.circuit_breaker.operation_timeout
        """Seconds one round trip of a many-round-trip operation (a SCAN sweep, an index
        walk) may take: the whole may take longer, no single wait on the engine may."""
        self.prefix = self._settings.key_prefix
        self._prefix_bytes = self.prefix.encode()
        self._index_start = (self.prefix + INDEX_MARK).encode()
        self.channel = f"{self.prefix}__coherence__"
        self.instance_id = uuid.uuid4().hex[:16]
        self._instance_bytes = self.instance_id.encode()
        self._cluster = self._settings.cluster_mode
        self._listener: CoherenceListener | None = None
        self._resets: set[asyncio.Task[None]] = set()
        self.tag_versions = TagVersions()
        """The versions of tags this instance learned, and which keys it handed out
        carrying which (cache_plugins_redis.tag_versions): used outside Cluster."""
        self._watch: LinkWatch | None = None
        """Set by the invalidation index of this Redis (outside Cluster): writes and deletes
        made under a :class:`~cache_core.links.Landing` report which keys it holds anything
        for."""
        self._client: Any = None
        self._wire: Wire | None = None
        """A single server's hot commands (reads, write and delete units): see wire.py."""
        self._subscriber: CoherenceSubscriber | None = None
        self.engine: EmbeddedEngine | None = None
        self._sentinel: Sentinel | None = None
        # Auto-pipelining: reads asked for in one event-loop tick go out as one call.
        self._reads: TickBatcher[str, bytes | None] = TickBatcher(self._read, READ_CHUNK)
        self._announcing: dict[bytes, asyncio.Task[None]] = {}
        """Notices of sweeps that failed part-way, being retried."""
        if self._cluster and not self._settings.nodes:
            raise ValueError("redis.cluster_mode needs redis.nodes")
        if self._settings.url not in (None, EMBEDDED) and not str(self._settings.url).startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(
                "redis.url: expected embedded, redis://, rediss:// or unix://, "
                f"got {self._settings.url!r}"
            )

    # -- connection ---------------------------------------------------------------------

    def _connection_kwargs(self) -> dict[str, Any]:
        s = self._settings
        return {
            "username": s.username,
            "password": s.password,
            "socket_timeout": s.socket_timeout,
            "socket_connect_timeout": s.connect_timeout,
            "health_check_interval": s.health_check_interval,
            "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), s.retry_attempts),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
            "client_name": self._client_name,
        }

    def _ssl_kwargs(self) -> dict[str, Any]:
        s = self._settings
        kwargs: dict[str, Any] = {"ssl_check_hostname": s.ssl_check_hostname}
        if s.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = s.ssl_ca_certs
        if s.ssl_certfile:
            kwargs["ssl_certfile"] = s.ssl_certfile
        if s.ssl_keyfile:
            kwargs["ssl_keyfile"] = s.ssl_keyfile
        return kwargs

    def _ssl_context(self) -> ssl.SSLContext:
        s = self._settings
        return ssl_context(s.ssl_ca_certs, s.ssl_certfile, s.ssl_keyfile, s.ssl_check_hostname)

    def _url(self) -> str:
        s = self._settings
        if self.engine is not None:
            return self.engine.url
        if s.url:
            return s.url
        return f"redis://{s.host}:{s.port}/{s.db}"

    def embedded_engine(self) -> EmbeddedEngine | None:
        """The embedded engine the settings ask for, with this tier's memory bounds, unstarted."""
        return EmbeddedEngine.for_settings(self._settings, self.memory)

    async def start(self) -> None:
        s = self._settings
        self.engine = self.embedded_engine()
        if self.engine is not None:
            await self.engine.start()
        kwargs = self._connection_kwargs()
        if self._cluster:
            self._client = RedisCluster(
                startup_nodes=[ClusterNode(n.host, n.port) for n in s.nodes],
                max_connections=s.max_connections,
                **{k: v for k, v in kwargs.items() if k != "health_check_interval"},
            )
            try:
                await self._client.initialize()
            except Exception as exc:
                await self.close()
                raise TierUnavailableError(
                    f"cannot use L2 at {self.describe()['backend']}: {exc}"
                ) from exc
            first = s.nodes[0]
            pubsub_url = f"redis://{first.host}:{first.port}/0"
        elif s.sentinel is not None:
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [(n.host, n.port) for n in s.sentinel.nodes],
                sentinel_kwargs={
                    "password": s.sentinel.password,
                    "socket_timeout": s.socket_timeout,
                    "socket_connect_timeout": s.connect_timeout,
                },
                **kwargs,
                db=s.db,
            )
            master = sentinel.master_for(s.sentinel.master_name, max_connections=s.max_connections)
            pool = master.connection_pool
            pool.connection_class = fast_packing(pool.connection_class)
            self._client = CoalescingClient(master)
            self._sentinel = sentinel
            pubsub_url = ""
        else:
            url = self._url()
            extra = self._ssl_kwargs() if url.startswith("rediss://") else {}
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=s.max_connections,
                timeout=s.socket_timeout,
                **kwargs,
                **extra,
            )
            pool.connection_class = fast_packing(pool.connection_class)
            self._client = CoalescingClient(aioredis.Redis.from_pool(pool))
            self._wire = Wire(
                self._endpoint(url),
                socket_timeout=s.socket_timeout,
                retry_attempts=s.retry_attempts,
            )
            pubsub_url = url
        try:
            await self._client.ping()
            if self._wire is not None:
                await self._wire.connect()
            # Loaded once (on every primary of a Cluster), so writes send only their SHAs.
            for script in SCRIPTS:
                await self._client.script_load(script)
        except Exception as exc:
            where = self.describe()["backend"]
            await self.close()
            raise TierUnavailableError(f"cannot use L2 at {where}: {exc}") from exc
        where = self.describe()["backend"]
        await self.memory.started(self.engine is not None, self._client, self.step, where)
        await self._start_subscriber(pubsub_url)

    async def _start_subscriber(self, url: str) -> None:
        s = self._settings
        sentinel = self._sentinel

        async def connect() -> Any:
            # Its own connection, never retried: a drop must be seen, since notices sent
            # meanwhile are lost and L1 must be cleared.
            if sentinel is not None and s.sentinel is not None:
                host, port = await sentinel.discover_master(s.sentinel.master_name)
                at = f"[{host}]" if ":" in host else host  # (an IPv6 address)
                where = self._endpoint(f"redis://{at}:{port}/{s.db}")
            else:
                where = self._endpoint(url)
            return await open_connection(where, s.socket_timeout)

        # Not in Cluster: the subscription is on one node, and tracking reports only the
        # changes made on the node it is enabled on.
        tracking = (
            None
            if self._cluster or s.client_tracking == "off"
            else Tracking(self._prefix_bytes, self._index_start, s.client_tracking)
        )
        self._subscriber = CoherenceSubscriber(
            connect,
            self.channel,
            self._instance_bytes,
            health_interval=s.health_check_interval,
            reply_timeout=s.socket_timeout,
            tracking=tracking,
        )
        self._subscriber.listener = self._listener
        self._subscriber.versions = self.tag_versions
        if not self._cluster:
            self._subscriber.on_restored = self._reset_idle_connections
        await self._subscriber.start(wait=s.connect_timeout)

    @property
    def _client_name(self) -> str:
        """The name every connection of this tier gets (``CLIENT LIST`` shows whose it is)."""
        return f"caching-agent-{self.instance_id}"

    def _endpoint(self, url: str) -> Endpoint:
        s = self._settings
        return Endpoint.from_url(
            url,
            username=s.username,
            password=s.password,
            client_name=self._client_name,
            connect_timeout=s.connect_timeout,
            ssl_context=self._ssl_context() if url.startswith("rediss://") else None,
        )

    @property
    def coherent(self) -> bool:
        """Whether other instances' change notices are flowing to this one."""
        return self._subscriber is not None and self._subscriber.coherent

    @property
    def notices_received(self) -> int:
        return self._subscriber.notices_received if self._subscriber is not None else 0

    @property
    def invalidations_received(self) -> int:
        """Tracking's invalidation messages that dropped anything (see tracking.py)."""
        return self._subscriber.invalidations_received if self._subscriber is not None else 0

    @property
    def coherence(self) -> str:
        """What keeps L1 coherent: ``tracking+notices`` (the engine's client-side caching
        beside the project's notices) or ``notices``."""
        return self._subscriber.coherence if self._subscriber is not None else "notices"

    def _notice(self, kind: bytes, body: str) -> bytes:
        return notice(self._instance_bytes, kind, body)

    async def step(self, call: Awaitable[T]) -> T:
        """``call`` (one round trip) bounded by :attr:`step_timeout`; TimeoutError past it."""
        async with asyncio.timeout(self.step_timeout):
            with self.memory.refusals(), _foreign_types():
                return await call

    async def steps(self, items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """``items`` (an async iterator that does a round trip now and then, such as
        ``scan_iter``), each wait for the next item bounded by :attr:`step_timeout`."""
        iterator = aiter(items)
        while True:
            try:
                async with asyncio.timeout(self.step_timeout):
                    item = await anext(iterator)
            except StopAsyncIteration:
                return
            yield item

    def _reset_idle_connections(self) -> None:
        """The subscription came back after a drop: the pool's idle connections most likely
        died with it (a restart, a cut network), and each would fail the next call made on
        it (no retry where ``retry_attempts`` is 0). They are closed, to be opened anew
        when next needed; those in use fail or succeed on their own."""
        if self._wire is not None:
            self._wire.reset_idle()
        pool = self._client.connection_pool if self._client is not None else None
        if pool is None:
            return
        task = asyncio.get_running_loop().create_task(pool.disconnect(inuse_connections=False))
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    @property
    def client(self) -> Any:
        """The connected client (``redis.asyncio.Redis`` or ``RedisCluster``); after start."""
        if self._client is None:
            raise RuntimeError("the Redis tier is not started")
        return self._client

    @property
    def cluster(self) -> bool:
        return self._cluster

    def attach(self, listener: CoherenceListener) -> bool:
        self._listener = listener
        if self._subscriber is not None:
            self._subscriber.listener = listener
        return True

    async def close(self) -> None:
        self._reads.cancel()
        announcing = list(self._announcing.values())
        for task in announcing:
            task.cancel()  # shutting down: the subscribers' own reconnect empties their L1
        if announcing:
            await asyncio.wait(announcing)  # unlike awaiting each, keeps a cancel of close()
        if self._subscriber is not None:
            await self._subscriber.close()
            self._subscriber = None
        if self._wire is not None:
            await self._wire.close()
            self._wire = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self._client = None
        if self._sentinel is not None:
            for watcher in self._sentinel.sentinels:
                with contextlib.suppress(Exception):
                    await watcher.aclose()
            self._sentinel = None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None

    # -- data -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        # Reads of one tick go out as one MGET.
        return await self._reads.submit(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for start in range(0, len(keys), READ_CHUNK):
            out += await self._read(keys[start : start + READ_CHUNK])
        return out

    async def _read(self, asked: Sequence[str]) -> list[bytes | None]:
        """Each key's stored bytes in one MGET (a key asked twice is read once)."""
        keys = list(dict.fromkeys(asked))
        if not keys:
            return []
        names = [self.prefix + key for key in keys]
        if self._cluster:  # keys of one call may live on several nodes
            stored: list[bytes | None] = await self._client.mget_nonatomic(names)
        else:
            if self._wire is not None:
                stored = await self._wire.call("MGET", *names)
            else:
                stored = await self._client.mget(names)
            if any(map(annotated, stored)):
                stored = await self._checked(keys, stored)
            elif self.tag_versions.holds_any:
                self.tag_versions.release(keys)  # none of them carries a tag as stored
        if len(keys) == len(asked):
            return stored
        found = dict(zip(keys, stored, strict=True))
        return [found[key] for key in asked]

    async def _checked(self, keys: Sequence[str], stored: list[bytes | None]) -> list[bytes | None]:
        """``stored`` with each frame that records tag versions checked against the tags'
        current ones (asked of the engine, in one more round trip, for tags this instance
        has not learned): a stale one reads as absent, a current one as the frame core
        wrote, its key remembered as carrying those tags."""
        versions = self.tag_versions
        opened = {}
        asking: set[str] = set()
        for i, frame in enumerate(stored):
            if annotated(frame):
                assert frame is not None
                opened[i] = strip(frame)
                asking |= versions.unknown(opened[i][1])
        if asking:
            tags = sorted(asking)
            base = self.prefix + INDEX_MARK + "tv:"
            found = await self._client.mget([base + tag for tag in tags])
            for tag, version in zip(tags, found, strict=True):
                # What follows the version is the last invalidation's floor.
                versions.learn(tag, None if version is None else version[:VERSION_SIZE])
        out = list(stored)
        evicted: list[str] = []
        self.tag_versions.release(key for i, key in enumerate(keys) if i not in opened)
        for i, (frame, pairs) in opened.items():
            if versions.current(pairs):
                out[i] = frame
                evicted += versions.hold(keys[i], [tag for tag, _ in pairs])
            else:
                out[i] = None
        if evicted and self._listener is not None:
            self._listener.keys_changed(evicted)
        return out

    async def bump_tags(self, tags: Sequence[str]) -> tuple[int, bool, list[str], int]:
        """Give each of ``tags`` a new version and announce it, in one script call: every
        entry recording an older one (every entry carrying the tag, and what depended on
        one when written) is stale from then on. Returns how many live keys the tags'
        index sets list (see :data:`~cache_plugins_redis.scripts.BUMP_TAGS`), whether
        runtime registrations exist, the keys this instance handed out carrying the tags,
        for the caller to drop from L1, and the floor: writes stamped before it are
        refused as older from now on."""
        now = int(time.time() * 1000)
        base = self.prefix + INDEX_MARK
        # Writes stamped before now (by this clock) are refused as older from now on.
        floor = time.time_ns()
        args = [base, self.channel, self._notice(b"v", ""), now, floor.to_bytes(8, "big"), *tags]
        with self.memory.refusals(), _foreign_types():
            reply = await self._keyless(BUMP_TAGS_SHA, BUMP_TAGS, args)
        # Learned as the other instances learn them. What this instance held, the caller
        # drops (L1 and write buffers at once); a read in flight must not promote meanwhile.
        held = self.tag_versions.bumped(parse_notice(reply[2].decode()))
        if self._listener is not None:
            self._listener.keys_changed(())
        return int(reply[0]), bool(reply[1]), held, floor

    async def reap(self, tag: str, keys: Sequence[str], persist: bool, floor: int) -> list[str]:
        """Replace by a tombstone stamped ``floor`` (the retirement's) those of ``keys``
        (listed under a retired ``tag``) that are stale by its version, and drop them from
        the index, announcing them: one script call. The keys reached (announced: an entry
        stored without versions, by an earlier release, is in L1s the bump did not reach)."""
        base = self.prefix + INDEX_MARK
        mark = [self._tombstone(floor), TOMBSTONE_PX]
        head = self._notice(b"k", "")
        args = [self.prefix, tag, base, "1" if persist else "", *mark, self.channel, head, *keys]
        with _foreign_types():
            reply = await self._keyless(REAP_SHA, REAP, args)
        reaped = [key.decode() for key in reply]
        if reaped and self._listener is not None:
            self._listener.keys_changed(reaped)  # this instance's copies: its notice is ignored
        return reaped

    async def _keyless(self, sha: str, text: str, args: Sequence[Any]) -> Any:
        """One call of a script that names no keys (outside Cluster only), in a pipeline:
        auto-pipelined with whatever else this tick sends; its text where the engine lost
        it."""
        for script in (("EVALSHA", sha), ("EVAL", text)):
            pipe = self._client.pipeline(transaction=False)
            pipe.execute_command(*script, 0, *args)
            (reply,) = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, NoScriptError):
                break
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def ttls(self, keys: Sequence[str]) -> list[float | None]:
        """Each key's TTL in seconds (None: none; 0: gone), in one pipeline of PTTLs."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(self.prefix + key)
        return [
            0.0 if pttl == -2 else None if pttl < 0 else pttl / 1000.0
            for pttl in await pipe.execute()
        ]

    @staticmethod
    def _px(ttl: float | None) -> int | None:
        px = None if ttl is None else max(1, round(ttl * 1000))
        if px is not None and px > MAX_PX:
            # The engine would refuse it ("invalid expire time"), which reads as L2 failing:
            # it is the request's error, so it is refused here, before anything is sent.
            raise InvalidValueError(f"ttl of {ttl} s is beyond what L2 can expire")
        return px

    def _set_cmd(self, pipe: Any, key: str, data: bytes, ttl: float | None) -> None:
        pipe.set(self.prefix + key, data, px=self._px(ttl))

    async def _publish(self, pipe: Any, notice: bytes) -> None:
        if not self._cluster:
            pipe.publish(self.channel, notice)
        with self.memory.refusals():
            await pipe.execute()
        if self._cluster:
            await self._client.publish(self.channel, notice)

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        pipe = self._client.pipeline(transaction=False)
        self._set_cmd(pipe, key, data, ttl)
        await self._publish(pipe, self._notice(b"k", key))

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        if not items:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, data, ttl in items:
            self._set_cmd(pipe, key, data, ttl)
        await self._publish(pipe, self._notice(b"k", SEP.join(k for k, _, _ in items)))

    def watch_links(self, watch: LinkWatch) -> None:
        """Called by the invalidation index kept in this Redis: from now on, a write or
        delete made under a :class:`~cache_core.links.Landing` fills it from inside its own
        script. Not in Cluster, where a script's keys must share one slot."""
        if not self._cluster:
            self._watch = watch

    def _watched(
        self, keys: Sequence[str], alone: bool, exact: bool
    ) -> tuple[list[str], list[Any]]:
        """The extra KEYS, and the watch ARGV, of a script call that checks ``keys``' links,
        keeps their index when ``exact`` and removes their old values' dependents (nothing
        extra when nobody asked, no Landing, or nothing can tell). ``alone``: the call is
        the whole unit; a unit of several calls leaves its dependents to the index, which
        spares every key the unit writes (a call's cascade could remove another's key)."""
        watch = self._watch
        if watch is None or LANDING.get() is None:
            return [], ["", 0, 0, "", "", ""]
        limit = CASCADE_LIMIT if alone else 0
        now = int(time.time() * 1000)
        persist = "1" if watch.persist() else ""
        args = [now, len(self.prefix), limit, watch.base, persist, "x" if exact else ""]
        return watch.names(keys), args

    @staticmethod
    def _report(keys: Sequence[str], reply: Sequence[Any], exact: bool) -> None:
        """Fill the Landing from a watching call's reply: (linked entries, dependents
        removed, whether more were left, dependents reached)."""
        found, removed, more, reached = reply
        landing = LANDING.get()
        if landing is not None:
            linked = landing.linked if landing.linked is not None else set()
            linked.update(keys[i - 1] for i in found)
            landing.linked = linked
            landing.removed.update(key.decode() for key in removed)
            landing.reached.update(key.decode() for key in reached)
            landing.indexed = exact
            landing.unfinished = landing.unfinished or bool(more)

    async def set_unless_newer(
        self, items: Sequence[tuple[str, bytes, float | None, int]], horizon: int
    ) -> list[int | None]:
        """``items`` stored where the stored stamp is older, with their notice, in one
        script call (outside Cluster; a call per run of :data:`SCRIPT_BATCH` entries); for
        each, None when stored, else the stamp that stays.

        The notice names every key of the unit, refused ones too: naming only those set
        would take a notice per key from inside the scripts (a batch of N: N messages to
        every instance) or a second round trip, and a notice of a refused key costs the
        other instances no more than a read of the newer value they may hold."""
        if not items:
            return []
        limit = min(horizon, 2**64 - 1).to_bytes(8, "big")
        notice = self._notice(b"k", SEP.join(item[0] for item in items))
        calls: list[_Call] = []
        chunks = self._script_chunks(items)
        landing = LANDING.get()
        links = landing.links if landing is not None else None
        plain = landing.plain if landing is not None else ()
        for chunk in chunks:
            keys = [key for key, *_ in chunk]
            extra, watched = self._watched(keys, len(chunks) == 1, links is not None)
            exact = bool(extra) and links is not None
            # What the old values' dependents get: the write's own stamp, as a delete's.
            mark = [self._tombstone(chunk[0][3]), TOMBSTONE_PX] if extra else ["", ""]
            args: list[Any] = [limit, len(chunk), "", notice, *watched, *mark]
            for key, data, ttl, _ in chunk:
                px = self._px(ttl)
                args += [data, b"" if px is None else px]
                if exact:
                    assert links is not None
                    names = link_names(*links.get(key, ((), ())))
                    args += [len(names), *names]
                elif extra:
                    args.append("1" if key in plain else "")
            names = [self.prefix + key for key in keys] + extra
            calls.append(_Call(keys, names, args, 2, bool(extra), exact))
        with self.memory.refusals(), _foreign_types():
            replies = await self._run(calls, notice, SET_UNLESS_NEWER_SHA, SET_UNLESS_NEWER)
        out: list[int | None] = []
        for call, reply in zip(calls, replies, strict=True):
            n = len(call.keys)
            if call.watching:
                self._report(call.keys, reply[n : n + 4], call.exact)
                self._hold(call.keys, reply[n + 4])
            out += [None if r == 1 else int.from_bytes(r, "big") for r in reply[:n]]
        return out

    def _hold(self, keys: Sequence[str], versioned: Sequence[Sequence[bytes]]) -> None:
        """Remember the tags each entry a write stored with versions carries (its own and
        those its dependencies recorded), so a bump of one drops this instance's copy; an
        entry stored without (a rewrite without tags) carries none any more."""
        evicted: list[str] = []
        tagged = {key.decode(): [tag.decode() for tag in tags] for key, *tags in versioned}
        hold = self.tag_versions.hold
        for key in keys:
            evicted += hold(key, tagged.get(key, ()))
        if evicted and self._listener is not None:
            self._listener.keys_changed(evicted)

    @staticmethod
    def _tombstone(stamp: int) -> bytes:
        return tombstone(int(time.time() * 1000) + TOMBSTONE_PX, stamp)

    async def _run(self, calls: Sequence[_Call], notice: bytes, sha: str, text: str) -> list[Any]:
        """``calls`` of one script in one pipeline, the notice published by the last call
        (outside Cluster: a unit of one call is one atomic step), or after them; each
        call's reply. An engine that lost the script gets its text for the calls it
        refused, the last of them with the notice again (what it announced lands only
        now). Should the call with the notice fail where others stored, the notice goes
        on its own."""
        replies = await self._send_calls(calls, "EVALSHA", sha)
        unloaded = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unloaded:
            again = [calls[i] for i in unloaded]
            sent = await self._send_calls(again, "EVAL", text)
            for i, reply in zip(unloaded, sent, strict=True):
                replies[i] = reply
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if self._cluster or (failed and len(failed) < len(replies)):
            await self._client.publish(self.channel, notice)
        if failed:
            raise failed[0]
        return replies

    async def _send_calls(self, calls: Sequence[_Call], *script: str) -> list[Any]:
        commands = []
        for i, call in enumerate(calls):
            args = list(call.args)
            if not self._cluster and i == len(calls) - 1:
                args[call.channel_at] = self.channel
            commands.append([*script, len(call.names), *call.names, *args])
        if self._wire is not None:
            return await self._wire.calls(commands)
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    def _script_chunks(
        self, items: Sequence[tuple[str, bytes, float | None, int]]
    ) -> list[Sequence[tuple[str, bytes, float | None, int]]]:
        """``items`` in runs of at most :data:`SCRIPT_BATCH` entries and about
        :data:`SCRIPT_BATCH_BYTES` (one entry a run in Cluster, whose keys may live apart)."""
        if self._cluster:
            return [[item] for item in items]
        chunks: list[Sequence[tuple[str, bytes, float | None, int]]] = []
        start = size = 0
        for i, item in enumerate(items):
            if i > start and (
                i - start == SCRIPT_BATCH or size + len(item[1]) > SCRIPT_BATCH_BYTES
            ):
                chunks.append(items[start:i])
                start, size = i, 0
            size += len(item[1])
        chunks.append(items[start:])
        return chunks

    async def delete(self, keys: Sequence[str]) -> list[str]:
        """Unlink ``keys`` with their notice (see :meth:`delete_unless_newer`)."""
        return await self._delete(keys, ["", "", ""])

    async def delete_unless_newer(
        self, keys: Sequence[str], tombstone: bytes, ttl: float, horizon: int
    ) -> list[str]:
        """``keys`` replaced by ``tombstone`` for ``ttl`` seconds, with their notice, unless
        a newer write stays: one script call per run of :data:`SCRIPT_BATCH` keys, the
        notice in the last (a small delete is one atomic step; in Cluster a call a key,
        the notice after them). Where the engine is full, unlinked instead."""
        limit = min(horizon, 2**64 - 1).to_bytes(8, "big")
        px = self._px(ttl)
        return await self._delete(keys, [tombstone, 1 if px is None else px, limit])

    async def _delete(self, keys: Sequence[str], tomb: list[Any]) -> list[str]:
        if not keys:
            return []
        notice = self._notice(b"k", SEP.join(keys))
        step = 1 if self._cluster else SCRIPT_BATCH
        calls: list[_Call] = []
        for start in range(0, len(keys), step):
            chunk = list(keys[start : start + step])
            extra, watched = self._watched(chunk, len(keys) <= SCRIPT_BATCH, True)
            names = [self.prefix + key for key in chunk] + extra
            args = [len(chunk), "", notice, *watched, *tomb]
            calls.append(_Call(chunk, names, args, 1, bool(extra), bool(extra)))
        out: list[str] = []
        with _foreign_types():
            replies = await self._run(calls, notice, DELETE_SHA, DELETE)
        for call, (existed, *watched) in zip(calls, replies, strict=True):
            if call.watching:
                self._report(call.keys, watched, call.exact)
            out += [key for key, gone in zip(call.keys, existed, strict=True) if gone == 1]
        return out

    async def _scan(self, match: str) -> AsyncGenerator[bytes, None]:
        """The names (bytes, the prefix included) under the prefix matching ``match`` (a
        glob of the unprefixed key), index keys left out. Each SCAN page is bounded by
        :attr:`step_timeout`: the socket timeout and its retries would wait far longer."""
        scan = self._client.scan_iter(match=escape_glob(self.prefix) + match, count=SCAN_COUNT)
        index = self._index_start
        async with contextlib.aclosing(scan), contextlib.aclosing(self.steps(scan)) as names:
            async for name in names:
                if not name.startswith(index):
                    yield name

    async def delete_matching(self, pattern: str) -> list[str]:
        """UNLINK every key under the prefix matching ``pattern``, then announce the
        pattern to the other instances; the cache keys removed.

        A name that is not UTF-8 was written by another client (ours are str): it is
        unlinked by its bytes when the engine matched it, and left out of what is returned,
        since it names no cache key (no index entry or dependent refers to it, and a
        lossy decoding could alias a real key). A sweep that fails part-way (or whose
        notice does not get through) has its notice published in the background, retried
        until the engine takes it: an engine that froze keeps the other instances
        subscribed, and they must not go on serving from L1 what was removed."""
        check = matcher(pattern)
        start = len(self._prefix_bytes)
        removed: list[str] = []
        batch: list[tuple[bytes, str | None]] = []
        sent = False
        try:
            async with contextlib.aclosing(self._scan(pattern)) as names:
                async for name in names:
                    try:
                        key: str | None = name[start:].decode()
                    except UnicodeDecodeError:
                        key = None  # foreign: the engine's match stands
                    # The engine's glob and ours agree; this guards the prefix edge.
                    if key is None or check(key):
                        batch.append((name, key))
                    if len(batch) >= UNLINK_BATCH:
                        sent = True
                        removed += await self._unlink_batch(batch)
                        batch = []
            if batch:
                sent = True
                removed += await self._unlink_batch(batch)
            await self.step(self._client.publish(self.channel, self._notice(b"p", pattern)))
        except BaseException:
            if sent:  # even an UNLINK that timed out may have been carried out
                self._announce_later(self._notice(b"p", pattern))
            raise
        return removed

    async def _unlink_batch(self, batch: Sequence[tuple[bytes, str | None]]) -> list[str]:
        """UNLINK the names of ``(name, key)`` pairs in one bounded round trip; the keys
        (not None: foreign names are not returned) that existed, counted as the running
        long operation's progress."""
        existed = await self.step(self._unlink_live([name for name, _ in batch]))
        pairs = zip(batch, existed, strict=True)
        removed = [key for (_, key), found in pairs if found and key is not None]
        advance(len(removed))
        return removed

    async def _unlink_live(self, names: Sequence[bytes]) -> list[int]:
        """:data:`UNLINK_LIVE` of each name in one pipeline (its text again for those an
        engine that lost it refused); whether each held a live entry."""
        replies: list[Any] = [None] * len(names)
        todo = list(range(len(names)))
        for script in (("EVALSHA", UNLINK_LIVE_SHA), ("EVAL", UNLINK_LIVE)):
            pipe = self._client.pipeline(transaction=False)
            for i in todo:
                pipe.execute_command(*script, 1, names[i])
            for i, reply in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo:
                break
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [int(reply) for reply in replies]

    def _announce_later(self, notice: bytes) -> None:
        """Publish ``notice`` in the background, retried until the engine takes it (or the
        tier closes): the request that removed keys answers within its budget meanwhile."""
        if self._client is None:
            return  # closed: the subscribers' own reconnect empties their L1
        if notice in self._announcing:
            return  # the same pattern already waits: once is enough
        task = asyncio.get_running_loop().create_task(self._announce(notice))
        self._announcing[notice] = task
        task.add_done_callback(lambda _: self._announcing.pop(notice, None))

    async def _announce(self, notice: bytes) -> None:
        delay = ANNOUNCE_RETRY
        while self._client is not None:
            try:
                await self.step(self._client.publish(self.channel, notice))
                return
            except Exception as exc:
                log.warning("l2_notice_retry", extra={"error": repr(exc), "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, ANNOUNCE_RETRY_MAX)

    async def try_lock(self, name: str, lease: float) -> str | None:
        token = uuid.uuid4().hex
        name = self.prefix + INDEX_MARK + "lock:" + name
        with self.memory.refusals():
            taken = await self._client.set(name, token, nx=True, px=max(1, round(lease * 1000)))
        return token if taken else None

    async def unlock(self, name: str, token: str) -> None:
        # Compare-and-delete in one step: a lease that ran out and was taken by another
        # instance is not released by the late holder.
        await self._client.eval(_UNLOCK, 1, self.prefix + INDEX_MARK + "lock:" + name, token)

    async def touch_many(self, items: Sequence[tuple[str, float]]) -> None:
        """cache_core.tiers.base.TouchMany (sliding policies): each entry's frame expiry
        and TTL moved to ``ttl`` from now, one script call per key in one pipeline (a
        Cluster's keys live on several nodes); tombstones, missing keys and frames of
        older formats are left alone."""
        now = int(time.time() * 1000)
        pipe = self._client.pipeline(transaction=False)
        for key, ttl in items:
            at = now + max(1, round(ttl * 1000))
            expiry, touched = at.to_bytes(8, "big"), self._notice(b"t", key)
            pipe.eval(_TOUCH, 1, self.prefix + key, expiry, at, self.channel, touched)
        with self.memory.refusals():
            await pipe.execute()

    # cache_core.tiers.base.FencedLocks (agent.lock): cache_plugins_redis.locks
    async def acquire_lock(self, name: str, lease: float) -> int | None:
        with self.memory.refusals():
            return await self._locks.acquire(name, lease)

    async def extend_lock(self, name: str, token: int, lease: float) -> bool:
        with self.memory.refusals():
            return await self._locks.extend(name, token, lease)

    async def release_lock(self, name: str, token: int) -> bool:
        return await self._locks.release(name, token)

    @property
    def _locks(self) -> FencedLockScripts:
        return FencedLockScripts(self._client, self.prefix + INDEX_MARK)

    async def count(self) -> int:
        """Keys under the prefix, index keys left out (a SCAN, each page bounded).

        Names that are not UTF-8 (another client's: ours are str) are counted as they
        are, undecoded: they take the engine's memory under our prefix and an invalidation
        of ``*`` removes them, and a foreign name in UTF-8 cannot be told apart anyway."""
        total = 0
        async with contextlib.aclosing(self._scan("*")) as names:
            async for _ in names:
                total += 1
        return total

    def describe(self) -> dict[str, Any]:
        s = self._settings
        if self._cluster:
            where = "cluster " + ", ".join(f"{n.host}:{n.port}" for n in s.nodes)
        elif s.sentinel is not None:
            where = f"sentinel master {s.sentinel.master_name}"
        elif self.engine is not None:
            where = f"embedded engine at {self.engine.socket_path}"
        elif s.url == EMBEDDED:
            where = f"embedded engine under {os.path.abspath(s.data_dir)}"
        else:
            where = _redact(self._url())
        described = {
            "backend": where,
            "prefix": self.prefix,
            "coherent": self.coherent,
            "coherence": self.coherence,
        }
        return {**described, "memory": self.memory.describe()}


@define
class _Call:
    """One script call: the entries' keys, its KEYS (full names) and ARGV; ARGV's
    ``channel_at`` is where the channel goes ('' publishes nothing)."""

    keys: Sequence[str]
    names: list[str]
    args: list[Any]
    channel_at: int
    watching: bool
    """Whether it checks its keys' links (and its reply says which are linked)."""
    exact: bool
    """Whether it keeps its keys' index too."""


def _redact(url: str) -> str:
    """``url`` without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.partition(":")[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"


@contextlib.contextmanager
def _foreign_types() -> Iterator[None]:
    """WRONGTYPE: another client's key of another type sits where ours belongs. The server
    answered, so it says nothing against L2 (the breaker); what it holds is the problem."""
    try:
        yield
    except ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        message = f"L2 holds a key of another type where ours belongs: {exc}"
        raise CorruptEntryError(message) from exc
