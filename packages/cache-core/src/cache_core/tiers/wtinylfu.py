"""The adaptive W-TinyLFU L1 tier: ``cache_tiers.l1.eviction: wtinylfu``.

LRU keeps whatever came last, so a scan or a loop a little larger than the cache flushes
everything worth keeping. W-TinyLFU (Einziger, Friedman, Manes; Caffeine's policy) puts
new entries in a small LRU *window*; what leaves the window is a candidate for the
*main* space (an SLRU: probation, then protected once hit again; protected is a CLOCK,
its hits counted rather than moved) and is admitted only if it has been asked for more
often than the main entry it would push out. How often is estimated by a sketch of
small counters, halved every ten accesses per key, so the estimate follows what is
popular now. A fixed window loses to LRU on recency-heavy workloads, so once the
cache has been full the window's share is adapted by hill climbing on the hit ratio
(Caffeine's climber): every sample of accesses, keep moving the window's size in the
direction that raised the hit ratio, in steps that shrink, and restart when the workload
changes. The climber is slow to find out that recency is all that matters, so a
:class:`RecencyGuard` (an LRU simulated on a sample of the keys) gives the window the
whole cache as soon as LRU has proven better, and the climber works down from there;
while LRU is ahead but not yet proven (2 standard deviations), a tie at admission lets
the newcomer in, and the guard tests LRU's lead at every read only LRU hits rather than
once a period. After a verdict, or where the cache is as far ahead of LRU, the guard rests
for a few cache-fulls of accesses (its work is every followed key's, on every read).

Everything is bounded by bytes: an entry weighs what it pins (as in the LRU tier, plus
the second map slot this policy keeps), the window, probation and protected sizes are
byte budgets, and ``size_bytes`` never exceeds ``max_bytes``. Every operation is O(1)
amortized. A hit stays cheap in Python: inline in :meth:`get`, it bumps a small counter
on the entry; in the window it moves the entry (an LRU), on probation it promotes it to
protected (whose overflow waits for the next eviction), in protected it only stamps it
with the current epoch (a shared int that changes every 1/64 of a cache-full of
arrivals) if it changed: the count says at demotion that it was hit since placed (it
gets another round), and the stamp orders main when the window is given the whole cache.
The sketch's aging and the climber's sample are looked at only at the next miss or
arrival (a run of hits ages the sketch once, at its end). The sketch
(cache_core.tiers.frequency_sketch) is asked once when a key arrives (while the cache
first fills, for every key held at once when it is full: nothing is admitted before),
keeping the estimate it answers with the entry; for a main entry an admission weighs
against it only when that entry's kept estimate does not already win (others' arrivals
may have raised the byte it shares); and when a key leaves with the hits it
collected while held. A key's frequency is the sketch's estimate plus its own count: both
sides of every admission decision are held. A hit on one of the keys the guard follows (one in its
sample rate) also moves that key in the guard's LRU, unless the guard rests.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import define

from cache_core.etags import etag_of
from cache_core.tiers.frequency_sketch import MAX_COUNT, FrequencySketch
from cache_core.tiers.memory import ETAG_WEIGHT, HeldEntries, entry_weight
from cache_core.tiers.recency_guard import RecencyGuard

if TYPE_CHECKING:
    from cache_core.tiers.base import TierContext

# The record list (9 slots instead of the LRU tier's 3-tuple) and the second map's slot
# (the access stamps are shared ints, one an epoch).
EXTRA_OVERHEAD = (
    sys.getsizeof([b"", 0.0, 0, 0, 0, False, 0, 0, 0]) - sys.getsizeof((b"", 0.0, 0)) + 40
)

WINDOW, PROBATION, PROTECTED = 0, 1, 2
PROTECTED_SHARE = 0.8
"""Of the main space, what the protected segment may hold."""
PROVEN_HITS = 2
"""Hits in the window that send an admitted key straight to the protected segment instead
of probation: it has been asked for again already, and probation would put it first in
line for eviction (on the traces, against the same theine figures: 14 hit-ratio targets
missed without it, 11 with it, and 10.9 points short in all instead of 6.2)."""
INITIAL_WINDOW = 0.01
"""The window's first share of the cache (Caffeine's); the climber moves it."""
MIN_WINDOW = 0.01
"""The smallest share the climber may give the window: below it, a key needs to be asked
for twice within a handful of requests to be admitted at all."""
STEP = 0.03
"""A climbing step, as a share of the cache (half of Caffeine's 6.25%: with the recency
guard below taking the long way up, smaller steps wander less on short traces)."""
STEP_DECAY = 0.98
RESTART_THRESHOLD = 0.05
"""A hit-ratio change this large means a new workload: climb again in full steps."""
EPOCH_SHIFT = 6
"""How long an epoch of access stamps lasts: calls of the eviction (each arrival once the
window is full, and a rewrite or an entity tag that overflows the bound), the entries
held shifted right by this (1/64 of them; a shift, as a small cache computes it every
other arrival). A window given the whole cache takes main in epoch order; ties keep
their place (at 1/100,000 the traces' figures were the same)."""
GUARD_REST = 4
"""Accesses (reads and arrivals) per entry held that the recency guard rests for after a
verdict, or once the cache has beaten LRU by ``GUARD_Z`` standard deviations at a
judgement (longer after wins in a row: ``REST_DOUBLINGS``); it then follows LRU again
from what the cache holds (RecencyGuard.restart)."""
REST_DOUBLINGS = 2
"""Each judgement in a row at which the cache wins again (RecencyGuard.wins) doubles the
rest after it, this many times at most (16 cache-fulls). Where the cache keeps winning,
the guard then follows LRU a sixth of the time instead of a third to a half (loop, scan,
sprite; the tuning traces' targets the same at every seed). On a shift to LRU's best case
after 40,000-80,000 requests of a Zipf phase, the recency phase trailed LRU by 0.92 points
on average (at most 1.60) instead of 1.54 (1.74): less of the old phase's evidence is
left when a long rest ends. Three doublings: 1.28 (2.28); five: a phase lost 5.7 points
waiting for the guard to wake."""
SAMPLE_FACTOR = 10
"""Accesses per climbing sample, per entry held."""
MIN_SAMPLE = 256


class WTinyLfuTier(HeldEntries):
    """Byte-bounded adaptive W-TinyLFU with per-entry expiry; the LRU tier's interface."""

    PLUGIN_NAME: ClassVar[str] = "wtinylfu"
    EVICTION: ClassVar[str] = "wtinylfu"

    @define(frozen=True)
    class Options(HeldEntries.Options):
        eviction: str = "wtinylfu"

    def __init__(
        self,
        options: HeldEntries.Options | None = None,
        context: TierContext | None = None,
        *,
        seed: int = 0,
        **simulation: Any,
    ) -> None:
        super().__init__(options, context, **simulation)
        self._random = random.Random(seed)
        # key -> [data, expires_at, weight, region, hits while held (to MAX_COUNT),
        # followed by the recency guard, the sketch's estimate at arrival, hits when put at
        # protected's recent end, the epoch of its last access (roughly: see get), then its
        # value's entity tag once asked for]; the regions keep the order (protected's by
        # placement: its hits count and stamp).
        self._entries: dict[Any, list[Any]] = {}
        self._window: OrderedDict[Any, list[Any]] = OrderedDict()
        self._probation: OrderedDict[Any, list[Any]] = OrderedDict()
        self._protected: OrderedDict[Any, list[Any]] = OrderedDict()
        self._window_bytes = self._probation_bytes = self._protected_bytes = 0
        self._window_max = 0
        self._protected_max = 0.0
        self._set_window_max(INITIAL_WINDOW * self.max_bytes)
        self._sketch = FrequencySketch(64, on_halve=self._halve_held, seed=seed)
        # The climber's sample. Hits are not counted apart (a hit only counts ``_accesses``
        # up): each tick works out how many there were since the last.
        self._hits = 0
        self._misses = 0
        self._accesses = 0  # reads and arrivals so far
        self._tick_at = 1  # ``_accesses`` when the next tick is due
        self._ticked_at = 0  # ``_accesses`` at the last tick
        self._arrivals = 0  # new keys since the last tick (counted in ``_accesses`` too)
        # A shared int that changes every 1/64 of a cache-full of evictions: a hit
        # in protected stamps its entry with it only if it changed (a stamp of its own,
        # swapped every hit, cost a large cache a third of a hit: the int it let go was
        # cold in memory).
        self._epoch = 0
        self._epoch_left = 1  # calls of _evict until the next epoch
        self._misses_seen = 0  # ``_misses`` at the last tick
        self._previous_hit_rate = 0.0
        self._climbing = False
        self._sample_at = MIN_SAMPLE
        self._step = -STEP * self.max_bytes  # as Caffeine: a first step toward a smaller window
        self._guard: RecencyGuard | None = None  # (None too while it rests)
        self._resting: RecencyGuard | None = None
        self._wake_at = self._rested_at = 0  # ``_accesses`` when the guard rests, and wakes
        self._filling = True  # not yet full since made or cleared
        # While it fills, the number of keys held at the sketch's last halving and last
        # resize: what counting the arrivals at once must mimic.
        self._halved_at = self._resized_at = 0

    # -- reads ------------------------------------------------------------------------------

    def _set_expiry(self, key: Any, entry: list[Any], expires_at: float) -> None:
        entry[1] = expires_at

    def _etag(self, key: Any, entry: list[Any]) -> str:
        if len(entry) > 9:
            return entry[9]  # type: ignore[no-any-return]
        etag = etag_of(entry[0])
        entry.append(etag)  # the one list every region's table holds
        # Weighed as part of the entry, so L1's byte bound holds with the tags in it.
        entry[2] += ETAG_WEIGHT
        self._size += ETAG_WEIGHT
        if entry[3] == WINDOW:
            self._window_bytes += ETAG_WEIGHT
        elif entry[3] == PROBATION:
            self._probation_bytes += ETAG_WEIGHT
        else:
            self._protected_bytes += ETAG_WEIGHT
        if self._size > self.max_bytes:
            self._evict()
        return etag

    def get(self, key: Any) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            self._accesses += 1
            if self._accesses >= self._tick_at:
                self._tick()
            guard = self._guard
            if guard is not None and (guard.every or guard.sampled(key)) and guard.read(key, None):
                self._heed(guard)
            return None
        if entry[1] <= self._clock():
            self._unlink(key, entry)
            self._expirations += 1
            self._misses += 1
            self._accesses += 1
            if self._accesses >= self._tick_at:
                self._tick()
            guard = self._guard
            if entry[5] and guard is not None:
                guard.drop(key)
                if guard.read(key, None):
                    self._heed(guard)
            return None
        # The access, inline: a hit must cost little more than the LRU tier's. Its count
        # is capped where it is read (MAX_COUNT), not here; the tick it may make due waits
        # for the next miss or arrival.
        entry[4] += 1
        self._accesses += 1
        region = entry[3]
        if region == PROTECTED:  # (first: 83-97% of the traces' hits)
            if entry[8] is not self._epoch:
                # A hit in protected does not move it (CLOCK): the count and the stamp say
                # what its place would (its demotion waits a round; a window given the whole
                # cache takes main by stamp). Moving it was most of a hit's cost in a large
                # cache, two tables' lookups instead of one (about 800 ns against LRU's 400
                # at 100,000 entries; 540 without).
                entry[8] = self._epoch
        elif region == WINDOW:
            self._window.move_to_end(key)
            entry[8] = self._epoch
        else:  # hit again on probation: _promote, inline (no call here).
            # Protected's oldest go back to probation at the next eviction, not here: a hit
            # that demoted them cost 3.6x an LRU hit where every hit is a promotion (loop,
            # scan, cs); deferred, 1.4x, and the traces' hit ratios a little higher.
            del self._probation[key]
            entry[3] = PROTECTED
            entry[7] = entry[4]
            self._protected[key] = entry
            weight = entry[2]
            self._probation_bytes -= weight
            self._protected_bytes += weight
            entry[8] = self._epoch
        if entry[5]:
            guard = self._guard
            if guard is not None:
                # RecencyGuard.read, inline where LRU hits it too (then there is nothing to
                # score): the call was half of what the guard added to a hit, and the guard
                # follows every key of a cache under 1,024 entries (a hit 2.2x an LRU hit).
                order = guard.order
                if key in order:
                    order.move_to_end(key)
                    guard.left -= 1
                    if guard.left <= 0 and guard.judge():
                        self._heed(guard)
                elif guard.read(key, entry[2]):
                    self._heed(guard)
        return entry[0]  # type: ignore[no-any-return]

    def _access(self, key: Any, entry: list[Any]) -> None:
        """A rewrite of a held key: an access, as a hit is (without counting as a read)."""
        entry[4] += 1
        entry[8] = self._epoch
        if entry[3] == PROBATION:
            self._promote(key, entry)
        elif entry[3] == WINDOW:
            self._window.move_to_end(key)

    def _promote(self, key: Any, entry: list[Any]) -> None:
        """Hit again on probation: protected now (its overflow waits for an eviction)."""
        del self._probation[key]
        self._probation_bytes -= entry[2]
        entry[3] = PROTECTED
        entry[7] = entry[4]
        self._protected[key] = entry
        self._protected_bytes += entry[2]

    def _tick(self) -> None:
        """Reads since the last tick reach the sketch's aging and the climber's sample; the
        next tick is due when either needs one (hits count on the entries meanwhile)."""
        if self._resting is not None and self._accesses >= self._wake_at:
            guard, rested = self._resting, self._accesses - self._rested_at
            self._start_guard(guard, refollow=guard.restart(len(self._entries), rested))
        misses = self._misses - self._misses_seen
        hits = self._accesses - self._ticked_at - misses - self._arrivals
        self._arrivals = 0
        self._hits += hits
        if hits:
            # A run of hits longer than a halving's worth (a warm cache between misses) ages
            # the sketch once at its end: halving again and again at one miss would wipe the
            # counts the run has just shown hot (the climber gets every hit).
            self._sketch.count_accesses(min(hits, max(1, self._sketch.until_halving())))
        if self._hits + self._misses >= self._sample_at:
            self._climb()  # a new sample: it counts from zero
        self._misses_seen = self._misses
        self._ticked_at = self._accesses
        due = min(self._sample_at - self._hits - self._misses, self._sketch.until_halving())
        if self._resting is not None:
            due = min(due, self._wake_at - self._accesses)
        self._tick_at = self._accesses + max(1, due)

    def _halve_held(self) -> None:
        """Age the held keys' own counts, and the estimates they keep, with the sketch's."""
        if self._filling:
            self._halved_at = len(self._entries)
        for entry in self._entries.values():
            hits = entry[4]
            entry[4] = (MAX_COUNT if hits > MAX_COUNT else hits) >> 1
            # Halved as its counter was (the seen bit it counted may be one over: taking it
            # out measured lower on the scan trace, 20.4% against 21.2% at 500).
            entry[6] >>= 1
            # Halved with the count it is compared with, capped alike: a protected key hit
            # since placed may lose its second round (when its count passed the cap, or
            # floor halving evens the two: 3 over 2 is 1 and 1). Keeping the bit exactly
            # measured no better: 55, 56, 53, 53, 54 targets at seeds 0-4 against 56, 57,
            # 53, 53, 54 (it took the 600-key loop at 500 back to 79.26% from 76.91%).
            mark = entry[7]
            entry[7] = (MAX_COUNT if mark > MAX_COUNT else mark) >> 1

    def get_many(self, keys: Sequence[Any]) -> list[bytes | None]:
        """:meth:`get` of each key, in order (each one counts for the policy)."""
        return list(map(self.get, keys))

    # -- writes -----------------------------------------------------------------------------

    def set_many(self, items: Iterable[tuple[Any, bytes, float | None]]) -> None:
        """:meth:`set` of each ``(key, data, ttl)``, in order (each one admitted, or not, as
        its own set would be)."""
        set_ = self.set
        for key, data, ttl in items:
            set_(key, data, ttl)

    def set(self, key: Any, data: bytes, ttl: float | None) -> bool:
        """Store ``data`` for ``ttl`` seconds; False when it can never fit (nothing changes)."""
        weight = self._weigh(key, data)
        if weight > self.max_bytes:
            return False
        expires_at = math.inf if ttl is None else self._clock() + ttl
        entries = self._entries
        entry = entries.get(key)
        guard = self._guard
        if entry is not None:  # a rewrite: an access, with a new weight
            delta = weight - entry[2]
            entry[0], entry[1], entry[2] = data, expires_at, weight
            del entry[9:]  # the old value's entity tag
            self._size += delta
            if entry[3] == WINDOW:
                self._window_bytes += delta
            elif entry[3] == PROBATION:
                self._probation_bytes += delta
            else:
                self._protected_bytes += delta
            self._access(key, entry)
        else:
            # (while the cache fills, arrivals are counted when it is full: _begin_evicting)
            estimate = 0 if self._filling else self._sketch.increment(key)
            self._accesses += 1  # one increment nearer the halving the next tick checks for
            self._arrivals += 1
            if self._accesses >= self._tick_at:  # (a cache filled by writes alone ticks here)
                self._tick()
            # (a small cache's guard follows every key: no hash to ask, a tenth of a miss;
            # one resting still marks the keys it will follow, and the tick may wake it)
            guard = self._guard
            follower = guard or self._resting
            sampled = follower is not None and (follower.every or follower.sampled(key))
            entry = [data, expires_at, weight, WINDOW, 0, sampled, estimate, 0, self._epoch]
            entries[key] = entry
            self._window[key] = entry
            self._window_bytes += weight
            self._size += weight
            held = len(entries)
            if held > self._sketch.capacity:  # grown: keep the holders' counts
                if self._filling:  # (none counted yet)
                    self._sketch.resize(2 * held)
                    self._resized_at = held
                else:
                    self._sketch.resize(2 * held, entries)
            if guard is not None and held >= guard.resample_at and guard.resample(held):
                for other, record in entries.items():  # grown: follow fewer of them
                    record[5] = guard.sampled(other)
        if entry[5] and guard is not None:
            guard.write(key, weight)
        if self._size > self.max_bytes and self._filling:
            self._begin_evicting()
        if self._window_bytes > self._window_max or self._size > self.max_bytes:
            self._evict()
        return True

    def _begin_evicting(self) -> None:
        """The cache is full and about to evict, for the first time since it was made or
        cleared: the sketch counts the held keys' arrivals, and the guard follows what LRU
        would do from here, starting from what it would hold now (everything held, oldest
        first).

        The arrivals are counted as they would stand had each been counted as it came:
        those before the last halving not at all (it drops single counts), those before the
        last resize at 1 (a resize carries the held keys' counts), the rest as first
        sightings (as an increment would, sharing a counter or not). One pass, instead of an
        increment per arrival and a carry of everything held at each of the resizes while it
        grew: that was a sixth of a replay of a million requests at 100,000 entries, and 7%
        of one of 26,000 at 1,421. (The map's order is the arrivals'; a key deleted while it
        filled shifts the boundaries by one.)"""
        entries, sketch = self._entries, self._sketch
        halved, resized = self._halved_at, self._resized_at
        sketch.carry((key, 1) for key in itertools.islice(entries, halved, resized))
        for entry in itertools.islice(entries.values(), halved, resized):
            entry[6] = 1
        for key, entry in itertools.islice(entries.items(), max(halved, resized), None):
            entry[6] = sketch.increment(key)
        self._halved_at = self._resized_at = 0
        self._filling = False
        self._start_guard(RecencyGuard(self.max_bytes, len(entries)), refollow=True)

    def _start_guard(self, guard: RecencyGuard, *, refollow: bool) -> None:
        """Follow what LRU would do from here, starting from what it would hold now
        (everything held, oldest first); ``refollow`` when the keys followed changed.

        In one fill, not a write a key: a guard that rests wakes every few cache-fulls of
        accesses, and its writes, one call a held key, were 4.5% of sprite's replay at
        1,769 entries (about a microsecond a miss)."""
        self._guard, self._resting = guard, None
        entries = self._entries
        if refollow:
            sampled = guard.sampled
            for key, entry in entries.items():
                entry[5] = sampled(key)
        guard.fill((key, entry[2]) for key, entry in entries.items() if entry[5])

    def _heed(self, guard: RecencyGuard) -> None:
        """The guard has judged: LRU is better (a verdict: the window gets the cache), or
        far worse. Either way it rests, and looks again a few cache-fulls of accesses later.

        Following LRU costs every read of a followed key (below 1,024 entries, of every key:
        a hit 2.2x an LRU hit). Where LRU has just lost by 4 standard deviations nothing is
        lost by looking later; after a verdict, the window holds the whole cache (an LRU
        itself) until the climber takes it down, and a verdict meanwhile would change
        nothing. (The same targets met at every seed either way; zigzag's every hit was one
        of the guard's after its verdict.) A rest after another win is longer: see
        ``REST_DOUBLINGS``."""
        if not guard.resting:
            self._give_window_everything()
            guard.resting = True
        self._guard, self._resting = None, guard
        self._rested_at = self._accesses
        rest = GUARD_REST << min(max(guard.wins - 1, 0), REST_DOUBLINGS)
        self._wake_at = self._accesses + rest * max(1, len(self._entries))

    def _give_window_everything(self) -> None:
        """The guard's verdict: LRU does better here. Unless the window already has most of
        the cache, it gets all of it, and the climber starts over, stepping down."""
        if self._window_max >= 0.9 * self.max_bytes:
            return
        self._set_window_max(self.max_bytes)
        self._rebalance()
        self._step = -STEP * self.max_bytes
        self._climbing = False
        self._hits = self._misses = self._misses_seen = self._arrivals = 0
        self._sample_at = self._next_sample()
        self._ticked_at = self._accesses
        self._tick_at = self._accesses + 1

    def _evict(self) -> None:
        """Move the window's overflow to main through admission, then evict to the bound.

        A key leaving the window goes into main if it has room, else only for as long as it
        is asked for more often than each main entry it would push out (as often, while the
        recency guard leans to LRU); into probation, or protected if it was hit
        ``PROVEN_HITS`` times in the window. A protected victim (probation being empty) hit
        since placed goes round again instead of being weighed. First, what hits promoted
        past protected's share sends its oldest back to probation. (Inline, as is the
        victims' removal: this is every miss's path once the cache is full.)"""
        self._epoch_left -= 1
        if self._epoch_left <= 0:
            # (an ``is`` that holds means an equal value: ``_accesses`` only grows, so a hit
            # that skips its stamp would have written the same number)
            self._epoch = self._accesses
            self._epoch_left = (len(self._entries) >> EPOCH_SHIFT) or 1
        if self._protected_bytes > self._protected_max:
            self._demote_protected()
        window, entries, sketch = self._window, self._entries, self._sketch
        # A tie admits the newcomer only while the guard leans to recency: otherwise the
        # resident stays (loops keep their keys only because ties stay out: admitting every
        # tie met 46 of the 65 hit-ratio targets; only while leaning, 57 instead of 56).
        leaning = self._guard is not None and self._guard.leaning
        while self._window_bytes > self._window_max and window:
            key, entry = window.popitem(last=False)
            self._window_bytes -= entry[2]
            candidate = -1
            admitted = True
            while self._size > self.max_bytes:
                probation = self._probation
                victims = probation or self._protected
                if not victims:
                    break
                victim = next(iter(victims))
                record = victims[victim]
                if victims is not probation and record[4] > record[7]:
                    record[7] = record[4]  # hit since placed: another round (CLOCK)
                    victims.move_to_end(victim)
                    continue
                if candidate < 0:  # once an admission
                    candidate = entry[6] + entry[4]
                    candidate = MAX_COUNT if candidate > MAX_COUNT else candidate
                # What the victim kept from its arrival is about a floor of its count now
                # (its byte only grows between halvings, and is halved with it): above
                # the candidate, or at it unless the guard leans, it wins without the sketch.
                # Else its count is read again: other keys' arrivals may have raised the
                # byte it shares in the sketch. The candidate is capped,
                # so a victim's count past the cap wins as at the cap.
                against = record[6] + record[4]
                if candidate > against or (leaning and candidate == against):
                    against = sketch.frequency(victim) + record[4]
                if (
                    candidate > against
                    or (candidate == against and leaning)
                    or (
                        # Warm candidates get in now and then, so colliding hashes cannot lock
                        # one out (Caffeine's defence against hash flooding).
                        candidate > 5 and self._random.random() < 1 / 128
                    )
                ):
                    del victims[victim]
                    del entries[victim]
                    weight = record[2]
                    self._size -= weight
                    if victims is probation:
                        self._probation_bytes -= weight
                    else:
                        self._protected_bytes -= weight
                    if record[4]:
                        sketch.add(victim, record[4])
                    self._evictions += 1
                else:  # turned away: the sketch keeps the hits it had in the window
                    del entries[key]
                    self._size -= entry[2]
                    if entry[4]:
                        sketch.add(key, entry[4])
                    self._evictions += 1
                    admitted = False
                    break
            if admitted:
                if entry[4] >= PROVEN_HITS:  # asked for again and again in the window
                    entry[3] = PROTECTED
                    entry[7] = entry[4]
                    self._protected[key] = entry
                    self._protected_bytes += entry[2]
                    self._demote_protected()
                else:
                    entry[3] = PROBATION
                    self._probation[key] = entry
                    self._probation_bytes += entry[2]
        while self._size > self.max_bytes:
            region = self._probation or self._protected or self._window
            key, entry = region.popitem(last=False)
            self._forget(key, entry)
            self._evictions += 1

    def _forget(self, key: Any, entry: list[Any]) -> None:
        """``entry`` was popped from its region: drop it from the map and the sizes; the
        sketch keeps the hits it had while held."""
        del self._entries[key]
        self._size -= entry[2]
        if entry[4]:
            self._sketch.add(key, entry[4])
        region = entry[3]
        if region == WINDOW:
            self._window_bytes -= entry[2]
        elif region == PROBATION:
            self._probation_bytes -= entry[2]
        else:
            self._protected_bytes -= entry[2]

    def _unlink(self, key: Any, entry: list[Any]) -> None:
        region = entry[3]
        order = (self._window, self._probation, self._protected)[region]
        del order[key]
        self._forget(key, entry)

    def _demote_protected(self) -> None:
        protected_max = self._protected_max
        protected = self._protected
        while self._protected_bytes > protected_max and protected:
            key, entry = protected.popitem(last=False)
            if entry[4] > entry[7]:  # hit since placed: another round (CLOCK)
                entry[7] = entry[4]
                protected[key] = entry
                continue
            self._protected_bytes -= entry[2]
            entry[3] = PROBATION
            self._probation[key] = entry
            self._probation_bytes += entry[2]

    # -- climbing ---------------------------------------------------------------------------

    def _next_sample(self) -> int:
        return max(MIN_SAMPLE, SAMPLE_FACTOR * len(self._entries))

    def _climb(self) -> None:
        """Caffeine's climber: keep going while the hit ratio rises, turn when it falls.
        Only once the cache has been full: before its first eviction every policy hits the
        same, and a hit ratio rising as the cache fills would read as a good step."""
        requests = self._hits + self._misses
        hit_rate = self._hits / requests
        if not self._climbing:
            self._climbing = bool(self._evictions)
            self._previous_hit_rate = hit_rate
            self._hits = self._misses = 0
            self._sample_at = self._next_sample()
            return
        change = hit_rate - self._previous_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= RESTART_THRESHOLD:
            self._step = STEP * self.max_bytes * (1 if amount >= 0 else -1)
        else:
            self._step = STEP_DECAY * amount
        self._previous_hit_rate = hit_rate
        self._hits = self._misses = 0
        self._sample_at = self._next_sample()
        self._set_window_max(self._window_max + amount)
        self._rebalance()

    def _set_window_max(self, value: float) -> None:
        self._window_max = int(min(max(value, MIN_WINDOW * self.max_bytes), self.max_bytes))
        self._protected_max = PROTECTED_SHARE * (self.max_bytes - self._window_max)

    def _rebalance(self) -> None:
        """After the window's share moved: a grown window takes main's coldest entries, a
        shrunk one hands its oldest to probation (main has the room it gave up). What the
        window takes (probation's head, then protected's, in main's order) goes to its cold
        end by last access, its epoch, oldest first (ties in main's order), so the window
        evicts main's coldest first."""
        window = self._window
        moved: list[tuple[Any, list[Any]]] = []
        while self._window_bytes > self._window_max and window:
            key, entry = window.popitem(last=False)
            self._window_bytes -= entry[2]
            entry[3] = PROBATION
            self._probation[key] = entry
            self._probation_bytes += entry[2]
        while self._window_bytes < self._window_max:
            region = self._probation or self._protected
            if not region:
                break
            key, entry = region.popitem(last=False)
            if entry[3] == PROBATION:
                self._probation_bytes -= entry[2]
            else:
                self._protected_bytes -= entry[2]
            if self._window_bytes + entry[2] > self._window_max:
                region[key] = entry  # back where it was: it does not fit
                region.move_to_end(key, last=False)
                if entry[3] == PROBATION:
                    self._probation_bytes += entry[2]
                else:
                    self._protected_bytes += entry[2]
                break
            entry[3] = WINDOW
            moved.append((key, entry))
            self._window_bytes += entry[2]
        # By last access (its epoch), oldest first: protected's order is only placement.
        moved.sort(key=lambda item: item[1][8])
        for key, entry in reversed(moved):
            window[key] = entry
            window.move_to_end(key, last=False)
        self._demote_protected()

    # -- the rest of the tier ---------------------------------------------------------------

    def delete(self, key: Any) -> bool:
        """Drop ``key``; True only if it was live (an expired entry is dropped silently)."""
        if self._guard is not None:  # LRU may hold what this cache turned away
            self._guard.drop(key)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._unlink(key, entry)
        return bool(entry[1] > self._clock())

    def clear(self) -> int:
        count = len(self._entries)
        for region in (self._entries, self._window, self._probation, self._protected):
            region.clear()
        self._size = self._window_bytes = self._probation_bytes = self._protected_bytes = 0
        # Empty, every policy holds everything again: the guard restarts when the cache next
        # has to evict, sized for what it then holds.
        self._guard = self._resting = None
        self._filling = True
        self._halved_at = self._resized_at = 0
        self._epoch_left = 1  # (sized for what it held)
        return count

    @staticmethod
    def weight(key: Any, data: bytes) -> int:
        return entry_weight(key, data) + EXTRA_OVERHEAD

    def describe(self) -> dict[str, Any]:
        """The regions' byte sizes, the window's current share and the recency guard."""
        guard = self._guard or self._resting
        return {
            **super().describe(),
            "window_bytes": self._window_bytes,
            "window_max": self._window_max,
            "probation_bytes": self._probation_bytes,
            "protected_bytes": self._protected_bytes,
            "window_share": round(self._window_max / self.max_bytes, 4) if self.max_bytes else 0,
            "recency_guard": None if guard is None else guard.describe(),
        }


__all__ = ["FrequencySketch", "RecencyGuard", "WTinyLfuTier"]
