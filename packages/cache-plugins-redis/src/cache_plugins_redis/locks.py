"""The Redis tier's fenced locks (``agent.lock``; cache_core.tiers.base.FencedLocks): each
operation one script, so a lock and its fencing token change together or not at all.

A lock is a key holding its holder's token, with the lease as its TTL. The token is the
engine's clock in microseconds, or one more than the name's last token when that is
larger: it grows with every acquisition, across instances (one clock decides), without a
counter kept forever per name. The last token is kept ``FENCE_KEEP`` seconds past the
lease, which covers the clock granting the same microsecond twice (a release and a new
acquisition within it); after that the clock alone has long passed it.

Both keys share a Cluster hash slot: they are the same up to and including a ``{tag}``
made of a digest of the name (hex: never empty, no braces of its own), so whichever braces
decide the slot, the prefix's or that tag, they decide it alike. The name itself follows,
readable, after the tag.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

FENCE_KEEP = 60.0
"""Seconds the last token of a name outlives its lease."""

_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 1 then return false end
local now = redis.call('time')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('get', KEYS[2]) or '0')
if last >= token then token = last + 1 end
local text = string.format('%d', token)
redis.call('set', KEYS[1], text, 'px', ARGV[1])
redis.call('set', KEYS[2], text, 'px', ARGV[2])
return text
"""
_EXTEND = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
redis.call('pexpire', KEYS[2], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('del', KEYS[1])
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class FencedLockScripts:
    """Acquire, extend and release on ``client`` for keys under ``base`` (the tier's
    prefix and index mark: lock keys are never cache keys, counted or swept)."""

    def __init__(self, client: Any, base: str) -> None:
        self._client = client
        self._base = base

    def _keys(self, name: str) -> tuple[str, str]:
        tag = blake2b(name.encode(), digest_size=8).hexdigest()
        lock = f"{self._base}lock{{{tag}}}:{name}"
        return lock, lock + "\x1ffence"

    async def acquire(self, name: str, lease: float) -> int | None:
        lock, fence = self._keys(name)
        token = await self._client.eval(
            _ACQUIRE, 2, lock, fence, _ms(lease), _ms(lease + FENCE_KEEP)
        )
        return None if token is None else int(token)

    async def extend(self, name: str, token: int, lease: float) -> bool:
        lock, fence = self._keys(name)
        done = await self._client.eval(
            _EXTEND, 2, lock, fence, str(token), _ms(lease), _ms(lease + FENCE_KEEP)
        )
        return bool(done)

    async def release(self, name: str, token: int) -> bool:
        lock, _ = self._keys(name)
        return bool(await self._client.eval(_RELEASE, 1, lock, str(token)))
