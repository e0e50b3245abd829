"""Change notices between instances sharing one Redis: what a write, delete or
invalidation publishes on ``<prefix>__coherence__``, and the subscriber that applies
other instances' notices to this instance's L1.

A notice is ``<instance id>\\n<kind>\\n<body>``: kind ``k`` with newline-separated keys,
``p`` with a glob, or ``v`` with tags and their new versions
(cache_plugins_redis.tag_versions). The subscriber has a connection of its own that the
client never retries: a drop must be seen, since notices sent meanwhile are lost, so the
listener is told (``lost``) and L1 stops being served until the subscription is back
(``restored``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from cache_core.tiers.base import CoherenceListener
from cache_plugins_redis.tag_versions import TagVersions, parse_notice

log = logging.getLogger("cache_plugins_redis.coherence")

SEP = "\n"  # keys never hold control characters (the agent refuses them)


def notice(instance: bytes, kind: bytes, body: str) -> bytes:
    """The notice ``instance`` publishes: ``kind`` ``k`` (keys, SEP-joined) or ``p`` (a glob)."""
    return b"\n".join((instance, kind, body.encode()))


class CoherenceSubscriber:
    """Listens on ``channel`` through ``client`` (a client of its own, never retried) and
    tells ``listener`` of every notice not sent by ``instance``."""

    def __init__(self, client: Any, channel: str, instance: bytes) -> None:
        self.client = client
        self.channel = channel
        self._instance = instance
        self.listener: CoherenceListener | None = None
        self.versions: TagVersions | None = None
        self.on_restored: Callable[[], None] | None = None
        """Called when the subscription is back after a drop (not at the first start)."""
        self._dropped = False
        self.coherent = False
        self.notices_received = 0
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
        with contextlib.suppress(Exception):
            await self.client.aclose()
        self.coherent = False

    async def _subscribe_forever(self) -> None:
        delay = 0.05
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "subscribe":
                        self._set_coherent(True)
                        delay = 0.05
                    elif kind == "message":
                        self.handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_coherent(False)
                log.warning("l2_coherence_lost", extra={"error": repr(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

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
        if sender == self._instance or self.listener is None:
            return
        self.notices_received += 1
        kind, _, body = rest.partition(b"\n")
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
