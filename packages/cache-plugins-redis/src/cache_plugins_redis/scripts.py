"""The server-side scripts of the Redis tier: one write or delete is one of them, so its
values, its coherence notice and (where the invalidation index lives in the same Redis)
the check of what the index holds for its keys apply together or not at all.

Each is loaded at start and sent by SHA (EVALSHA); an engine that forgot it (NOSCRIPT: a
SCRIPT FLUSH, a restart, a failover) gets its text once (EVAL) and keeps it. Outside
Cluster one call takes many keys; in Cluster one key a call (keys of one call must share a
slot), with the notice published beside the calls and the index checked by the index
itself (see :class:`LinkWatch`).
"""

from __future__ import annotations

import hashlib

from attrs import frozen


@frozen
class LinkWatch:
    """Where the invalidation index of the same Redis (cache_plugins_redis.index) keeps what
    makes a key "linked": its meta (links of its own: ``meta_prefix`` + key), the sorted set
    of keys others depend on, the one of keys with runtime registrations, and the sets of
    each key's dependents (``deps_prefix`` + key, sorted by expiry) and registered
    dependents (``reg_prefix`` + key). Given to the tier by the index, so a write or delete
    reports, from inside its own script, which of its keys the index holds anything for
    (cache_core.links.Landing), and removes what depended on their old values there too."""

    meta_prefix: str
    sources: str
    registered: str
    deps_prefix: str
    reg_prefix: str

    @property
    def prefixes(self) -> tuple[str, str, str]:
        return self.meta_prefix, self.deps_prefix, self.reg_prefix


CASCADE_LIMIT = 1000
"""Dependents one script call removes at most: a call holds the engine for its whole run.
Beyond it the call says so, and the rest go the way every removal goes (the index's lookup
of dependents, then their delete), in more round trips."""

_LINKED = """
local function linked(i, n, now, skip)
  local key = string.sub(KEYS[i], skip + 1)
  if redis.call('EXISTS', KEYS[n + i]) == 1 then return true end
  if redis.call('ZSCORE', KEYS[2 * n + 2], key) then return true end
  local source = redis.call('ZSCORE', KEYS[2 * n + 1], key)
  return source and (source == 'inf' or tonumber(source) > now)
end
local function live(score, now)
  return score and (score == 'inf' or tonumber(score) > now)
end
local function announce(channel, removed)
  if channel ~= '' and #removed > 0 then
    redis.call('PUBLISH', channel, '\\nk\\n' .. table.concat(removed, '\\n'))
  end
end
local function cascade(roots, n, now, skip, at, limit, channel)
  local prefix = string.sub(KEYS[1], 1, skip)
  local meta, deps, reg = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  if #roots == 0 then return {}, false end
  local seen, visited, removed, queue = {}, {}, {}, {}
  for i = 1, n do seen[string.sub(KEYS[i], skip + 1)] = true end
  for _, root in ipairs(roots) do queue[#queue + 1] = root end
  while #queue > 0 and #visited < limit do
    local source = table.remove(queue)
    local found = redis.call('ZRANGEBYSCORE', deps .. source, now, '+inf')
    for _, key in ipairs(redis.call('SMEMBERS', reg .. source)) do found[#found + 1] = key end
    for _, key in ipairs(found) do
      if not seen[key] and #visited < limit then
        local edge = redis.call('ZSCORE', meta .. key, 'd:' .. source)
        if live(edge, now) or redis.call('SISMEMBER', reg .. source, key) == 1 then
          seen[key] = true
          visited[#visited + 1] = key
          queue[#queue + 1] = key
          if redis.call('UNLINK', prefix .. key) == 1 then removed[#removed + 1] = key end
        end
      end
    end
  end
  announce(channel, visited)
  return removed, #queue > 0
end
"""
"""``linked``: whether entry ``i`` of ``n`` (KEYS[i], its meta KEYS[n + i], the sources set
KEYS[2n + 1] and the registered set KEYS[2n + 2]) has links, live dependents (a source
scored by their expiry, in ms of the writers' clock) or registrations. ``cascade``: unlinks
what depends on ``roots`` (a dependent whose meta still names the edge, or a registered
one), transitively, cycle-safe, sparing the call's own entries, at most ``limit`` of them,
and announces them all (in a notice of no sender, which every instance applies, the writer
too: an L1 may hold a copy of a key L2 lost); the index prefixes come from ARGV[at],
ARGV[at + 1], ARGV[at + 2]. Returns those it found stored and whether more were left."""

SET_UNLESS_NEWER = (
    _LINKED
    + """
local function before(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local horizon, n, channel, notice = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local now, skip, limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local out, found, roots = {}, {}, {}
for i = 1, n do
  local frame, px = ARGV[9 + 2 * i], ARGV[10 + 2 * i]
  local stored = redis.pcall('GETRANGE', KEYS[i], 0, 18)
  local kept = nil
  if type(stored) == 'string' and #stored == 19 and string.byte(stored, 1) == 202
      and string.byte(stored, 2) >= 3 then
    kept = string.sub(stored, 12, 19)
    if before(kept, string.sub(frame, 12, 19)) or before(horizon, kept) then kept = nil end
  end
  if kept then
    out[i] = kept
  else
    if px == '' then
      redis.call('SET', KEYS[i], frame)
    else
      redis.call('SET', KEYS[i], frame, 'PX', px)
    end
    out[i] = 1
    if now and linked(i, n, now, skip) then
      found[#found + 1] = i
      roots[#roots + 1] = string.sub(KEYS[i], skip + 1)
    end
  end
end
if channel ~= '' then redis.call('PUBLISH', channel, notice) end
if now then
  local removed, more = cascade(roots, n, now, skip, 8, limit, channel)
  out[n + 1] = found
  out[n + 2] = removed
  out[n + 3] = more and 1 or 0
end
return out
"""
)
"""KEYS: the n entries, then (when watching links) their n meta keys, the sources set and
the registered set. ARGV: the horizon (8 bytes), n, the coherence channel ('' to publish
nothing) and notice, now in ms ('' when not watching), the prefix's length, the cascade's
limit, the meta, deps and reg prefixes, then each entry's new frame and PX in ms ('' for
none).

Stores each frame unless the stored one (of format 3 or later: magic 0xCA at byte 0, its
format at 1) carries a stamp (bytes 11-18, big-endian, compared byte by byte: Lua's numbers
cannot hold 64 bits, its string order follows the locale) at least the new one's and at most
the horizon; returns, per entry, 1 when it stored, else the stamp that stays, and, when
watching, three more: the (1-based) entries stored whose key is linked, the dependents of
their old values it removed (announced in a notice of no sender, which every instance
applies, the writer too) and whether the cascade stopped at its limit. GETRANGE reads
the header alone, never a large value; under pcall, so another client's key of another type
is replaced, as SET replaces it."""
SET_UNLESS_NEWER_SHA = hashlib.sha1(SET_UNLESS_NEWER.encode(), usedforsecurity=False).hexdigest()

DELETE = (
    _LINKED
    + """
local n, channel, notice = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local now, skip, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local existed, found, roots = {}, {}, {}
for i = 1, n do
  existed[i] = redis.call('UNLINK', KEYS[i])
  if now and linked(i, n, now, skip) then
    found[#found + 1] = i
    roots[#roots + 1] = string.sub(KEYS[i], skip + 1)
  end
end
if channel ~= '' then redis.call('PUBLISH', channel, notice) end
local removed, more = {}, false
if now then
  removed, more = cascade(roots, n, now, skip, 7, limit, channel)
end
return {existed, found, removed, more and 1 or 0}
"""
)
"""KEYS as :data:`SET_UNLESS_NEWER`'s; ARGV: n, the channel and notice, now ('' when not
watching), the prefix's length, the cascade's limit and the meta, deps and reg prefixes.
Unlinks each entry; returns whether each existed (1 or 0), and, when watching, the
(1-based) entries whose key is linked, the dependents it removed (announced as the set
script's are) and whether the cascade stopped at its limit."""
DELETE_SHA = hashlib.sha1(DELETE.encode(), usedforsecurity=False).hexdigest()

SCRIPTS = (SET_UNLESS_NEWER, DELETE)
"""Loaded at start, on every primary."""

SCRIPT_BATCH = 100
SCRIPT_BATCH_BYTES = 1024 * 1024
"""Entries, and bytes of frames, per call of a script at most (an entry larger than the
bytes alone goes alone): a call holds the engine for its whole run, a pipeline of single
commands lets other clients in between."""
