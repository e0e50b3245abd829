"""The circuit breaker around L2: stop waiting on a server that is not answering.

Closed: calls go through; ``failure_threshold`` consecutive failures (errors or timeouts)
open it. Open: calls fail at once with :class:`~cache_core.errors.TierUnavailableError`.
Half-open: after a wait, one call at a time goes through as a probe; success closes the
breaker, failure opens it again. The first wait is ``probe_after`` seconds and each failed
probe doubles it, up to ``reset_timeout``: a short outage (a failover, a restart) costs
about as long as the outage itself, a long one costs one probe call every ``reset_timeout``.

Only failures of L2 count. A call that fails because of what it was asked to do (a value
the client library refuses) is the caller's error: :meth:`CircuitBreaker.release` lets the
probe slot go without a verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger("cache_core.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        reset_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
        *,
        probe_after: float | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.probe_after = reset_timeout if probe_after is None else min(probe_after, reset_timeout)
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.wait = self.probe_after
        """Seconds from opening to the next probe."""
        self.last_error = ""
        self._probing = False
        self.opened_total = 0

    def allow(self) -> bool:
        """Whether a call may go to L2 now (in half-open, only the one probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self.opened_at < self.wait:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self.failures = 0
        self._probing = False
        self.wait = self.probe_after
        if self.state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def release(self) -> None:
        """The call let through ended with neither verdict (the caller's own error)."""
        self._probing = False

    def failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        self._probing = False
        if self.state is BreakerState.HALF_OPEN:
            self.wait = min(self.wait * 2, self.reset_timeout)
        elif self.state is BreakerState.CLOSED and self.failures >= self.failure_threshold:
            self.wait = self.probe_after
        else:
            return
        self.opened_at = self._clock()
        self.opened_total += 1
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        level = logging.INFO if state is BreakerState.CLOSED else logging.WARNING
        log.log(level, "l2_breaker", extra={"state": str(state), "error": self.last_error})
        if self._on_change is not None:
            self._on_change(state)

    def describe(self) -> dict[str, object]:
        return {
            "state": str(self.state),
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "opened_total": self.opened_total,
            "next_probe_after": self.wait,
        }
