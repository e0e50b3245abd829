"""When a failed attempt is tried again, and after how long.

A 503 is the server saying L2 is away (``tier_unavailable``); its circuit breaker probes L2
again 250 ms after opening and at most every second after that, so a few retries spread
over a second or two ride out a blip. Every operation of the API can be repeated: a write
writes the same value again, a delete or invalidation removes what is left (its count or
``deleted`` answers for the last attempt alone). A timeout is never retried: the caller's
time is already spent, and the server may still be working on it.
"""

from __future__ import annotations

import random

from attrs import define, field, validators

from cache_client.errors import ConnectionFailedError, ServerError
from cache_core.errors import CacheError, TierUnavailableError

__all__ = ["RetryPolicy"]


@define(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter."""

    attempts: int = field(default=4, validator=validators.ge(1))
    """Attempts in all, the first included (1: never retry)."""
    backoff: float = field(default=0.1, validator=validators.ge(0))
    """Seconds before the first retry; each next one waits ``multiplier`` times longer."""
    multiplier: float = field(default=2.0, validator=validators.ge(1))
    max_backoff: float = field(default=1.0, validator=validators.ge(0))
    """No wait is longer than this."""
    budget: float = field(default=5.0, validator=validators.ge(0))
    """Seconds from the first attempt after which no retry starts: a retry whose wait
    would end past it is not made, and the last error is raised."""
    retry_connection_errors: bool = True
    """Also retry a connection refused, reset or closed before the answer (a server
    restarting, a worker replaced); the other answers are never retried."""

    def retries(self, error: CacheError) -> bool:
        """Whether ``error`` is worth another attempt."""
        if isinstance(error, TierUnavailableError):
            return True
        if isinstance(error, ServerError) and error.status == 503:
            return True  # a proxy's 503 in front of a server restarting
        return self.retry_connection_errors and isinstance(error, ConnectionFailedError)

    def delay(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1 for the first): the backoff of that
        retry, less a random part of up to half of it, so clients that failed together
        do not all come back together, and none comes back at once."""
        ceiling = min(self.max_backoff, self.backoff * self.multiplier ** (retry - 1))
        return ceiling * (0.5 + 0.5 * rng.random())

    def next_delay(
        self, attempt: int, elapsed: float, error: CacheError, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the attempt after ``attempt`` (1 for the first), or None
        when ``error`` is to be raised: not retried, out of attempts or out of budget."""
        if attempt >= self.attempts or not self.retries(error):
            return None
        wait = self.delay(attempt, rng)
        return wait if elapsed + wait <= self.budget else None
