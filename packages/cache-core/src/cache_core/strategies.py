"""Write strategies: how a write reaches L1 and L2.

- write_through: L2 then L1, in the caller's await.
- write_back: L1 now, L2 later: buffered and flushed in one batch by size (``batch_size``)
  or time (``flush_interval``), and on close. Reads of buffered keys see the buffer; deletes
  and invalidations drop buffered writes and wait for an in-flight flush, so a flush never
  resurrects a deleted key.
- write_around: L2 only; any L1 copy is dropped.

With no L2 configured, L1 is the only (and so the backing) tier and every strategy writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

from attrs import Attribute, define, field

from cache_core.errors import InvalidValueError, TierUnavailableError
from cache_core.globs import matcher
from cache_core.links import LANDING, Landing
from cache_core.tiers.base import LocalTier
from cache_core.tiers.guarded import GuardedTier, Stamped

log = logging.getLogger("cache_core.strategies")

FLUSH_RETRY_AFTER = 0.25
"""Seconds after a failed flush before a write may start another (the periodic flush
retries meanwhile)."""

OnLanded = Callable[[Sequence[tuple[str, float | None]], Collection[str] | None], Awaitable[None]]
"""A buffer's ``on_landed``: told (key, TTL left) of what a flush landed, and which of those
keys its tier said the invalidation index holds anything for (None: it could not tell;
see :class:`~cache_core.links.Landing`)."""

Write = tuple[str, bytes, float | None, bool]
"""One write: key, JSON bytes, TTL in seconds (None: no expiry), and whether L2 may
compress it (its policy's ``compress``, matched once when the write was resolved)."""


class CacheStrategy(StrEnum):
    WRITE_THROUGH = "write_through"
    WRITE_BACK = "write_back"
    WRITE_AROUND = "write_around"


@define(frozen=True)
class StrategyContext:
    l1: LocalTier
    l2: GuardedTier | None
    clock: Callable[[], float]
    changes: Callable[[], int] = lambda: 0
    """How many change notices from other instances have arrived: a write whose L2 round
    trip saw it move must not install its value in L1 (another instance's newer value may
    have landed in L2 in between, and its notice already gone by)."""

    def l1_ttl(self, ttl: float | None) -> float | None:
        """L1's TTL for an entry: capped by L1's own TTL only when L2 backs it."""
        cap = self.l1.default_ttl
        if self.l2 is None or cap is None:
            return ttl
        return cap if ttl is None else min(ttl, cap)


@runtime_checkable
class Strategy(Protocol):
    """A write strategy; built as ``cls(options, context)`` (its ``Options``, a
    :class:`StrategyContext`). ``write`` stores ``items`` as the strategy says: when it
    returns, what the strategy promises has happened (write_through: L2 and L1 hold them)."""

    PLUGIN_NAME: ClassVar[str]

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, items: Sequence[Write]) -> None: ...
    def describe(self) -> dict[str, object]: ...


@runtime_checkable
class WriteBuffer(Protocol):
    """What a strategy that holds writes back from L2 offers besides :class:`Strategy`
    (write_back): the agent reads through it, and deletes and invalidations drop from it,
    so a held write is never lost to a read nor resurrected by a flush.

    Optional, so not a member (a buffer without it is a buffer all the same): an
    ``on_landed`` attribute (:data:`OnLanded`), None until the agent sets it, awaited by the
    buffer with (key, TTL left) of what each flush landed and the flush's
    :class:`~cache_core.links.Landing` report, once its lock is released. Where a buffer has it,
    the invalidation index settles a plain write at its flush; where not, in the request.
    With it, a ``landing_for`` attribute (keys → the Landing a flush of them is made under),
    set by the agent too.
    Optional too: ``held(match)`` and ``put_back(held)``, which keep the held writes a
    removal drops until the removal has reached L2 (should it fail, they are buffered again:
    an acknowledged write is not lost to a delete that never happened); a ``flush()``
    coroutine (send what is held now): a write of another strategy to a key the buffer holds
    flushes it first, so the held write lands before that one and is not lost should that
    one fail (without it the held write is dropped instead); and ``contest(keys)`` with
    ``contested(keys)``: another instance changed keys the buffer holds, which it then
    flushes at once, and reads wait for that rather than serve a write that may be older."""

    on_flush: Callable[[float, int, bool], None] | None
    """Told (seconds, items, ok) after each flush to L2."""

    async def admit(self, items: Sequence[Write]) -> None:
        """Before anything of a write is indexed or written, raise if the buffer cannot
        take ``items`` (full, or could never hold them), so a refused write changes
        nothing."""
        ...

    def pending(self, key: str) -> tuple[bytes, float | None] | None:
        """The bytes and remaining TTL of ``key``'s held write, or None."""
        ...

    def holds_writes(self) -> bool:
        """Whether any write is held back (buffered or being flushed): when not, no
        ``pending`` call can find one, and lookups skip asking."""
        ...

    async def discard(self, keys: Iterable[str]) -> list[str]:
        """Drop the held writes of ``keys`` (waiting for a flush in flight); returns the
        keys that had one."""
        ...

    async def discard_matching(self, pattern: str) -> list[str]:
        """:meth:`discard` of every held key matching the glob ``pattern``."""
        ...

    def held_keys(self) -> int:
        """Keys whose write is held back: buffered, or in a flush not landed yet."""
        ...


def buffers_of(strategies: Iterable[Strategy]) -> list[WriteBuffer]:
    """The strategies that hold writes back (checked once, at assembly: an isinstance
    check of a protocol costs too much for every write)."""
    return [s for s in strategies if isinstance(s, WriteBuffer)]


class _Unbuffered:
    def __init__(self, options: object, context: StrategyContext) -> None:
        self._ctx = context

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {}

    def _write_l1(self, items: Sequence[Write]) -> None:
        l1, l1_ttl = self._ctx.l1, self._ctx.l1_ttl
        for key, data, ttl, _ in items:
            if not l1.set(key, data, l1_ttl(ttl)):
                l1.delete(key)  # too large for L1: never leave an older copy behind


def _must_be_sync(_options: object, _attribute: Attribute[bool], value: bool) -> None:
    # Giving ``sync: false`` a meaning (L2 written after the call returns) would be
    # write_back without its buffer bound, retries or read-your-writes: refused instead.
    if not value:
        raise ValueError(
            "sync must be true (write_through writes L2 before the write returns; "
            "strategy write_back is the one whose writes reach L2 later)"
        )


class WriteThrough(_Unbuffered):
    PLUGIN_NAME: ClassVar[str] = "write_through"

    @define(frozen=True)
    class Options:
        sync: bool = field(default=True, validator=_must_be_sync)
        """Accepted because the product description's config spells ``sync: true``; only
        true: a write-through write has reached L2 when it returns, by definition."""

    async def write(self, items: Sequence[Write]) -> None:
        l2 = self._ctx.l2
        if l2 is None:
            self._write_l1(items)
            return
        seen = self._ctx.changes()
        if len(items) == 1:
            await l2.set(*items[0])
        else:
            await l2.set_many(items)
        if self._ctx.changes() == seen:
            self._write_l1(items)
        else:  # L2 may hold another instance's newer value: the next read fetches it
            for item in items:
                self._ctx.l1.delete(item[0])


class WriteAround(_Unbuffered):
    PLUGIN_NAME: ClassVar[str] = "write_around"

    async def write(self, items: Sequence[Write]) -> None:
        l2 = self._ctx.l2
        if l2 is None:
            self._write_l1(items)
            return
        await l2.set_many(items)
        for item in items:
            self._ctx.l1.delete(item[0])


class WriteBack:
    PLUGIN_NAME: ClassVar[str] = "write_back"

    @define(frozen=True)
    class Options:
        batch_size: int = 100
        flush_interval: float = 5.0
        max_pending: int = 10_000
        """Writes held for L2 at most; while L2 is away, writes beyond it are refused."""
        max_pending_mb: float = 64.0
        """Bytes (of JSON values) held for L2 at most, in MiB: a flush starts when half of
        it is buffered, and a write that would go beyond it is refused while L2 is away."""

    def __init__(self, options: WriteBack.Options, context: StrategyContext) -> None:
        if options.batch_size <= 0 or options.flush_interval <= 0:
            raise ValueError("batch_size and flush_interval must be greater than 0")
        if options.max_pending <= 0 or options.max_pending_mb <= 0:
            raise ValueError("max_pending and max_pending_mb must be greater than 0")
        self._opts = options
        self._max_bytes = int(options.max_pending_mb * 1024 * 1024)
        self._buffered_bytes = 0
        """The sum of len(data) over ``_buffer``."""
        self._in_flight_bytes = 0
        self._retry_at = 0.0
        """Until when (context clock) writes leave a failed flush to the periodic one."""
        self._ctx = context
        # key -> (data, absolute expiry on the context clock); insertion order = write order.
        self._buffer: dict[str, tuple[bytes, float, bool, int]] = {}
        """Key -> (JSON bytes, expiry on the context clock, whether it may compress, its
        stamp: the write's version, taken when it was accepted, so that L2 keeps a newer
        write another instance made before the flush)."""
        self._flush_lock = asyncio.Lock()
        # The batch a flush is sending, readable until it has landed, and the keys deleted
        # meanwhile (neither served from it nor put back by a failed flush).
        self._in_flight: dict[str, tuple[bytes, float, bool, int]] = {}
        self._dropped_in_flight: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.flushes = 0
        self.flushed_items = 0
        self.flush_errors = 0
        self.dropped = 0
        """Buffered writes L2 refused for what they held (logged, not retried)."""
        self.on_flush: Callable[[float, int, bool], None] | None = None
        """Told (seconds, items, ok) after each flush that sent anything."""
        self.on_landed: OnLanded | None = None
        self.landing_for: Callable[[Sequence[str]], Landing] | None = None
        """Set with ``on_landed``: the Landing a flush of these keys is made under."""
        self._contested: set[str] = set()
        """Held keys another instance changed since: flushed now, their reads wait for it."""
        self._landings: set[asyncio.Future[None]] = set()
        """Flushes sent whose ``on_landed`` (the index settling them) has not finished."""
        self._settling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._ctx.l2 is not None and self._task is None:
            self._task = asyncio.create_task(self._flush_periodically(), name="write-back-flush")

    def contest(self, keys: Iterable[str] | None = None) -> None:
        """Another instance changed ``keys`` (its notice arrived; None: every key, as when
        notices were missed): those this buffer holds go to L2 now (those alone), in the
        background, where the newer of the two writes stays (the stamps decide), and reads
        of them wait for that. Else this instance would serve its own write, maybe the
        older one, until its next flush."""
        if self._ctx.l2 is None:
            return
        if keys is None:
            keys = list(self._buffer)
        held = [key for key in keys if key in self._buffer or key in self._in_flight]
        if not held:
            return
        self._contested.update(held)
        if self._settling is None or self._settling.done():
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        while self._contested:
            batch = set(self._contested)
            try:
                await self.flush(batch)
            except Exception:
                # L2 away: the writes are held again, and served as before (a read cannot
                # learn which write is newer now).
                return
            finally:
                self._contested -= batch

    def contested(self, keys: Iterable[str]) -> Awaitable[None] | None:
        """What a read of ``keys`` must wait for before it serves a held write (see
        :meth:`contest`), or None."""
        task = self._settling
        if task is None or task.done() or not any(key in self._contested for key in keys):
            return None
        return asyncio.shield(task)

    async def close(self) -> None:
        if self._settling is not None:
            with contextlib.suppress(Exception):
                await self._settling
        if self._task is not None:
            # The event, not only cancel(): a cancellation landing inside an L2 client can
            # be swallowed there, and the loop must end all the same.
            self._stopping.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=5)
            self._task = None
        try:
            await self.flush()
        except Exception as exc:  # shutting down: nothing left to retry with, say so loudly
            log.error("write_back_lost", extra={"pending": len(self._buffer), "error": repr(exc)})

    async def admit(self, items: Sequence[Write]) -> None:
        if self._ctx.l2 is None:
            return
        self._check_alone(items)
        if self._buffer and self._ctx.clock() >= self._retry_at and self._full(items):
            # Large values reach the byte bound before batch_size: make room first.
            with contextlib.suppress(Exception):  # L2 away: the bound check below refuses
                await self.flush()
        self._check_bound(items)

    async def write(self, items: Sequence[Write]) -> None:
        ctx = self._ctx
        retry = ctx.l2 is not None and ctx.clock() >= self._retry_at
        if ctx.l2 is not None:
            self._check_bound(items)  # again: others may have filled it since admit()
        l1_ttl = ctx.l1_ttl
        now = ctx.clock()
        stamp = ctx.l2.stamp() if ctx.l2 is not None else 0
        for key, data, ttl, compress in items:
            if not ctx.l1.set(key, data, l1_ttl(ttl)):
                ctx.l1.delete(key)
            if ctx.l2 is not None:
                self._pop(key)  # re-insert: a rewrite moves to the back
                expires_at = math.inf if ttl is None else now + ttl
                self._buffer[key] = (data, expires_at, compress, stamp)
                self._buffered_bytes += len(data)
        if retry and (
            len(self._buffer) >= self._opts.batch_size
            or self._buffered_bytes >= self._max_bytes // 2
        ):
            try:
                await self.flush()
            except Exception as exc:  # the writes are in L1 and the buffer: a later flush retries
                log.warning("write_back_flush_failed", extra={"error": repr(exc)})

    def _growth(self, items: Sequence[Write]) -> tuple[int, int]:
        """How many writes and bytes buffering ``items`` adds (rewrites replace theirs)."""
        fresh = 0
        grown = 0
        for key, data, _, _ in items:
            held = self._buffer.get(key)
            if held is None:
                fresh += 1
                grown += len(data)
            else:
                grown += len(data) - len(held[0])
        return fresh, grown

    def _check_alone(self, items: Sequence[Write]) -> None:
        """A write the buffer could never hold, even empty, is the request's error."""
        size = sum(len(item[1]) for item in items)
        if len(items) > self._opts.max_pending or size > self._max_bytes:
            raise InvalidValueError(
                f"{len(items)} writes of {size} bytes in one call can never be buffered for "
                f"L2 (strategies.write_back.max_pending is {self._opts.max_pending}, "
                f"max_pending_mb {self._opts.max_pending_mb:g})"
            )

    def _full(self, items: Sequence[Write]) -> TierUnavailableError | None:
        """Why the buffer cannot take ``items`` now, or None when it can."""
        fresh, grown = self._growth(items)
        if self._held_count + fresh > self._opts.max_pending:
            return TierUnavailableError(
                f"the write-back buffer is full ({self._held_count} writes waiting for "
                "L2); retry when L2 is back"
            )
        if self._held_bytes + grown > self._max_bytes:
            return TierUnavailableError(
                f"the write-back buffer is full ({self._held_bytes} bytes waiting for L2, "
                f"strategies.write_back.max_pending_mb is {self._opts.max_pending_mb:g}); "
                "retry when L2 is back"
            )
        return None

    def _check_bound(self, items: Sequence[Write]) -> None:
        full = self._full(items)
        if full is not None:
            raise full

    @property
    def _held_count(self) -> int:
        """Writes held for L2: buffered, or in a flush not landed yet (a key in both counts
        twice: the bound errs on the safe side, in O(1))."""
        return len(self._buffer) + len(self._in_flight)

    @property
    def _held_bytes(self) -> int:
        """Bytes held for L2: buffered, or in a flush not landed yet."""
        return self._buffered_bytes + self._in_flight_bytes

    def _pop(self, key: str) -> bool:
        held = self._buffer.pop(key, None)
        if held is None:
            return False
        self._buffered_bytes -= len(held[0])
        return True

    def holds_writes(self) -> bool:
        return bool(self._buffer or self._in_flight)

    def pending(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._buffer.get(key)
        if entry is None and key not in self._dropped_in_flight:
            entry = self._in_flight.get(key)
        if entry is None:
            return None
        left = entry[1] - self._ctx.clock()
        if left <= 0:
            return None
        return entry[0], (None if math.isinf(left) else left)

    async def discard(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        dropped = [key for key in keys if self._pop(key)]
        if self._flush_lock.locked():
            # A flush already sent may carry these keys: let it land first, so the caller's
            # delete in L2 comes after it.
            self._dropped_in_flight.update(keys)
            async with self._flush_lock:
                pass
        return dropped

    async def discard_matching(self, pattern: str) -> list[str]:
        match = matcher(pattern)
        return await self.discard([key for key in self._buffer if match(key)])

    def held(self, match: Callable[[str], object]) -> dict[str, tuple[bytes, float, bool, int]]:
        """The buffered writes of the keys ``match`` accepts (not those of a flush in
        flight: a failed flush puts its own back), for :meth:`put_back`."""
        return {key: entry for key, entry in self._buffer.items() if match(key)}

    def put_back(self, held: dict[str, tuple[bytes, float, bool, int]]) -> None:
        """Buffer again the writes :meth:`held` returned, ahead of newer ones, except where
        the key was written again since (that write is newer)."""
        back = {k: v for k, v in held.items() if k not in self._buffer and k not in self._in_flight}
        self._buffer = {**back, **self._buffer}
        self._buffered_bytes += sum(len(entry[0]) for entry in back.values())

    async def flush(self, only: Collection[str] | None = None) -> int:
        """Send every buffered write (or those of ``only``) to L2 in one batch; return how
        many were sent. When it returns, what earlier flushes sent is settled too (their
        index changes made): a caller finds every write held before it landed."""
        if self._ctx.l2 is None:
            return 0
        async with self._flush_lock:
            earlier = list(self._landings)
            sent = await self._flush_locked(only)
        if sent is None:
            await _landed(earlier)
            return 0
        items, landing, gone = sent
        mine = asyncio.get_running_loop().create_future()
        self._landings.add(mine)
        try:
            if self.on_landed is not None and items:
                # Outside the lock: settling may remove dependents, which drops their
                # buffered writes, which waits for a flush in flight.
                landed = [(key, ttl) for key, _, ttl, _, _ in items if key not in gone]
                await self.on_landed(landed, landing.linked)
        finally:
            mine.set_result(None)
            self._landings.discard(mine)
        await _landed(earlier)
        return len(items)

    async def _flush_locked(
        self, only: Collection[str] | None
    ) -> tuple[list[Stamped], Landing, set[str]] | None:
        """The flush's send, under its lock: what it sent, its Landing and the keys dropped
        meanwhile; None when nothing was buffered."""
        l2 = self._ctx.l2
        assert l2 is not None
        if only is None:
            batch, self._buffer = self._buffer, {}
        else:
            batch = {key: self._buffer.pop(key) for key in only if key in self._buffer}
        if not batch:
            return None
        moved = sum(len(entry[0]) for entry in batch.values())
        self._in_flight_bytes, self._buffered_bytes = moved, self._buffered_bytes - moved
        self._in_flight = batch
        self._dropped_in_flight = set()
        now = self._ctx.clock()
        items: list[Stamped] = []
        for key, (data, expires_at, compress, stamp) in batch.items():
            left = expires_at - now
            if left > 0:
                ttl = None if math.isinf(left) else left
                items.append((key, data, ttl, compress, stamp))
        start = time.perf_counter()
        keys = [item[0] for item in items]
        landing = Landing() if self.landing_for is None else self.landing_for(keys)
        token = LANDING.set(landing)
        try:
            if items:
                await self._send(l2, items)
        except BaseException as exc:
            # Cancelled too (a shutdown, a caller's timeout): what did not land is put
            # back, never lost in between.
            self._report(start, len(items), ok=False)
            self._in_flight = {}
            self._in_flight_bytes = 0
            if isinstance(exc, Exception):
                self.flush_errors += 1
                # Writes leave flushing alone for a moment: while L2 is away, not
                # every write pays for a failing flush (and its put-back).
                self._retry_at = self._ctx.clock() + FLUSH_RETRY_AFTER
            # Put back what was not rewritten or dropped meanwhile, ahead of newer writes.
            gone = self._dropped_in_flight
            kept = {k: v for k, v in batch.items() if k not in self._buffer and k not in gone}
            self._buffer = {**kept, **self._buffer}
            self._buffered_bytes += sum(len(entry[0]) for entry in kept.values())
            raise
        finally:
            LANDING.reset(token)
        self._in_flight = {}
        self._in_flight_bytes = 0
        self._report(start, len(items), ok=True)
        self.flushes += 1
        self.flushed_items += len(items)
        return items, landing, self._dropped_in_flight

    async def _send(self, l2: GuardedTier, items: list[Stamped]) -> None:
        """``items`` to L2 in one batch; should L2 refuse the batch for what one entry holds,
        each alone, dropping (and logging) those it refuses: one bad entry must never hold
        back the others, flush after flush. A write L2 refused as older than what it holds
        did not land either: it is dropped as a deleted key's is (neither settled in the
        index, which would unlink the newer value's tags, nor put back)."""
        try:
            self._dropped_in_flight.update(await l2.set_many(items))
            return
        except InvalidValueError:
            pass
        for item in items:
            try:
                self._dropped_in_flight.update(await l2.set_many([item]))
            except InvalidValueError as exc:
                self._dropped_in_flight.add(item[0])  # never put back by a failed flush
                self.dropped += 1
                log.error("write_back_dropped", extra={"error": str(exc)})

    def _report(self, start: float, items: int, *, ok: bool) -> None:
        if self.on_flush is not None and items:
            self.on_flush(time.perf_counter() - start, items, ok)

    async def _flush_periodically(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._opts.flush_interval)
            if self._stopping.is_set():
                return
            try:
                await self.flush()
            except Exception as exc:  # the next tick retries; the buffer keeps the writes
                log.warning("write_back_flush_failed", extra={"error": repr(exc)})

    def describe(self) -> dict[str, object]:
        return {
            "pending": self.held_keys(),
            "pending_bytes": self._held_bytes,
            "flushes": self.flushes,
            "flushed_items": self.flushed_items,
            "flush_errors": self.flush_errors,
            "dropped": self.dropped,
        }

    def held_keys(self) -> int:
        # A flush that has not landed yet has not flushed its writes either.
        return len(self._buffer.keys() | self._in_flight.keys())

    @property
    def pending_count(self) -> int:
        return len(self._buffer)


async def _landed(landings: list[asyncio.Future[None]]) -> None:
    """Wait for earlier flushes' settling (shielded: a caller giving up cancels only its
    own wait)."""
    if landings:
        await asyncio.gather(*(asyncio.shield(landing) for landing in landings))
