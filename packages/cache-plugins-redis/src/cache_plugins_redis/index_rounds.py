"""The round trips of the Redis index (index.py): the single-key scripts that change
its sorted sets, the changes of one pipeline, and a round that can be sent again.

Only single-key scripts and plain commands in non-transactional pipelines, so it all works on
Redis Cluster, keys in any slot.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

from cache_plugins_redis.scripts import FLOOR_PX

INF = "+inf"

UPDATE = """
local key, now = KEYS[1], tonumber(ARGV[1])
if ARGV[4] == '1' then redis.call('ZREMRANGEBYSCORE', key, '-inf', now) end
local before = {}
if ARGV[2] == '1' then before = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES') end
local removing = tonumber(ARGV[6])
for i = 7, 6 + removing do redis.call('ZREM', key, ARGV[i]) end
for i = 7 + removing, #ARGV, 2 do redis.call('ZADD', key, ARGV[3], ARGV[i], ARGV[i + 1]) end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
if ARGV[5] == '1' or last == 'inf' then
  redis.call('PERSIST', key)
elseif last then
  redis.call('PEXPIRE', key, string.format('%.0f', tonumber(last) - now))
end
return before
"""
"""KEYS[1] a sorted set; ARGV: now (ms, the writer's clock, as the scores are), whether to
return the live members (with scores) it held before, the ZADD flag (GT while recording:
an expiry only grows; XX while settling: exact, never re-adding what left), whether to trim
expired members, whether the set must carry no TTL (else it expires with its longest-lived
member), how many members to remove, those members, then score/member pairs to add. The
expiry is relative to ``now``, so the engine's clock need not agree with the writer's."""
UPDATE_SHA = hashlib.sha1(UPDATE.encode(), usedforsecurity=False).hexdigest()
DROP_EXPIRED = """
local cutoff, dropped = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  if score and score <= cutoff then dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return dropped
"""
"""KEYS[1] a sorted set; ARGV: a time (ms) and members: removes each member scored at or
before that time (not one written again since the sweep read it, with a later expiry)."""
DROP_EXPIRED_SHA = hashlib.sha1(DROP_EXPIRED.encode(), usedforsecurity=False).hexdigest()
DROP_VERSIONS = """
local dropped = 0
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local v = redis.call('GET', KEYS[i + 1])
    if v and #v > 16 then
      -- It holds an invalidation's floor: it stops older writes yet, for a while.
      local left = redis.call('PTTL', KEYS[i + 1])
      if left == -1 or left > FLOOR_PX then redis.call('PEXPIRE', KEYS[i + 1], FLOOR_PX) end
    elseif v then
      dropped = dropped + redis.call('DEL', KEYS[i + 1])
    end
  end
end
return dropped
"""
"""KEYS: pairs of a tag's set and its version key: drops each version whose set is gone
(no entry records it that is not stale already, or reads as such: a miss); one holding an
invalidation's floor expires within ``FLOOR_PX`` instead."""
DROP_VERSIONS = DROP_VERSIONS.replace("FLOOR_PX", str(FLOOR_PX))
DROP_VERSIONS_SHA = hashlib.sha1(DROP_VERSIONS.encode(), usedforsecurity=False).hexdigest()


def score_of(expires: float) -> str:
    return INF if expires == math.inf else str(int(expires))


class Updates:
    """Changes to index sorted sets, one :data:`UPDATE` call a set, for one pipeline."""

    def __init__(self, now: int, flag: str = "GT") -> None:
        self._now = now
        self._flag = flag
        self._add: dict[str, dict[str, float]] = {}
        self._remove: dict[str, set[str]] = {}

    def add(self, zset: str, member: str, expires: float) -> None:
        scores = self._add.setdefault(zset, {})
        scores[member] = max(expires, scores.get(member, -math.inf))

    def remove(self, zset: str, member: str) -> None:
        self._remove.setdefault(zset, set()).add(member)

    def __bool__(self) -> bool:
        return bool(self._add or self._remove)

    def queue(self, round_: Round) -> None:
        for zset in sorted(self._add.keys() | self._remove.keys()):
            removed = sorted(self._remove.get(zset, ()))
            pairs = [
                part
                for member, expires in self._add.get(zset, {}).items()
                for part in (score_of(expires), member)
            ]
            round_.update(zset, self._now, self._flag, removed, pairs)


class Round:
    """The commands of one round trip, kept so the round can be sent again: the script
    goes by its SHA, by its text only after the engine answered NOSCRIPT (it lost its
    script cache: a restart, a failover, SCRIPT FLUSH). With ``persist``, sets are left
    with no TTL and ``worklist`` is never trimmed (the sweep's: see index.py)."""

    def __init__(self, persist: bool = False, worklist: str | None = None) -> None:
        self._ops: list[Callable[[Any, bool], object]] = []
        self._persist = persist
        self._worklist = worklist

    def call(self, name: str, *args: Any, **kwargs: Any) -> None:
        self._ops.append(lambda pipe, _: getattr(pipe, name)(*args, **kwargs))

    def update(
        self,
        zset: str,
        now: int,
        flag: str,
        removed: Sequence[str] = (),
        pairs: Sequence[str] = (),
        *,
        read: bool = False,
    ) -> None:
        """Queue one :data:`UPDATE` of ``zset``."""
        trim = zset != self._worklist
        args = (now, int(read), flag, int(trim), int(self._persist), len(removed))
        self.script(UPDATE, UPDATE_SHA, zset, *args, *removed, *pairs)

    def script(self, text: str, sha: str, key: str | Sequence[str], *args: Any) -> None:
        """Queue one script (``text``, known to the engine as ``sha``) on ``key`` (or
        keys: those of one slot)."""
        keys = [key] if isinstance(key, str) else list(key)
        # execute_command: the cluster pipeline refuses its own evalsha().
        self._ops.append(
            lambda pipe, by_text: (
                pipe.execute_command("EVAL", text, len(keys), *keys, *args)
                if by_text
                else pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            )
        )

    def build(self, pipe: Any, text: bool) -> Any:
        for op in self._ops:
            op(pipe, text)
        return pipe


__all__ = [
    "DROP_EXPIRED",
    "DROP_EXPIRED_SHA",
    "DROP_VERSIONS",
    "DROP_VERSIONS_SHA",
    "INF",
    "Round",
    "Updates",
    "score_of",
]
