"""The health document: whether the agent serves fully, why not, and what to change.

``status`` is ``ok`` or ``degraded`` (L2's breaker not closed, L2's change notices not
flowing), with the ``reasons``; ``warnings`` (only when there are any) are advice about
L2's server that never make the status degraded; ``tiers`` describes each tier.
"""

from __future__ import annotations

from typing import Any

from cache_core.breaker import BreakerState, CircuitBreaker
from cache_core.tiers.guarded import GuardedTier


def health_document(
    breaker: CircuitBreaker, *, coherent: bool, l2: GuardedTier | None
) -> dict[str, Any]:
    reasons = []
    if breaker.state is not BreakerState.CLOSED:
        reasons.append(f"L2 circuit {breaker.state}: {breaker.last_error}")
    if not coherent:
        reasons.append("L2 change notices are not flowing")
    document: dict[str, Any] = {"status": "degraded" if reasons else "ok", "reasons": reasons}
    notes = l2.health_notes() if l2 is not None else []
    if notes:
        document["warnings"] = notes
    document["tiers"] = {
        "l1": "ok",
        "l2": "not configured" if l2 is None else {**l2.describe(), "breaker": breaker.describe()},
    }
    return document
