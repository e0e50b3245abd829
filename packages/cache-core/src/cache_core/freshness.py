"""Refresh-ahead and stale-if-error for loaded keys (cashews' ``early``/``soft``, Caffeine's
``refreshAfterWrite``, JetCache's ``@CacheRefresh``): per loader, in its config section
beside its own options.

- ``refresh_ahead`` (a fraction of the TTL, 0 to 1): once that much of a loaded value's
  TTL has passed, a hit still answers it and starts one background reload (under the
  cross-instance load lock); nobody waits for it.
- ``stale_if_error`` (seconds): a value past its TTL is reloaded by whoever asks, as
  always, but when its loader fails or times out the old value is answered instead, for
  up to that long after the TTL.

Both judge the value by its remaining TTL in L2, so every instance judges alike: the
value is stored for its TTL plus ``stale_if_error``, and L1 keeps it only until its
refresh point (or its TTL), after which reads reach L2 and are judged there. So both need
L2 (a config error without one).
"""

from __future__ import annotations

import enum
import math
from typing import Any

from attrs import define

from cache_core.errors import ConfigError

KEYS = ("refresh_ahead", "stale_if_error")
"""The fields a loader's section may hold for this, besides the loader's own options."""


class Phase(enum.Enum):
    FRESH = "fresh"
    REFRESH = "refresh"
    """Past its refresh point: answered, and reloaded in the background."""
    EXPIRED = "expired"
    """Past its TTL (inside the stale window): reloaded now; answered if the load fails."""


@define(frozen=True)
class Freshness:
    refresh_ahead: float | None = None
    stale_if_error: float = 0.0

    @classmethod
    def from_section(cls, section: dict[str, Any], path: str, max_ttl: float) -> Freshness:
        """Take this module's :data:`KEYS` out of a loader's ``section`` (in place: the rest
        is the loader's own)."""
        refresh = section.pop("refresh_ahead", None)
        stale = section.pop("stale_if_error", 0.0)
        if refresh is not None and not (
            isinstance(refresh, int | float) and not isinstance(refresh, bool) and 0 < refresh < 1
        ):
            raise ConfigError(
                f"{path}.refresh_ahead: a fraction of the TTL between 0 and 1, got {refresh!r}"
            )
        if not (
            isinstance(stale, int | float)
            and not isinstance(stale, bool)
            and math.isfinite(stale)
            and 0 <= stale <= max_ttl
        ):
            raise ConfigError(
                f"{path}.stale_if_error: seconds from 0 to limits.max_ttl ({max_ttl:g}), "
                f"got {stale!r}"
            )
        return cls(None if refresh is None else float(refresh), float(stale))

    @property
    def active(self) -> bool:
        return self.refresh_ahead is not None or self.stale_if_error > 0

    def stored_ttl(self, ttl: float) -> float:
        """How long L2 keeps a value of TTL ``ttl``: the stale window past it."""
        return ttl + self.stale_if_error

    def fresh_for(self, ttl: float) -> float:
        """Seconds a just-loaded value of TTL ``ttl`` is answered from L1."""
        return ttl * self.refresh_ahead if self.refresh_ahead is not None else ttl

    def judge(self, remaining: float | None, ttl: float) -> tuple[Phase, float]:
        """The phase of a value stored with :meth:`stored_ttl` that has ``remaining``
        seconds left in L2, and how long L1 may keep it (FRESH only)."""
        if remaining is None:  # stored without expiry (by hand): nothing to judge by
            return Phase.FRESH, ttl
        to_expiry = remaining - self.stale_if_error
        if to_expiry <= 0:
            return Phase.EXPIRED, 0.0
        if self.refresh_ahead is None:
            return Phase.FRESH, to_expiry
        to_refresh = to_expiry - ttl * (1 - self.refresh_ahead)
        if to_refresh <= 0:
            return Phase.REFRESH, 0.0
        return Phase.FRESH, to_refresh
