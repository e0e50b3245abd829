"""An L2 tier as the data path calls it. :class:`GuardedTier` wraps the storage tier (a
:class:`~cache_core.tiers.base.RemoteTier`, which keeps opaque bytes) and does everything
else an L2 read or write needs:

- framing and compression: each value is framed (cache_core.frames: format version, codec
  id, absolute expiry, the write's stamp) and compressed above
  ``compression.threshold_bytes`` unless its policy says not to, before the tier sees
  it; each frame read back is opened whatever codec wrote it and checked whole (header,
  lengths, exactly one JSON value) before anyone promotes or splices it, since anything
  can be planted in a shared store. A bad frame is that key's
  :class:`~cache_core.errors.CorruptEntryError` (in place in a batch);
- versions: each write is stamped (:class:`~cache_core.frames.HybridClock`) when it is
  made, a write_back write when it was accepted (its strategy asks :meth:`GuardedTier.stamp`
  and hands the stamp back at flush). Through a tier with a conditional set
  (:class:`~cache_core.tiers.base.ConditionalSet`) a write lands only where the stored
  value is older; one refused leaves the newer value in place and is reported to the
  coherence listener as a change of its key, so this instance drops its L1 copy (and a
  write that watches for notices does not install one) and reads the newer value next;
- observation: every call timed and traced through the agent's
  :class:`~cache_core.metrics.OperationObserver`;
- bounds: each call under ``circuit_breaker.operation_timeout``, behind the
  :class:`~cache_core.breaker.CircuitBreaker`, so a dead or stuck server costs a request at
  most the timeout, and nothing at all while the breaker is open. Any failure leaves as
  :class:`~cache_core.errors.TierUnavailableError`.

Other attributes pass through to the tier."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from cache_core.breaker import BreakerState, CircuitBreaker
from cache_core.errors import (
    CacheError,
    CorruptEntryError,
    InvalidValueError,
    TierUnavailableError,
)
from cache_core.frames import (
    NEVER,
    TOMBSTONE_TTL,
    CodecSet,
    HybridClock,
    Opened,
    is_tombstone,
    tombstone,
)
from cache_core.invalidation import InvalidationIndex
from cache_core.metrics import NullObserver, OperationObserver
from cache_core.tiers.base import (
    CoherenceListener,
    ConditionalDelete,
    ConditionalSet,
    HealthNotes,
    RemoteTier,
    StoredValue,
    TTLLookup,
)

if TYPE_CHECKING:
    from cache_core.policies import PolicyTable

log = logging.getLogger("cache_core.tiers.guarded")

T = TypeVar("T")

Read = StoredValue | CorruptEntryError | None
"""One key's answer to a batch read: its entry, why it is unreadable, or a miss."""
Opening = Opened | CorruptEntryError | None
""":data:`Read` as :meth:`GuardedTier.open_many` answers it: the entry a tuple."""
Stamped = tuple[str, bytes, float | None, bool, int]
"""A write stamped when it was made (a write_back write, sent later): key, JSON bytes, TTL,
whether it compresses and its stamp (:meth:`GuardedTier.stamp`)."""
Item = tuple[str, bytes, float | None] | tuple[str, bytes, float | None, bool] | Stamped
"""One write: key, JSON bytes, TTL in seconds (None: none), whether it compresses when its
policy was matched already (absent: matched here), and its stamp when it was made earlier
(absent: stamped here, now)."""


def _no_verdict() -> None:
    return None


def _expiry(now_ms: int, ttl: float | None) -> int:
    """The frame's expiry for an entry written at ``now_ms`` for ``ttl`` seconds: when the
    store's own TTL (in the milliseconds a tier sends, at least 1) ends it."""
    return NEVER if ttl is None else now_ms + max(1, round(ttl * 1000))


def compression_by_policy(policies: PolicyTable) -> Callable[[str], bool]:
    """Whether a key's value compresses: its first matching policy's ``compress``, else yes."""

    def compresses(key: str) -> bool:
        policy = policies.match(key)
        return policy.compress if policy is not None else True

    return compresses


class GuardedTier:
    """``inner`` framed, compressed, observed, bounded and behind ``breaker``.

    ``codecs`` frame and open values; ``key_pattern`` labels a key for traces and logs;
    ``compresses`` says whether a key's value compresses, for writes that do not say (a
    write whose policy was matched already passes ``compress``). ``wall_clock`` (Unix
    seconds) dates frames: their expiry is absolute, shared by every instance; ``clock``
    stamps writes."""

    PLUGIN_NAME: ClassVar[str] = "guarded"

    def __init__(
        self,
        inner: RemoteTier,
        breaker: CircuitBreaker,
        operation_timeout: float,
        codecs: CodecSet,
        *,
        key_pattern: Callable[[str], str],
        compresses: Callable[[str], bool],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.default_ttl = inner.default_ttl
        self.observer: OperationObserver = NullObserver()
        self.breaker = breaker
        self.codecs = codecs
        self.wall_clock = wall_clock
        self._timeout = operation_timeout
        self._pattern = key_pattern
        self._compresses = compresses
        self._ttls = inner.ttls if isinstance(inner, TTLLookup) else None
        self.clock = HybridClock()
        self._conditional = inner if isinstance(inner, ConditionalSet) else None
        self._conditional_delete = (
            inner
            if self._conditional is not None and isinstance(inner, ConditionalDelete)
            else None
        )
        self.listener: CoherenceListener | None = None
        """Told of keys whose write was refused as older (see :meth:`attach`)."""
        self.superseded = 0
        """Writes refused because L2 held a newer value of their key."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # The rest of RemoteTier, passed through untimed (not data calls).
    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def count(self) -> int:
        return await self.guarded("count", {}, self.inner.count(), bounded=False)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def health_notes(self) -> list[str]:
        """The tier's :class:`~cache_core.tiers.base.HealthNotes`, or none: they are optional."""
        return self.inner.health_notes() if isinstance(self.inner, HealthNotes) else []

    def attach(self, listener: CoherenceListener) -> bool:
        """The tier's ``attach``; ``listener`` is also told of this instance's writes that
        L2 refused as older, as changes of their keys."""
        self.listener = listener
        return self.inner.attach(listener)

    def stamp(self) -> int:
        """A stamp for a write made now and sent later (write_back): pass it as the last
        field of its :data:`Stamped` item."""
        return self.clock.stamp()

    async def try_lock(self, name: str, lease: float) -> str | None:
        return await self.guarded("try_lock", {}, self.inner.try_lock(name, lease))

    async def unlock(self, name: str, token: str) -> None:
        await self.guarded("unlock", {}, self.inner.unlock(name, token))

    async def guarded(
        self, op: str, attributes: dict[str, Any], call: Awaitable[T], *, bounded: bool = True
    ) -> T:
        breaker = self.breaker
        if not breaker.allow():
            if inspect.iscoroutine(call):
                call.close()  # never awaited: nothing was sent
            raise TierUnavailableError(
                f"L2 is unavailable (circuit open after: {breaker.last_error}); retry shortly"
            )
        # Only the probe may give the probe slot back without a verdict.
        release = breaker.release if breaker.state is BreakerState.HALF_OPEN else _no_verdict
        observer = self.observer
        start = time.perf_counter()
        ok = False
        try:
            with observer.span(f"l2.{op}", {"cache.tier": "l2", "cache.op": op, **attributes}):
                if bounded:
                    async with asyncio.timeout(self._timeout):
                        result = await call
                else:
                    result = await call
            ok = True
        except CorruptEntryError:
            breaker.success()  # the server answered; what it holds is the problem
            raise
        except CacheError:
            release()  # the request's own error: says nothing about L2
            raise
        except UnicodeDecodeError as exc:
            breaker.success()  # the server answered with what we cannot read
            raise CorruptEntryError(f"L2 answered {op} with undecodable text: {exc}") from exc
        except (UnicodeEncodeError, OverflowError) as exc:
            # Raised while the frame or the client library's command was built from the
            # request's values (text it cannot encode, a TTL beyond any clock): nothing
            # reached L2, so nothing counts against it.
            release()
            raise InvalidValueError(f"L2 cannot store this request's values: {exc}") from exc
        except TimeoutError:
            breaker.failure(f"{op} took longer than {self._timeout} s")
            raise TierUnavailableError(f"L2 did not answer {op} within {self._timeout} s") from None
        except (OSError, ConnectionError) as exc:
            breaker.failure(f"{op}: {exc}")
            raise TierUnavailableError(f"L2 failed {op}: {exc}") from exc
        except Exception as exc:  # client libraries' own connection/timeout errors
            breaker.failure(f"{op}: {type(exc).__name__}: {exc}")
            raise TierUnavailableError(f"L2 failed {op}: {exc}") from exc
        except BaseException:
            # Cancelled (a caller's own timeout, a shutdown): no verdict on L2, and the
            # probe slot must not stay taken, or the breaker never closes again.
            release()
            raise
        finally:
            observer.l2_call(op, time.perf_counter() - start, ok)
        breaker.success()
        return result

    # -- reads: frames opened and checked inside the guarded call, as the tier's answer --

    async def get(self, key: str) -> StoredValue | None:
        return await self.guarded("get", {"cache.key_pattern": self._pattern(key)}, self._get(key))

    async def get_many(self, keys: Sequence[str]) -> list[Read]:
        """Each key's entry; a bad frame is reported in its place (an exception instance),
        so one bad entry costs only its own key."""
        opened = await self.open_many(keys)
        return [
            StoredValue(entry[0], entry[1]) if type(entry) is tuple else entry  # type: ignore[misc]
            for entry in opened
        ]

    async def open_many(self, keys: Sequence[str], *, decode: bool = False) -> list[Opening]:
        """:meth:`get_many` for the data path: each entry as a tuple (JSON bytes, seconds
        left, its value when ``decode``, else None; see :data:`~cache_core.frames.Opened`),
        not an object a key. The JSON was parsed to check it; ``decode`` keeps what the
        parse made rather than parsing again."""
        call = self._open_many(keys, decode)
        return await self.guarded("get_many", {"cache.batch": len(keys)}, call)

    async def _get(self, key: str) -> StoredValue | None:
        frame = await self.inner.get(key)
        if frame is None or is_tombstone(frame):
            return None
        # The common read, kept lean: one frame, its expiry inside.
        try:
            data, expiry = self.codecs.read(frame)
        except CorruptEntryError as exc:
            self._corrupt(key, exc)
            raise
        if expiry == NEVER:
            return StoredValue(data, None)
        if expiry is not None:
            left = expiry / 1000.0 - self.wall_clock()
            # Past its expiry by the writer's clock: the store drops it within the skew.
            return StoredValue(data, left) if left > 0 else None
        out: list[Opening] = [(data, None, None)]
        await self._date((key,), out, [0])
        found = out[0]
        assert not isinstance(found, CorruptEntryError)
        return None if found is None else StoredValue(found[0], found[1])

    async def _open_many(self, keys: Sequence[str], decode: bool) -> list[Opening]:
        frames = await self.inner.get_many(keys)
        if len(frames) != len(keys):
            raise ValueError(f"the L2 tier answered {len(frames)} of {len(keys)} keys")
        # Frames whose entries have no expiry inside (format 1) are answered as never
        # expiring until _date asks the tier.
        out, undated, corrupt = self.codecs.open_many(frames, self.wall_clock() * 1000, decode)
        for i in corrupt:
            self._corrupt(keys[i], out[i])  # type: ignore[arg-type]
        if undated:
            await self._date(keys, out, undated)
        return out

    def _corrupt(self, key: str, exc: CorruptEntryError) -> None:
        log.error("l2_corrupt_entry", extra={"key_pattern": self._pattern(key), "error": str(exc)})

    async def _date(self, keys: Sequence[str], out: list[Opening], undated: list[int]) -> None:
        """The TTLs of the ``undated`` entries of ``out``, from the tier when it keeps them."""
        if self._ttls is None:
            return
        ttls = await self._ttls([keys[i] for i in undated])
        for i, left in zip(undated, ttls, strict=True):
            entry = out[i]
            assert isinstance(entry, tuple)
            out[i] = None if left is not None and left <= 0 else (entry[0], left, entry[2])

    # -- writes: framed inside the guarded call, so an open breaker costs no compression --

    async def set(
        self,
        key: str,
        data: bytes,
        ttl: float | None,
        compress: bool | None = None,
        stamp: int | None = None,
    ) -> list[str]:
        """Store ``data`` (JSON bytes) for ``ttl`` seconds; ``compress`` as the write's
        policy says (None: matched here from the key); ``stamp`` when the write was made
        earlier (None: now). ``set(*item)`` takes an :data:`Item`. Returns ``[key]`` when
        L2 kept a newer value instead (the listener was told), else ``[]``."""
        attributes = {"cache.key_pattern": self._pattern(key)}
        return await self.guarded("set", attributes, self._set(key, data, ttl, compress, stamp))

    async def set_many(self, items: Sequence[Item]) -> list[str]:
        """:meth:`set` for each :data:`Item`; the keys of those L2 refused as older."""
        return await self.guarded("set_many", {"cache.batch": len(items)}, self._set_many(items))

    async def _set(
        self, key: str, data: bytes, ttl: float | None, compress: bool | None, stamp: int | None
    ) -> list[str]:
        if compress is None:
            compress = self._compresses(key)
        if stamp is None:
            stamp = self.clock.stamp()
        expires_at_ms = _expiry(round(self.wall_clock() * 1000), ttl)
        frame = self.codecs.encode(data, compress, expires_at_ms, stamp)
        conditional = self._conditional
        if conditional is None:
            await self.inner.set(key, frame, ttl)
            return []
        kept = await conditional.set_unless_newer([(key, frame, ttl, stamp)], self.clock.horizon())
        return [] if kept[0] is None else self._superseded([key], kept)

    async def _set_many(self, items: Sequence[Item]) -> list[str]:
        now_ms = round(self.wall_clock() * 1000)
        encode = self.codecs.encode
        compresses = self._compresses
        stamp_now = self.clock.stamp
        framed: list[tuple[str, bytes, float | None, int]] = []
        append = framed.append
        for item in items:
            if len(item) == 3:
                key, data, ttl = item
                compress = compresses(key)
                stamp = stamp_now()
            elif len(item) == 4:
                key, data, ttl, compress = item
                stamp = stamp_now()
            else:
                key, data, ttl, compress, stamp = item
            # Inline (not _expiry): a flush frames thousands of entries in one call.
            expires_at_ms = NEVER if ttl is None else now_ms + max(1, round(ttl * 1000))
            append((key, encode(data, compress, expires_at_ms, stamp), ttl, stamp))
        conditional = self._conditional
        if conditional is None:
            await self.inner.set_many([(key, frame, ttl) for key, frame, ttl, _ in framed])
            return []
        kept = await conditional.set_unless_newer(framed, self.clock.horizon())
        if all(stamp is None for stamp in kept):
            return []
        return self._superseded([item[0] for item in framed], kept)

    def _superseded(self, keys: Sequence[str], kept: Sequence[int | None]) -> list[str]:
        """The keys whose write L2 refused, holding a newer value (its stamp in ``kept``)."""
        refused = [key for key, stamp in zip(keys, kept, strict=True) if stamp is not None]
        self.superseded += len(refused)
        self.clock.observe(max(stamp for stamp in kept if stamp is not None))
        if self.listener is not None:
            # As another instance's change notice would: our L1 copy is older than L2's.
            self.listener.keys_changed(refused)
        return refused

    async def delete(self, keys: Sequence[str]) -> list[str]:
        """Delete ``keys``; where the tier compares stamps, leaving the delete's tombstone
        (:data:`~cache_core.frames.TOMBSTONE_TTL`), so no older write lands after it."""
        deleting = self._conditional_delete
        if deleting is None:
            call = self.inner.delete(keys)
        else:
            expires_at_ms = _expiry(round(self.wall_clock() * 1000), TOMBSTONE_TTL)
            mark = tombstone(expires_at_ms, self.clock.stamp())
            call = deleting.delete_unless_newer(keys, mark, TOMBSTONE_TTL, self.clock.horizon())
        return await self.guarded("delete", {"cache.batch": len(keys)}, call)

    async def delete_matching(self, pattern: str) -> list[str]:
        # Unbounded: a large invalidation takes many round trips, each under the socket timeout.
        return await self.guarded(
            "delete_matching", {}, self.inner.delete_matching(pattern), bounded=False
        )


async def _one_by_one(
    index: InvalidationIndex,
    dependencies: Sequence[tuple[str, str]],
    subscriptions: Sequence[tuple[str, str]],
) -> None:
    for key, dependency in dependencies:
        await index.add_dependency(key, dependency)
    for event, target in subscriptions:
        await index.subscribe(event, target)


class GuardedIndex:
    """An invalidation index kept in L2, called through the same guard as L2 itself: a
    dead server fails these calls fast too, as :class:`TierUnavailableError`."""

    PLUGIN_NAME: ClassVar[str] = "guarded"

    def __init__(self, inner: InvalidationIndex, tier: GuardedTier) -> None:
        self.inner = inner
        self._guarded = tier.guarded

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def record(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> set[str]:
        return await self._guarded("index.record", {}, self.inner.record(entries, dependencies))

    def settle(
        self,
        entries: Sequence[tuple[str, float | None, Sequence[str]]],
        dependencies: Sequence[str],
    ) -> Awaitable[None] | None:
        # Nothing to send, nothing to guard: no span, no breaker check, no I/O.
        work = self.inner.settle(entries, dependencies)
        return None if work is None else self._guarded("index.settle", {}, work)

    # Bulk work spans many round trips: the index bounds each (the Redis index by
    # circuit_breaker.operation_timeout), not the whole.
    async def forget(self, keys: Iterable[str]) -> None:
        await self._guarded("index.forget", {}, self.inner.forget(keys), bounded=False)

    async def retire_tags(self, tags: Sequence[str]) -> tuple[int, bool, set[str]]:
        """The inner index's ``retire_tags`` (only called where it says ``tag_versions``)."""
        call = self.inner.retire_tags(tags)  # type: ignore[attr-defined]
        return await self._guarded("index.retire_tags", {}, call)

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        call = self.inner.keys_for_tags(tags)
        return await self._guarded("index.keys_for_tags", {}, call, bounded=False)

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        call = self.inner.dependents(keys)
        return await self._guarded("index.dependents", {}, call, bounded=False)

    async def add_dependency(self, key: str, dependency: str) -> None:
        await self._guarded("index.add_dependency", {}, self.inner.add_dependency(key, dependency))

    async def subscribe(self, event: str, target: str) -> None:
        await self._guarded("index.subscribe", {}, self.inner.subscribe(event, target))

    async def register(
        self, dependencies: Sequence[tuple[str, str]], subscriptions: Sequence[tuple[str, str]]
    ) -> None:
        """Many registrations in one guarded call: through the inner index's own
        ``register`` where it has one (optional: the Redis index sends them in one round
        trip), else its :meth:`add_dependency` and :meth:`subscribe` one by one."""
        batch = getattr(self.inner, "register", None)
        call = (
            batch(dependencies, subscriptions)
            if batch is not None
            else _one_by_one(self.inner, dependencies, subscriptions)
        )
        n = len(dependencies) + len(subscriptions)
        await self._guarded("index.register", {"cache.batch": n}, call)

    async def subscriptions(self, event: str) -> list[str]:
        return await self._guarded("index.subscriptions", {}, self.inner.subscriptions(event))

    async def events(self) -> list[str]:
        return await self._guarded("index.events", {}, self.inner.events())
