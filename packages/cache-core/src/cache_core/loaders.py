"""What a loader is: the source a missing value is computed from (warm-up and read-through).

``loaders.<PLUGIN_NAME>`` in config.yaml enables a loader and holds its ``Options``; every
loader has ``match``, the key templates it answers for (all keys when empty): globs whose
``{placeholders}`` each capture one key segment (``user:{user_id}:profile``). The first
enabled loader whose templates match a key loads it, given the captured ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable


class NotFound(LookupError):
    """Raised by a loader that has no value for a key (the lookup is then a miss)."""


@runtime_checkable
class Loader(Protocol):
    """Built as ``Loader(options, context)``; ``load`` returns a JSON-able value or raises
    :class:`NotFound` (None counts as not found too). ``ids`` are what the matching template's
    placeholders captured from the key. ``start``/``close`` bracket its lifetime."""

    PLUGIN_NAME: ClassVar[str]
    match: list[str]

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def load(self, key: str, ids: Mapping[str, str]) -> Any: ...
