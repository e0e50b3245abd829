"""What LRU would hit, simulated on a sample of the keys: the W-TinyLFU tier's safety net
on workloads where recency is all that matters."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

GUARD_KEYS = 512
"""The recency guard follows about this many keys: one in R, R a power of two."""
GUARD_MARGIN = 0.01
"""How far (a share of its accesses) LRU must be ahead before the guard acts on
``GUARD_PERIODS`` of evidence."""
GUARD_SLACK = 32
"""... plus this many hits, so a few lucky ones early on do not count (on that path: the
4-sigma one needs a lead of 16 at the least)."""
PERIOD_SHARE = 1.0
"""A period, the sampled reads between two judgements, as a share of the keys followed."""
MIN_PERIOD = 64
GUARD_PERIODS = 10
"""Periods of evidence the guard needs (unless overwhelming)."""
GUARD_Z = 4
"""... or LRU's lead is this many standard deviations of chance (it acts at once then)."""
GUARD_LEAN_Z = 2
"""LRU ahead by this many standard deviations, not yet a verdict's: the guard *leans* to
recency until its next judgement or verdict, and the tier lets a newcomer in on a tie at
admission (everywhere else a tie keeps the resident; see :attr:`RecencyGuard.leaning`)."""
GUARD_EARLY_Z = 4.5
"""While leaning, LRU's lead is tested at every read it alone hits, at this many standard
deviations: a verdict need not wait for the period's end (up to a cache-full of requests,
when the cache loses 10 points meanwhile: 3 of the 6 synthetic traces were lost waiting).
Asked only while leaning: tested on every such read from the start, a warm-up lead at
backf@376, cpp@306 and zigzag@1000 gave the cache to LRU just before W-TinyLFU's main was
worth keeping (49-53 of the 65 tuning targets instead of 52-57; at 4.25 sd one more was
lost at each seed, at 4.7 the synthetic with-stable-set@50%)."""
_EARLY_Z2 = GUARD_EARLY_Z**2
GUARD_DECAY = 0.98
"""The guard's evidence fades by this much a period, so it follows the workload."""

_SAMPLING = 0xC2B2AE3D27D4EB4F


class RecencyGuard:
    """What LRU would hit, simulated on a sample of the keys; the climber's safety net.

    The climber learns from hit ratios sampled over ten cache-fulls of requests, which
    is too slow to notice a workload where recency is all that matters (LRU's best case):
    there the small window turns away the keys about to be asked for again. So an LRU of
    the same byte budget runs beside the cache on one key in ``rate`` (chosen by hash, so
    about ``GUARD_KEYS`` are followed: SHARDS' spatial sampling), fed the same reads and
    writes. Both are scored on the same sampled reads, evidence that fades by
    ``GUARD_DECAY`` a period. When LRU is so far ahead that chance cannot explain it
    (McNemar's test on the reads only one of them hit, at ``GUARD_Z`` standard deviations,
    judged at the end of each period; while leaning, at ``GUARD_EARLY_Z`` at every read only
    LRU hit), or has been ahead by more than ``GUARD_MARGIN`` of them (plus ``GUARD_SLACK``
    hits) for ``GUARD_PERIODS`` periods, the tier gives the whole cache to the window (LRU)
    and the climber works down from there. When the cache is as far ahead (``GUARD_Z``), or
    after a verdict, the tier lets the guard rest a while and :meth:`restart` it. It starts
    at the first eviction: before that every policy holds everything. Expiry is not
    simulated (it takes entries from both alike), and it follows about ``held / rate``
    keys, pinning those the cache let go.
    """

    def __init__(self, max_bytes: int, held: int) -> None:
        self._max_bytes = max_bytes
        self.order: OrderedDict[Any, int] = OrderedDict()
        self._bytes = 0
        self._bits = -1
        self._periods = 0
        # Decayed counts over the sampled reads: all, LRU's hits the cache missed, and the
        # cache's hits LRU missed.
        self._reads = self._lru_only = self._cache_only = 0.0
        self._period = 0
        self.left = 0
        """Sampled reads until the next judgement (the tier counts a hit both hit itself:
        a call per such read cost as much as the rest of a hit)."""
        self.verdicts = 0
        self.wins = 0
        """Judgements in a row (no lean, no verdict between) at which the cache beat LRU by
        ``GUARD_Z`` standard deviations: each after the first doubles the rest that follows
        (up to the tier's ``REST_DOUBLINGS``)."""
        self._warming: tuple[float, float, float] | None = None
        """After a rest, the evidence to pick up again once the LRU has filled."""
        self.resting = False
        """The cache beat LRU by ``GUARD_Z`` standard deviations at the last judgement: the
        tier may stop following LRU for a while (see :meth:`restart`)."""
        self.leaning = False
        """LRU ahead by ``GUARD_LEAN_Z`` standard deviations at the last judgement (and no
        verdict since): its lead is then tested at every read only LRU hits."""
        self.resample(held)

    def resample(self, held: int) -> bool:
        """Follow one key in ``rate``, the power of two that keeps between ``GUARD_KEYS``
        and twice that many of the ``held`` keys followed. The rate only rises (a sample
        shrinks to a subset of itself, it cannot grow back what it never saw); True when it
        rose, and the keys no longer sampled were let go."""
        bits = max(0, (held // GUARD_KEYS).bit_length() - 1)
        if bits <= self._bits:
            return False
        self._bits = bits
        self.rate = 1 << bits
        self.every = bits == 0
        """Every key followed (below ``2 * GUARD_KEYS`` held): the tier need not ask."""
        self.resample_at = GUARD_KEYS << (bits + 1)
        # A key is followed when the top ``bits`` of its mixed hash are 0 (one mask: the
        # shift it replaces cost a tenth of a miss's path).
        self._top = ((1 << bits) - 1) << (64 - bits)
        self._budget = self._max_bytes >> bits
        self._reads += self._period - self.left  # (the reads of the period cut short)
        self._period = self.left = max(MIN_PERIOD, int(PERIOD_SHARE * (held >> bits)))
        order = self.order
        for key in [key for key in order if not self.sampled(key)]:
            self._bytes -= order.pop(key)
        while self._bytes > self._budget:
            self._bytes -= order.popitem(last=False)[1]
        return True

    def sampled(self, key: Hashable) -> bool:
        return hash(key) * _SAMPLING & self._top == 0

    def read(self, key: Hashable, weight: int | None) -> bool:
        """A sampled read, a hit of the cache (of ``weight``) or a miss (None); True when
        LRU has proven better, or the cache has by far (``resting``: the tier may stop
        following LRU). A hit LRU misses is filled, as the caller would have on a miss (the
        cache's misses are filled by the caller's write)."""
        order = self.order
        if key in order:
            order.move_to_end(key)
            if weight is None:
                self._lru_only += 1
                if self.leaning:
                    lead = self._lru_only - self._cache_only
                    # (squared: no square root on a read's path)
                    if lead > 0 and lead * lead > _EARLY_Z2 * (self._lru_only + self._cache_only):
                        self._verdict()
                        return True
        elif weight is not None:
            self.write(key, weight)
            self._cache_only += 1
        self.left -= 1
        return self.left <= 0 and self.judge()

    def restart(self, held: int, rested: int) -> bool:
        """Follow LRU again after a rest of ``rested`` requests, from an empty LRU (the tier
        fills it with what it holds, which is not what LRU would hold: the first period
        only fills it, its reads not scored), on the evidence from before, faded as the
        periods of the rest would have faded it (the cache's lead it rested on outweighs a
        phase; started afresh, one period's lead of LRU gave multi1 at 652 to LRU, 59% to
        50%). Following fewer keys if ``held`` has grown: True then."""
        self.order.clear()
        self._bytes = 0
        self.resting = self.leaning = False
        resampled = held >= self.resample_at and self.resample(held)
        fade = GUARD_DECAY ** ((rested >> self._bits) / self._period)
        self._warming = (self._reads * fade, self._lru_only * fade, self._cache_only * fade)
        self.left = self._period
        return resampled

    def write(self, key: Hashable, weight: int) -> None:
        if weight > self._budget:  # more than the scaled-down LRU could ever hold
            self.drop(key)
            return
        order = self.order
        self._bytes += weight - order.pop(key, 0)
        order[key] = weight
        while self._bytes > self._budget:
            self._bytes -= order.popitem(last=False)[1]

    def fill(self, items: Iterable[tuple[Hashable, int]]) -> None:
        """Into an empty LRU (a new guard's, or one restarted), ``(key, weight)`` oldest
        first: what :meth:`write` of each in turn would leave (the newest that fit)."""
        order, budget = self.order, self._budget
        order.update((key, weight) for key, weight in items if weight <= budget)
        self._bytes = sum(order.values())
        while self._bytes > budget:
            self._bytes -= order.popitem(last=False)[1]

    def drop(self, key: Hashable) -> None:
        self._bytes -= self.order.pop(key, 0)

    def judge(self) -> bool:
        """A period's reads are done (``left`` is 0): True when LRU has proven better, or
        the cache has (``resting``)."""
        if self._warming is not None:  # the period after a restart: only filling the LRU
            self._reads, self._lru_only, self._cache_only = self._warming
            self._warming = None
            self.left = self._period
            return False
        self._reads += self._period - self.left
        self.left = self._period
        self._periods += 1
        lead = self._lru_only - self._cache_only
        chance = math.sqrt(self._lru_only + self._cache_only)
        self.leaning = lead > GUARD_LEAN_Z * chance
        if -lead > GUARD_Z * chance:
            self.resting = True
            self.wins += 1
            return True
        if self.leaning:
            self.wins = 0
        # The test needs a lead of 16 hits at the least (lead > 4 sqrt(lead)): the margin
        # and the slack are for the slow path, where a small lead held long must not count.
        # (Asked of this path too, they held steep@50% back by a cache-full: 4.5 points.)
        if lead > GUARD_Z * chance or (
            self._periods >= GUARD_PERIODS and lead > GUARD_MARGIN * self._reads + GUARD_SLACK
        ):
            self._verdict()
            return True
        self._reads *= GUARD_DECAY
        self._lru_only *= GUARD_DECAY
        self._cache_only *= GUARD_DECAY
        return False

    def _verdict(self) -> None:
        """LRU has proven better: the evidence starts over, for what the cache does next
        (leaning too: the next lean, and early verdict, are on that evidence)."""
        self.leaning = False
        self.wins = 0
        self._reads = self._lru_only = self._cache_only = 0.0
        self._periods = 0
        self.left = self._period
        self.verdicts += 1

    def describe(self) -> dict[str, Any]:
        return {"sample_rate": self.rate, "verdicts": self.verdicts, "resting": self.resting}


__all__ = ["GUARD_KEYS", "RecencyGuard"]
