"""What a loader is: the source a missing value is computed from (warm-up and read-through).

``loaders.<PLUGIN_NAME>`` in config.yaml enables a loader and holds its ``Options``; every
loader's options carry ``match``, the key globs it answers for (all keys when empty). The
first enabled loader whose globs match a key loads it; calls are single-flight per key.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable


class NotFound(LookupError):
    """Raised by a loader that has no value for a key (the lookup is then a miss)."""


@runtime_checkable
class Loader(Protocol):
    """Built as ``Loader(options, context)``; ``load`` returns a JSON-able value or raises
    :class:`NotFound`. ``match`` is the list of key globs it serves."""

    PLUGIN_NAME: ClassVar[str]
    match: list[str]

    async def load(self, key: str) -> Any: ...
