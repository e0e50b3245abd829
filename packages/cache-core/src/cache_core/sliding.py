"""Sliding expiry (Caffeine's ``expireAfterAccess``) for policies with ``sliding: true``:
every read of a matching key lets it live the policy's ``ttl`` again, in L1 at once and in
L2 within :data:`TOUCH_EVERY` seconds.

The L1 view is wrapped (:class:`SlidingView`) only when some policy slides, so an agent
without one reads exactly as before. A hit extends L1's entry in place; the L2 extension is
queued (:class:`Toucher`) and sent in the background, each key once per batch, so a hit
costs no round trip. A read that promotes from L2 counts as an access too. A sliding key's
TTL is its policy's: a write with a TTL of its own is extended by the policy's on its next
read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cache_core.errors import CacheError
from cache_core.etags import etag_of
from cache_core.policies import PolicyTable
from cache_core.tiers.base import LocalTier, TouchMany
from cache_core.tiers.guarded import GuardedTier

log = logging.getLogger("cache_core.sliding")

TOUCH_EVERY = 0.05
"""Seconds between the L2 extensions sent (each key at most once in them)."""
TOUCH_BATCH = 1000
"""Keys queued that send the batch at once rather than waiting."""


class Toucher:
    """The L2 extensions of sliding keys read, batched and sent in the background."""

    def __init__(self, l2: GuardedTier) -> None:
        inner = l2.inner
        assert isinstance(inner, TouchMany)
        self._l2 = l2
        self._touch_many = inner.touch_many
        self._pending: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None
        self.sent = 0
        """Extensions handed to L2 so far (for tests and introspection)."""

    def touch(self, key: str, ttl: float) -> None:
        self._pending[key] = ttl
        if len(self._pending) >= TOUCH_BATCH:
            self._send_now()
        elif self._timer is None and self._sending is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # read outside the loop (a sync caller): sent with the next
                return
            self._timer = loop.call_later(TOUCH_EVERY, self._send_now)

    def _send_now(self) -> None:
        self._timer = None
        if self._sending is not None or not self._pending:
            return  # the running send starts the next batch when it ends
        items, self._pending = list(self._pending.items()), {}
        self._sending = asyncio.get_running_loop().create_task(self._send(items))

    async def _send(self, items: Sequence[tuple[str, float]]) -> None:
        try:
            await self._l2.guarded("touch", {}, self._touch_many(items))
            self.sent += len(items)
        except CacheError as exc:  # L2 away: the entries expire on their old TTL there
            log.debug("touch_failed", extra={"keys": len(items), "error": str(exc)})
        finally:
            self._sending = None
            if self._pending and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(TOUCH_EVERY, self._send_now)

    async def close(self) -> None:
        """Send what is queued (bounded by L2's operation timeout), then stop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None:
            with contextlib.suppress(CacheError):
                await self._sending
        if self._pending:
            items, self._pending = list(self._pending.items()), {}
            await self._send(items)


class SlidingView:
    """An L1 view whose reads of sliding keys extend them (L1 now, L2 queued)."""

    def __init__(
        self,
        inner: LocalTier,
        policies: PolicyTable,
        l1_ttl: Callable[[float | None], float | None],
        toucher: Toucher | None,
    ) -> None:
        self.inner = inner
        self._match = policies.match
        self._l1_ttl = l1_ttl
        self._toucher = toucher
        self._touch_l1 = getattr(inner, "touch", None)
        self._tagged = getattr(inner, "tagged", None)

    def _ttl_of(self, key: str) -> float | None:
        policy = self._match(key)
        return policy.ttl if policy is not None and policy.sliding else None

    def _slide(self, key: str, ttl: float) -> None:
        if self._touch_l1 is not None:
            left = self._l1_ttl(ttl)
            if left is not None:
                self._touch_l1(key, left)
        if self._toucher is not None:
            self._toucher.touch(key, ttl)

    def get(self, key: str) -> bytes | None:
        data = self.inner.get(key)
        if data is not None and (ttl := self._ttl_of(key)) is not None:
            self._slide(key, ttl)
        return data

    def tagged(self, key: str) -> tuple[bytes, str, float | None] | None:
        found: tuple[bytes, str, float | None] | None
        if self._tagged is None:  # an L1 plugin without tags: its bytes digested each time
            data = self.inner.get(key)
            found = None if data is None else (data, etag_of(data), None)
        else:
            found = self._tagged(key)
        if found is not None and (ttl := self._ttl_of(key)) is not None:
            self._slide(key, ttl)
            return found[0], found[1], self._l1_ttl(ttl)
        return found

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        get_many = getattr(self.inner, "get_many", None)
        found = get_many(keys) if get_many is not None else [self.inner.get(k) for k in keys]
        for key, data in zip(keys, found, strict=True):
            if data is not None and (ttl := self._ttl_of(key)) is not None:
                self._slide(key, ttl)
        return found

    def set(self, key: str, data: bytes, ttl: float | None) -> bool:
        # A promotion from L2 is a read too; a write of a sliding key gets the policy's
        # TTL anyway (or is extended to it on its next read).
        sliding = self._ttl_of(key)
        if sliding is None:
            return self.inner.set(key, data, ttl)
        if self._toucher is not None:
            self._toucher.touch(key, sliding)
        return self.inner.set(key, data, self._l1_ttl(sliding))

    def set_many(self, items: Iterable[tuple[str, bytes, float | None]]) -> None:
        for key, data, ttl in items:
            self.set(key, data, ttl)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
