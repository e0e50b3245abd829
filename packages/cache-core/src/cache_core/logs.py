"""Structured logging as the product description writes it, over the standard library.

::

    from cache_core.logs import logger

    logger.info("cache_hit", key="user:123", tier="l1")
    logger.warning("cache_miss", key="user:456")
    logger.error("cache_error", error=str(e))

The message is the event's name and every keyword is one of its fields: they land in the
record's ``extra``, so any handler sees them as record attributes, and the server's
formatters (:mod:`cache_server.logs`) write them as JSON fields or ``key=value`` pairs.
``exc_info``, ``stack_info``, ``stacklevel`` and ``extra`` keep their stdlib meaning.

A disabled level costs one cached ``isEnabledFor`` check, before any keyword is looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

_STDLIB_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})

# Attributes every LogRecord has: a field of the same name would make ``makeRecord`` raise.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class StructuredLogger(logging.LoggerAdapter[logging.Logger]):
    """A :class:`logging.Logger` whose methods take the event's fields as keywords."""

    def __init__(self, logger: logging.Logger, extra: Mapping[str, object] | None = None) -> None:
        super().__init__(logger, extra)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        fields: dict[str, Any] = dict(self.extra) if self.extra else {}
        given = kwargs.get("extra")
        if given:
            fields.update(given)
        stdlib: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in _STDLIB_KWARGS:
                if name != "extra":
                    stdlib[name] = value
            else:
                fields[name] = value
        # A field named like a record attribute (``name``, ``msg``, ``module``...) is kept
        # under ``<name>_`` rather than losing the whole line to a KeyError.
        stdlib["extra"] = {
            (f"{name}_" if name in _RECORD_ATTRIBUTES else name): value
            for name, value in fields.items()
        }
        return msg, stdlib


def get_logger(name: str) -> StructuredLogger:
    """The structured logger over the stdlib logger ``name`` (levels and handlers are its)."""
    return StructuredLogger(logging.getLogger(name))


logger = get_logger("caching_agent")
"""The ready-made logger of the description's examples (stdlib logger ``caching_agent``)."""
