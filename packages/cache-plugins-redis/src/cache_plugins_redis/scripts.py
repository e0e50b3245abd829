"""The server-side scripts of the Redis tier: one write or delete is one call of one of
them, so its values, its coherence notice and (where the invalidation index lives in the
same Redis, outside Cluster) its index changes and the removal of what depended on the old
values apply together or not at all.

Each is loaded at start and sent by SHA (EVALSHA); an engine that forgot it (NOSCRIPT: a
SCRIPT FLUSH, a restart, a failover) gets its text once (EVAL) and keeps it. Outside
Cluster one call takes many keys; in Cluster one key a call (keys of one call must share a
slot), with the notice published beside the calls and the index kept by the index's own
round trips (cache_plugins_redis.index).

The index layout is the index's (index.py's docstring): under ``base`` (the prefix and
``\\x1f``), ``links:KEY`` (KEY's links ``t:TAG`` and ``d:DEP``, scored by its expiry in ms
of the writers' clock), ``tag:TAG``, ``deps:KEY``, ``indexed`` and ``sources`` (keys scored
by their expiry), ``reg:KEY`` and ``registered`` (runtime registrations). A call names the
entries' metas, ``sources`` and ``registered`` in KEYS and reaches the other index sets by
name from ``base``: a standalone server runs that; Cluster never gets such a call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from attrs import frozen

from cache_core.frames import TOMBSTONE_TTL

TAG_LINK = "t:"
DEP_LINK = "d:"


def link_names(tags: Iterable[str], dependencies: Iterable[str]) -> list[str]:
    """The meta members of an entry carrying ``tags`` and depending on ``dependencies``."""
    return sorted({*(TAG_LINK + t for t in tags if t), *(DEP_LINK + d for d in dependencies if d)})


@frozen
class LinkWatch:
    """The invalidation index kept in the tier's Redis, as its scripts need it: given to
    the tier by the index (cache_plugins_redis.index), so a write or delete made under a
    :class:`~cache_core.links.Landing` reports which of its keys the index holds anything
    for, keeps the index of what it writes or deletes in the same step, and removes what
    depended on the old values there too. ``persist``: whether index keys must carry no
    TTL now (the server may evict keys that carry one: see memory_policy.py)."""

    base: str
    persist: Callable[[], bool]

    def names(self, keys: Sequence[str]) -> list[str]:
        """The KEYS a call of ``keys`` adds: their metas, then ``sources`` and
        ``registered``."""
        meta = self.base + "links:"
        return [*(meta + key for key in keys), self.base + "sources", self.base + "registered"]


CASCADE_LIMIT = 1000
"""Dependents one script call removes at most: a call holds the engine for its whole run.
Beyond it the call says so, and the rest go the way every removal goes (the index's lookup
of dependents, then their delete), in more round trips."""

_INDEX = """
local base, persist = ARGV[W + 3], ARGV[W + 4] == '1'
local meta, tag, deps, reg = base .. 'links:', base .. 'tag:', base .. 'deps:', base .. 'reg:'
local indexed, sources = base .. 'indexed', base .. 'sources'
local function before(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local tomb, tomb_px, tomb_horizon = '', '', ''
local function remove(name)
  if tomb == '' then return redis.call('UNLINK', name) end
  local found = redis.call('EXISTS', name)
  if found == 1 then
    local stored = redis.pcall('GETRANGE', name, 0, 18)
    if type(stored) == 'string' and #stored == 19 and string.byte(stored, 1) == 202
        and string.byte(stored, 2) >= 3 then
      local kept = string.sub(stored, 12, 19)
      if not before(kept, string.sub(tomb, 12, 19)) and not before(tomb_horizon, kept) then
        return -1
      end
      if string.byte(stored, 3) == 255 then found = 0 end
    end
  end
  local set = redis.pcall('SET', name, tomb, 'PX', tomb_px)
  if type(set) == 'table' and set.err then redis.call('UNLINK', name) end
  return found
end
local function live(score, now)
  return score and (score == 'inf' or tonumber(score) > now)
end
local function linked(i, n, now, skip)
  local key = string.sub(KEYS[i], skip + 1)
  if redis.call('EXISTS', KEYS[n + i]) == 1 then return true end
  if redis.call('ZSCORE', KEYS[2 * n + 2], key) then return true end
  return live(redis.call('ZSCORE', KEYS[2 * n + 1], key), now)
end
local function set_of(link)
  if string.sub(link, 1, 2) == 't:' then return tag .. string.sub(link, 3) end
  return deps .. string.sub(link, 3)
end
local function fit(set, now, trim)
  if trim then redis.call('ZREMRANGEBYSCORE', set, '-inf', now) end
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')[2]
  if persist or last == 'inf' then
    redis.call('PERSIST', set)
  elseif last then
    redis.call('PEXPIRE', set, string.format('%.0f', tonumber(last) - now))
  end
end
local function forget(key)
  for _, link in ipairs(redis.call('ZRANGE', meta .. key, 0, -1)) do
    redis.call('ZREM', set_of(link), key)
  end
  redis.call('DEL', meta .. key)
  redis.call('ZREM', indexed, key)
end
local function index(key, links, expires, now)
  local keep = {}
  for _, link in ipairs(links) do keep[link] = true end
  local old = redis.call('ZRANGE', meta .. key, 0, -1)
  if #old == 0 and #links == 0 then return end
  for _, link in ipairs(old) do
    if not keep[link] then redis.call('ZREM', set_of(link), key) end
  end
  if #old > 0 then redis.call('DEL', meta .. key) end
  if #links == 0 then
    redis.call('ZREM', indexed, key)
    return
  end
  local depends = false
  for _, link in ipairs(links) do
    redis.call('ZADD', meta .. key, expires, link)
    local set = set_of(link)
    redis.call('ZADD', set, expires, key)
    fit(set, now, true)
    if string.sub(link, 1, 2) == 'd:' then
      redis.call('ZADD', sources, 'GT', expires, string.sub(link, 3))
      depends = true
    end
  end
  fit(meta .. key, now, true)
  redis.call('ZADD', indexed, expires, key)
  fit(indexed, now, not persist)
  if depends then fit(sources, now, true) end
end
local tv = base .. 'tv:'
local function u32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end
local function recorded(name)
  local head = redis.pcall('GETRANGE', name, 0, 22)
  if type(head) ~= 'string' or #head < 23 or string.byte(head, 1) ~= 202
      or string.byte(head, 2) ~= 4 then
    return {}, {}
  end
  local a, b, c, d = string.byte(head, 20, 23)
  local notes = redis.call('GETRANGE', name, 23, 22 + ((a * 256 + b) * 256 + c) * 256 + d)
  local tags, versions, at = {}, {}, 1
  while at + 1 <= #notes do
    local len = string.byte(notes, at) * 256 + string.byte(notes, at + 1)
    local t = string.sub(notes, at + 2, at + 1 + len)
    tags[#tags + 1] = t
    versions[t] = string.sub(notes, at + 2 + len, at + 17 + len)
    at = at + 18 + len
  end
  return tags, versions
end
local function version_of(tag, px)
  local name = tv .. tag
  local v = redis.call('GET', name)
  local floor = nil
  if v and #v >= 24 then floor = string.sub(v, 17, 24) end
  if v then v = string.sub(v, 1, 16) end
  if not v then
    local t = redis.call('TIME')
    v = string.format('%016x', tonumber(t[1]) * 1000000 + tonumber(t[2]))
    if px == '' or persist then
      redis.call('SET', name, v)
    else
      redis.call('SET', name, v, 'PX', px)
    end
  elseif px == '' or persist then
    redis.call('PERSIST', name)
  else
    local left = redis.call('PTTL', name)
    if left >= 0 and left < tonumber(px) then redis.call('PEXPIRE', name, px) end
  end
  return v, floor
end
local function annotate(frame, links, px, prefix)
  if #frame < 19 or string.byte(frame, 1) ~= 202 or string.byte(frame, 2) ~= 3 then
    return frame, {}
  end
  local tags, seen = {}, {}
  local function add(t)
    if not seen[t] then
      seen[t] = true
      tags[#tags + 1] = t
    end
  end
  for _, link in ipairs(links) do
    local kind, name = string.sub(link, 1, 2), string.sub(link, 3)
    if kind == 't:' and string.sub(name, 1, 5) ~= '\\30src:' then
      -- (a source tag is walked, never bumped: cache_plugins_invalidation.categories)
      add(name)
    elseif kind == 'd:' then
      local tags = recorded(prefix .. name)
      for _, t in ipairs(tags) do add(t) end
    end
  end
  if #tags == 0 then return frame, tags end
  table.sort(tags)
  local parts, stamp = {}, string.sub(frame, 12, 19)
  for i, t in ipairs(tags) do
    local v, floor = version_of(t, px)
    if floor and before(stamp, floor) then return nil, tags, floor end
    parts[i] = string.char(math.floor(#t / 256) % 256, #t % 256) .. t .. v
  end
  local notes = table.concat(parts)
  return string.sub(frame, 1, 1) .. '\\4' .. string.sub(frame, 3, 19) .. u32(#notes) .. notes
    .. string.sub(frame, 20), tags
end
local function announce(channel, keys)
  if channel ~= '' and #keys > 0 then
    redis.call('PUBLISH', channel, '\\nk\\n' .. table.concat(keys, '\\n'))
  end
end
local function cascade(roots, n, now, skip, limit, channel, exact)
  if #roots == 0 then return {}, false, {} end
  local prefix = string.sub(KEYS[1], 1, skip)
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
          if remove(prefix .. key) == 1 then removed[#removed + 1] = key end
        end
      end
    end
  end
  if exact then
    for _, key in ipairs(visited) do forget(key) end
  end
  announce(channel, visited)
  return removed, #queue > 0, visited
end
"""
"""What the scripts share (``W`` is where their watch arguments start: now, the prefix's
length, the cascade's limit, ``base``, persist, exact).

``remove``: an entry unlinked, or replaced by the call's tombstone (see :data:`DELETE`).
``linked``: whether entry ``i`` of ``n`` (KEYS[i], its meta KEYS[n + i], ``sources``
KEYS[2n + 1], ``registered`` KEYS[2n + 2]) has links, live dependents or registrations.
``index``: the key's links become exactly ``links`` (those it no longer carries leave their
sets), each set trimmed of what expired and expiring with its longest-lived member, or
with none while the server may evict keys with a TTL; it sends no write command when there
is nothing to change (the first write command of a script is the one a full engine
refuses: after it, the engine lets the rest through, so a plain write must reach its SET
first). ``forget``: the key leaves the index.
``cascade``: unlinks what depends on ``roots`` (a dependent whose meta still names the
edge, or a registered one), transitively, cycle-safe, sparing the call's own entries, at
most ``limit`` of them; forgets them too when ``exact``; announces them all in a notice of
no sender, which every instance applies, the writer too (an L1 may hold a copy of a key L2
lost). Returns those it found stored, whether more were left, and all it reached (a
dependent held only in a write buffer has no entry in L2, and its writer must still drop
it)."""

SET_UNLESS_NEWER = _INDEX.replace("W + ", "5 + ") + (
    """
local horizon, n, channel, notice = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local now, skip, limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local exact = ARGV[10] == 'x'
tomb, tomb_px, tomb_horizon = ARGV[11], ARGV[12], horizon
local out, found, roots, store, versioned, at = {}, {}, {}, {}, {}, 13
for i = 1, n do
  local frame, px = ARGV[at], ARGV[at + 1]
  at = at + 2
  local links, plain = {}, false
  if now and not exact then
    plain = ARGV[at] == '1'
    at = at + 1
  end
  if exact then
    local count = tonumber(ARGV[at])
    for j = 1, count do links[j] = ARGV[at + j] end
    at = at + count + 1
  end
  local stored = redis.pcall('GETRANGE', KEYS[i], 0, 18)
  local kept = nil
  if type(stored) == 'string' and #stored == 19 and string.byte(stored, 1) == 202
      and string.byte(stored, 2) >= 3 then
    kept = string.sub(stored, 12, 19)
    if before(kept, string.sub(frame, 12, 19)) or before(horizon, kept) then kept = nil end
  end
  local key = string.sub(KEYS[i], skip + 1)
  local is_linked, tags, invalidated = false, {}, false
  if not kept and now then
    is_linked = linked(i, n, now, skip)
    local carried = links
    if not exact then
      carried = (is_linked and not plain) and redis.call('ZRANGE', KEYS[n + i], 0, -1) or {}
    end
    local written, floor = frame, nil
    frame, tags, floor = annotate(frame, carried, px, string.sub(KEYS[i], 1, skip))
    if floor then
      -- Stamped before one of its tags was last invalidated: it replaced what is stored
      -- (older still), then the invalidation removed it. A tombstone with its stamp takes
      -- the place, as a delete's would: the older value must not come back. The writer
      -- hears it refused (the floor is what stays): it did not land, nor may its L1 copy.
      invalidated = floor
      frame, px, tags = string.sub(tomb, 1, 11) .. string.sub(written, 12, 19), tomb_px, {}
    end
  end
  if kept then
    out[i] = kept
  else
    out[i] = invalidated or 1
    if is_linked then
      found[#found + 1] = i
      roots[#roots + 1] = key
    end
    if #tags > 0 then versioned[#versioned + 1] = {key, unpack(tags)} end
    store[#store + 1] = {KEYS[i], frame, px}
    if invalidated then
      if exact then forget(key) end
    elseif exact then
      local expires = px == '' and '+inf' or string.format('%.0f', now + tonumber(px))
      index(key, links, expires, now)
    end
  end
end
local removed, more, reached = {}, false, {}
if now then removed, more, reached = cascade(roots, n, now, skip, limit, channel, exact) end
for _, entry in ipairs(store) do
  if entry[3] == '' then
    redis.call('SET', entry[1], entry[2])
  else
    redis.call('SET', entry[1], entry[2], 'PX', entry[3])
  end
end
if channel ~= '' then redis.call('PUBLISH', channel, notice) end
if now then
  out[n + 1] = found
  out[n + 2] = removed
  out[n + 3] = more and 1 or 0
  out[n + 4] = reached
  out[n + 5] = versioned
end
return out
"""
)
"""KEYS: the n entries, then (when watching links) their n metas, ``sources`` and
``registered``. ARGV: the horizon (8 bytes), n, the coherence channel ('' to publish
nothing) and notice; then now in ms ('' when not watching), the prefix's length, the
cascade's limit, ``base``, persist ('1'), exact ('x': keep the index of what it stores),
the tombstone the dependents it removes get ('' to unlink them: see :data:`DELETE`) and
its PX; then per entry its new frame and PX in ms ('' for none), and when exact the count
of its links and the links (``t:TAG``, ``d:DEP``), else when watching whether it carries
no links ('1': its meta may still list the old value's).

When watching, an entry that carries tags (its links', else its meta's, and those recorded
by the entries it depends on) is stored annotated with their current versions, made where
a tag has none (cache_plugins_redis.tag_versions); the reply's fifth extra lists, per such
entry, its key and tags.

Stores each frame unless the stored one (of format 3 or later: magic 0xCA at byte 0, its
format at 1) carries a stamp (bytes 11-18, big-endian, compared byte by byte: Lua's numbers
cannot hold 64 bits, its string order follows the locale) at least the new one's and at most
the horizon; a refused entry's index is left as the newer value's write made it. The index
and the cascade go first, the values after: should an index key hold another client's key
of another type (WRONGTYPE, which stops the script where it stands), no value has been
stored without its links. Returns,
per entry, 1 when it stored, else the stamp that stays (a write stamped before one of its
tags' floor: the floor, its tombstone stored), and, when watching, four more: the
(1-based) entries stored whose key was linked, the dependents of their old values it
removed, whether the cascade stopped at its limit, and every dependent it reached.
GETRANGE reads the header alone,
never a large value; under pcall, so another client's key of another type is replaced, as
SET replaces it."""
SET_UNLESS_NEWER_SHA = hashlib.sha1(SET_UNLESS_NEWER.encode(), usedforsecurity=False).hexdigest()

DELETE = _INDEX.replace("W + ", "4 + ") + (
    """
local n, channel, notice = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local now, skip, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local exact = ARGV[9] == 'x'
tomb, tomb_px, tomb_horizon = ARGV[10], ARGV[11], ARGV[12]
local existed, found, roots = {}, {}, {}
for i = 1, n do
  existed[i] = remove(KEYS[i])
  if existed[i] >= 0 and now and linked(i, n, now, skip) then
    found[#found + 1] = i
    roots[#roots + 1] = string.sub(KEYS[i], skip + 1)
    if exact then forget(roots[#roots]) end
  end
end
if channel ~= '' then redis.call('PUBLISH', channel, notice) end
local removed, more, reached = {}, false, {}
if now then removed, more, reached = cascade(roots, n, now, skip, limit, channel, exact) end
return {existed, found, removed, more and 1 or 0, reached}
"""
)
"""KEYS as :data:`SET_UNLESS_NEWER`'s; ARGV: n, the channel and notice, the watch
arguments as its, then a tombstone ('' to unlink), its PX and the horizon. Removes each
entry (when exact, the linked ones leave the index too): with a tombstone, puts it in the
entry's place unless the stored frame carries a stamp at least the tombstone's and at most
the horizon (a newer write stays: -1), and unlinks instead where the engine is full; the
dependents it removes go the same way. Returns, per entry, 1 when a live entry was
removed, 0 when none was there (or a tombstone), -1 when a newer one stayed; and, when
watching, the (1-based) entries whose key was linked, the dependents it removed, whether
the cascade stopped at its limit and every dependent it reached."""
DELETE_SHA = hashlib.sha1(DELETE.encode(), usedforsecurity=False).hexdigest()

UNLINK_LIVE = """
local head = redis.pcall('GETRANGE', KEYS[1], 0, 18)
if type(head) == 'string' and #head == 19 and string.byte(head, 1) == 202
    and string.byte(head, 3) == 255 then
  return 0
end
return redis.call('UNLINK', KEYS[1])
"""
"""KEYS[1]: a name a pattern sweep found. Unlinks it (1 when it existed) unless it is a
delete's tombstone, which stays (0): a sweep must not open the way for the writes the
delete refused."""
UNLINK_LIVE_SHA = hashlib.sha1(UNLINK_LIVE.encode(), usedforsecurity=False).hexdigest()

FLOOR_PX = round(TOMBSTONE_TTL * 1000)
"""How long, at least, a tag's version keeps the floor an invalidation set (ms): as long as
a delete's tombstone holds a key's place; a write buffered longer than that before it
reaches L2 may land after the invalidation, as after a delete."""
UNION_LIMIT = 10_000
"""Up to this many members in the sets of the tags one invalidation bumps, a key carrying
several of them is counted once (their union, in the engine); past it the count is the sum
of theirs, an upper bound (counting the union of more would stall the engine)."""

BUMP_TAGS = """
local tv, tagged, channel, head = ARGV[1] .. 'tv:', ARGV[1] .. 'tag:', ARGV[2], ARGV[3]
local now, floor, out, lines, listed = ARGV[4], ARGV[5], {}, {}, 0
for i = 6, #ARGV do
  local tag = ARGV[i]
  local old = redis.call('GET', tv .. tag)
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local was = old and tonumber(string.sub(old, 1, 16), 16)
  if was and v <= was then v = was + 1 end
  local text = string.format('%016x', v)
  -- A tag with no version gets one too: its floor must stop what was written before
  -- (a buffered write flushed later), for a while at least.
  local set = redis.pcall('SET', tv .. tag, text .. floor, 'KEEPTTL')
  if type(set) == 'table' and set.err then
    -- Full (SET is refused, DEL never is): no version at all is as stale.
    redis.call('DEL', tv .. tag)
    text = ''
  else
    local left = redis.call('PTTL', tv .. tag)
    if left >= 0 and left < FLOOR_PX or left == -1 and not old then
      redis.call('PEXPIRE', tv .. tag, FLOOR_PX)
    end
  end
  lines[#lines + 1] = tag
  lines[#lines + 1] = text
  out[#out + 1] = redis.call('ZCOUNT', tagged .. tag, '(' .. now, '+inf')
  listed = listed + redis.call('ZCARD', tagged .. tag)
end
local count = 0
for _, n in ipairs(out) do count = count + n end
if #out > 1 and listed <= UNION_LIMIT then
  -- A key carrying several of the tags is one key: count the union where it is small.
  local sets = {}
  for i = 6, #ARGV do sets[#sets + 1] = tagged .. ARGV[i] end
  local union = redis.call('ZUNION', #sets, unpack(sets))
  count = 0
  for _, key in ipairs(union) do
    local latest = -1
    for _, set in ipairs(sets) do
      local score = tonumber(redis.call('ZSCORE', set, key))
      if score and score > latest then latest = score end
    end
    if latest > tonumber(now) then count = count + 1 end
  end
end
local announced = table.concat(lines, '\\n')
if channel ~= '' then redis.call('PUBLISH', channel, head .. announced) end
return {count, redis.call('EXISTS', ARGV[1] .. 'registered'), announced}
"""
"""ARGV: ``base``, the channel and the notice's head (sender and kind), now in ms, the
floor (the invalidating instance's clock, a stamp: 8 bytes), then the tags. Each tag gets
a newer version (the engine's clock in µs, past the old one) with the floor, keeping its
expiry (at least :data:`FLOOR_PX`), or, where the engine is full, none (what recorded one
is stale). A write stamped before a tag's floor is refused as older
(:data:`SET_UNLESS_NEWER`), as a delete's tombstone refuses one: a write_back write made
before the invalidation and flushed after it does not land. Announces the tags with their
new versions ('' for none) in one notice. Returns how many live keys the tags' sets list
(a count, not a walk; a key listed by two counted twice where the sets hold more than
:data:`UNION_LIMIT` members together), whether any runtime registration exists (what
those reach is not in the frames: it is walked), and the notice's body."""
BUMP_TAGS = BUMP_TAGS.replace("UNION_LIMIT", str(UNION_LIMIT)).replace("FLOOR_PX", str(FLOOR_PX))
BUMP_TAGS_SHA = hashlib.sha1(BUMP_TAGS.encode(), usedforsecurity=False).hexdigest()

REAP = _INDEX.replace("W + ", "0 + ") + (
    """
local prefix, tagged, channel, head = ARGV[1], ARGV[2], ARGV[7], ARGV[8]
tomb, tomb_px, tomb_horizon = ARGV[5], ARGV[6], string.rep('\\255', 8)
local current = redis.call('GET', tv .. tagged)
if current then current = string.sub(current, 1, 16) end
local reaped = {}
for i = 9, #ARGV do
  local key = ARGV[i]
  local name = prefix .. key
  local _, versions = recorded(name)
  local version = versions[tagged]
  local stale
  if version then
    stale = version ~= current
  else
    stale = redis.call('ZSCORE', meta .. key, 't:' .. tagged) ~= false
  end
  if stale then
    -- A tombstone, as a delete leaves: a write buffered elsewhere before the invalidation
    -- and flushed now that the index no longer names its tags is refused as older.
    if remove(name) ~= -1 then forget(key) end
    reaped[#reaped + 1] = key
  elseif redis.call('ZSCORE', meta .. key, 't:' .. tagged) == false then
    redis.call('ZREM', tag .. tagged, key)
  end
end
if #reaped > 0 and channel ~= '' then
  -- An entry stored without versions (by an earlier release) may sit in L1s the bump's
  -- notice did not reach.
  redis.call('PUBLISH', channel, head .. table.concat(reaped, '\\n'))
end
return reaped
"""
)
"""ARGV: the prefix, a retired tag, ``base``, persist, the tombstone (stamped with the
invalidation's floor) and its PX, the channel and a ``k`` notice's head, then keys its set
listed. Replaces by the tombstone
those whose entry records another version of the tag than its current one (or none where
the tag has none left), or records none while their links name the tag (an entry stored
without versions, or none stored: a write still buffered somewhere), and forgets them;
one holding a newer stamp stays. A listed key whose links no longer name the tag leaves
its set. Announces the keys reached, and returns them."""
REAP_SHA = hashlib.sha1(REAP.encode(), usedforsecurity=False).hexdigest()

SCRIPTS = (SET_UNLESS_NEWER, DELETE, UNLINK_LIVE, BUMP_TAGS, REAP)
"""Loaded at start, on every primary."""

SCRIPT_BATCH = 100
SCRIPT_BATCH_BYTES = 1024 * 1024
"""Entries, and bytes of frames, per call of a script at most (an entry larger than the
bytes alone goes alone): a call holds the engine for its whole run, a pipeline of single
commands lets other clients in between."""
