"""Change notices between instances sharing one Redis: what a write, delete or
invalidation publishes on ``<prefix>__coherence__``, and the subscriber that applies
other instances' notices to this instance's L1.

A notice is ``<instance id>\\n<kind>\\n<body>``: kind ``k`` with newline-separated keys,
``t`` with the key a sliding policy's read extended (nothing to drop: see tracking.py),
``p`` with a glob, or ``v`` with tags and their new versions
(cache_plugins_redis.tag_versions). The subscriber has a connection of its own, never
retried: a drop must be seen, since notices sent meanwhile are lost, so the listener is
told (``lost``) and L1 stops being served until the subscription is back (``restored``).
Where the engine takes it, the same connection also gets the engine's own invalidations
of every name under the prefix (cache_plugins_redis.tracking).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_core.tiers.base import CoherenceListener
from cache_plugins_redis.packing import pack
from cache_plugins_redis.tag_versions import TagVersions, parse_notice
from cache_plugins_redis.tracking import INVALIDATE, Tracking

log = logging.getLogger("cache_plugins_redis.coherence")

_INVALIDATE = INVALIDATE.encode()
SEP = "\n"  # keys never hold control characters (the agent refuses them)


def notice(instance: bytes, kind: bytes, body: str) -> bytes:
    """The notice ``instance`` publishes: ``kind`` ``k`` (keys, SEP-joined) or ``p`` (a glob)."""
    return b"\n".join((instance, kind, body.encode()))


class CoherenceSubscriber:
    """Listens on ``channel`` on a connection of its own (``connect`` opens one: see
    cache_plugins_redis.wire) and tells ``listener`` of every notice not sent by
    ``instance``. Notices are applied as the connection reads them, with no task woken a
    notice (a write's own notice comes back to its writer too: pub/sub has no "not to
    myself", so every write pays for reading one). A PING every ``health_interval``
    seconds (0: never) that gets no answer in ``reply_timeout`` counts as a drop (a peer
    gone without closing the connection sends nothing at all)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        channel: str,
        instance: bytes,
        *,
        health_interval: float,
        reply_timeout: float,
        tracking: Tracking | None = None,
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._instance = instance
        self._health_interval = health_interval
        self._reply_timeout = reply_timeout
        self.tracking = tracking
        """Tracking asked for (None: notices alone); ``tracking.active`` says whether the
        engine took it."""
        self._channels = 1
        self.listener: CoherenceListener | None = None
        self.versions: TagVersions | None = None
        self.on_restored: Callable[[], None] | None = None
        """Called when the subscription is back after a drop (not at the first start)."""
        self._dropped = False
        self.coherent = False
        self.notices_received = 0
        self.invalidations_received = 0
        """Tracking's invalidation messages that named anything to drop (or everything)."""
        self._pongs = 0
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    async def start(self, wait: float) -> None:
        """Subscribe in the background, waiting at most ``wait`` seconds for the first
        subscription (L1 is not served until it is)."""
        self._task = asyncio.create_task(self._subscribe_forever(), name="l2-coherence")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=wait)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.tracking is not None:
            self.tracking.close()
        self.coherent = False

    @property
    def coherence(self) -> str:
        """What keeps L1 coherent: ``tracking+notices`` or ``notices``."""
        tracking = self.tracking
        return "tracking+notices" if tracking is not None and tracking.active else "notices"

    async def _subscribe_forever(self) -> None:
        delay = 0.05
        while True:
            try:
                self._conn = conn = await self._connect()
                channels = [self.channel]
                # Before SUBSCRIBE: a RESP2 connection then takes subscriptions alone.
                if self.tracking is not None and await self.tracking.enable(
                    conn, self._reply_timeout
                ):
                    channels.append(INVALIDATE)
                self._channels = len(channels)
                conn.on_push = self._pushed
                conn.write([pack(["SUBSCRIBE", *channels])], 1)
                while True:
                    every = self._health_interval if self._health_interval > 0 else None
                    quiet = await _wait(conn.lost, every)
                    if quiet is not None:
                        raise quiet
                    pongs = self._pongs
                    conn.write([pack(["PING"])], 1)
                    lost = await _wait(conn.lost, self._reply_timeout)
                    if lost is not None:
                        raise lost
                    if self._pongs == pongs:
                        raise RedisTimeoutError(f"no answer to a PING in {self._reply_timeout} s")
                    if self.coherent:
                        delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_coherent(False)
                log.warning("l2_coherence_lost", extra={"error": repr(exc), "retry_in": delay})
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _pushed(self, reply: Any) -> None:
        """What the subscription's connection read: a notice, the subscription's answer,
        a PING's, or an error (the subscription is refused: a drop)."""
        conn = self._conn
        if conn is None or conn.closed:
            return  # (what was read with it, after it was given up)
        if isinstance(reply, list) and reply:
            kind = reply[0]
            try:
                if kind == b"message" and len(reply) == 3:
                    if reply[1] == _INVALIDATE:
                        self.invalidated(reply[2])
                    else:
                        self.handle(reply[2])
                elif kind == b"subscribe" and reply[2] == self._channels:
                    self._set_coherent(True)  # every channel's: nothing is missed from now on
                elif kind == b"pong":
                    self._pongs += 1
            except Exception:
                # A notice not applied: as if the subscription dropped (L1 is emptied).
                log.exception("l2_notice_failed")
                conn.close()
            return
        if isinstance(reply, Exception):
            log.warning("l2_coherence_refused", extra={"error": str(reply)})
            conn.close()

    def _set_coherent(self, up: bool) -> None:
        if up == self.coherent:
            return
        self.coherent = up
        if self.versions is not None:
            self.versions.forget()  # learned from notices that may have been missed
        if up:
            self._subscribed.set()
        else:
            self._subscribed.clear()
        if up and self._dropped and self.on_restored is not None:
            self.on_restored()
        self._dropped = self._dropped or not up
        if self.listener is not None:
            if up:
                self.listener.restored()
            else:
                self.listener.lost()

    def handle(self, data: bytes) -> None:
        """Apply one notice (one's own are ignored)."""
        sender, _, rest = data.partition(b"\n")
        if self.listener is None:
            return
        kind, _, body = rest.partition(b"\n")
        if kind == b"t":
            # Any instance's sliding extension: the value is unchanged, so nobody drops
            # it; tracking's report of the change comes next, and is spared.
            tracking = self.tracking
            if tracking is not None and tracking.active:
                with contextlib.suppress(UnicodeDecodeError):
                    tracking.credit(body.decode().split(SEP))
            return
        if sender == self._instance:
            tracking = self.tracking
            if kind == b"k" and tracking is not None and tracking.active:
                tracking.credit(body.decode().split(SEP))  # its echo is coming
            return
        self.notices_received += 1
        try:
            text = body.decode()
        except UnicodeDecodeError:
            # Not ours (our keys and patterns are text): anyone who may PUBLISH on the
            # channel could send it, and it must not cost every instance its L1.
            log.warning("l2_notice_ignored", extra={"detail": "not UTF-8"})
            return
        if kind == b"k":
            self.listener.keys_changed(text.split(SEP))
        elif kind == b"p":
            self.listener.pattern_changed(text)
        elif kind == b"v" and self.versions is not None:
            # Called even with no key held here: a read in flight must not promote.
            self.listener.keys_changed(self.versions.bumped(parse_notice(text)))

    def invalidated(self, names: list[bytes] | None) -> None:
        """Apply one of tracking's invalidation messages: the names changed under the
        prefix, or None when the engine was flushed (everything changed)."""
        assert self.tracking is not None
        if self.listener is None:
            return
        keys = self.tracking.invalidated(names)
        if keys is None:
            self.invalidations_received += 1
            log.warning("l2_flushed", extra={"detail": "the engine was flushed: L1 emptied"})
            if self.versions is not None:
                self.versions.forget()
            # As after a lost subscription: L1 starts empty and the write buffers contest
            # every write (any key may have been named).
            self.listener.restored()
        elif keys:
            self.invalidations_received += 1
            self.listener.keys_changed(keys)


async def _wait(lost: asyncio.Future[Exception], seconds: float | None) -> Exception | None:
    """Why the connection was lost, if it was within ``seconds`` (None: however long);
    else None."""
    try:
        return await asyncio.wait_for(asyncio.shield(lost), seconds)
    except TimeoutError:
        return None
