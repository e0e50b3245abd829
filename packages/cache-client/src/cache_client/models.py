"""What the client answers beyond plain values."""

from __future__ import annotations

from typing import Any

from attrs import define


@define(frozen=True)
class Hit:
    """A found key's value and the tier that answered: ``l1`` (the server's memory), ``l2``
    (Redis, or a write-back write not flushed yet) or ``loader`` (computed on the miss)."""

    value: Any
    tier: str
