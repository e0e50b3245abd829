"""Server-assisted coherence: the engine's client-side caching (``CLIENT TRACKING ... BCAST
PREFIX <key_prefix>``) reporting every change of a name under the prefix, by any client,
to the coherence subscriber's connection.

The project's own notices (cache_plugins_redis.coherence) say what this project's
instances change; tracking adds what they cannot: a write by another client (a ``SET``
from a script or a console), ``FLUSHALL``/``FLUSHDB``, and an entry the engine expired or
evicted. Tracking is enabled on the subscriber's own connection, redirected to itself
(RESP2: the invalidations arrive as messages on ``__redis__:invalidate`` beside the
notices), so one connection carries both and its loss is one loss: L1 is bypassed until
it is back, then starts empty, as for the notices alone.

BCAST reports this instance's own writes too, and ``NOLOOP`` does not help: it spares
only writes made on the tracking connection itself, and a script's writes are the
script's, not its caller's (measured on Valkey 8.1: an EVAL on a NOLOOP connection is
reported to it). Dropping those echoes would cost every write its fresh L1 copy. So
an echo is recognised by the instance's own notice: a write's script publishes it while
it runs, and the engine sends the invalidations of the event-loop turn the script ran in
after it (BCAST invalidations are batched per turn, sent as the turn ends), on the same
connection, so the notice comes first. The keys an own notice names are spared by the
next invalidation message, and by none after it nor after the read that brought them
(:meth:`Tracking.credit`): a turn that changed nothing under the prefix (every write of
the unit refused as older) must not leave a credit behind to swallow a later change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from redis.exceptions import ResponseError

from cache_plugins_redis.packing import pack

log = logging.getLogger("cache_plugins_redis.tracking")

INVALIDATE = "__redis__:invalidate"
"""The channel a RESP2 connection gets tracking's invalidations on."""


class TrackingRefusedError(Exception):
    """The engine refused ``CLIENT TRACKING`` (a server older than 6, an ACL without it)."""


class Tracking:
    """Tracking for the names under ``prefix`` (bytes), those starting with ``index_start``
    (the project's invalidation indexes: no cache key) left out. ``mode``: ``auto`` uses
    tracking where the engine takes it, notices alone where it refuses; ``on`` counts a
    refusal as a lost subscription (L1 is not served without tracking)."""

    def __init__(self, prefix: bytes, index_start: bytes, mode: str) -> None:
        if mode not in ("auto", "on"):
            raise ValueError(f"tracking mode {mode!r}: expected auto or on")
        self._prefix = prefix
        self._index_start = index_start
        self.mode = mode
        self.active = False
        """Whether the current (or last) subscription has tracking on."""
        self._credits: set[bytes] = set()
        self._clearing: asyncio.Handle | None = None
        self._told = False

    async def enable(self, conn: Any, timeout: float) -> bool:
        """Turn tracking on for ``conn`` (not yet subscribed), redirected to itself;
        whether it is on. A refusal in mode ``on`` raises TrackingRefusedError."""
        loop = asyncio.get_running_loop()

        async def ask(*command: Any) -> Any:
            reply: asyncio.Future[Any] = loop.create_future()
            conn.send(pack(command), reply, 1)
            return await asyncio.wait_for(reply, timeout)

        try:
            own_id = await ask("CLIENT", "ID")
            tracking = ("CLIENT", "TRACKING", "on", "REDIRECT", own_id, "BCAST")
            await ask(*tracking, "PREFIX", self._prefix)
        except ResponseError as exc:
            if self.active or not self._told:  # once, not at every reconnect
                self._told = True
                log.warning("l2_tracking_unavailable", extra={"error": str(exc), "mode": self.mode})
            self.active = False
            if self.mode == "on":
                raise TrackingRefusedError(f"CLIENT TRACKING refused: {exc}") from exc
            return False
        self._credits.clear()
        self.active = True
        return True

    def credit(self, keys: Iterable[str]) -> None:
        """This instance's own notice named ``keys``: spare them in the next invalidation,
        which reports the very writes that published it (unless it comes in a later read:
        then they are dropped, a copy lost, never a change missed for long)."""
        prefix = self._prefix
        self._credits.update(prefix + key.encode() for key in keys)
        if self._clearing is None:
            # Runs once the current read's replies are handled, before the next read.
            self._clearing = asyncio.get_running_loop().call_soon(self._clear)

    def _clear(self) -> None:
        self._clearing = None
        self._credits.clear()

    def invalidated(self, names: list[bytes] | None) -> list[str] | None:
        """The cache keys one invalidation message names (None: everything, a FLUSHALL or
        FLUSHDB), this instance's echoes, index keys and names that are not UTF-8 (not
        ours) left out."""
        if names is None:
            self._credits.clear()
            return None
        credits, self._credits = self._credits, set()
        start = len(self._prefix)
        index = self._index_start
        keys = []
        for name in names:
            if name in credits or name.startswith(index) or not name.startswith(self._prefix):
                continue
            try:
                keys.append(name[start:].decode())
            except UnicodeDecodeError:
                continue
        return keys

    def close(self) -> None:
        if self._clearing is not None:
            self._clearing.cancel()
            self._clearing = None
        self._credits.clear()


__all__ = ["INVALIDATE", "Tracking", "TrackingRefusedError"]
