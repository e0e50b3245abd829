"""Commands packed for the wire (RESP) without a call an argument.

redis-py packs each argument through its encoder and joins it onto the buffer so far: an
MGET of 100 keys costs about 55 µs of Python, a third of the whole round trip on a unix
socket, paid by every batch read. :func:`fast_packing` gives a connection class a
``pack_command`` that makes the same bytes at about a third of that cost for the commands
the tier sends most (every argument text, bytes or an integer, none of them large); any
other command (a float among its arguments, a value past the connection's buffer cutoff,
which redis-py sends as a chunk of its own rather than copying it) is packed by redis-py
itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

C = TypeVar("C", bound=type)

_PLAIN = frozenset((str, bytes, int))
"""The argument types packed here (not bool, which redis-py refuses: ``type(True)`` is bool)."""


class FastPacking:
    """A mixin over a redis-py asyncio connection class (see :func:`fast_packing`)."""

    _buffer_cutoff: int
    encoder: Any

    def pack_command(self, *args: Any) -> list[bytes]:
        if not set(map(type, args)) <= _PLAIN:
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        # As redis-py: a command name of several words ("CONFIG GET") is sent as several
        # arguments, and the other text is encoded with the connection's encoding.
        head = args[0]
        if type(head) is str:
            words = head.encode().split()
        else:
            words = head.split() if b" " in head else [head]
        encoding, errors = self.encoder.encoding, self.encoder.encoding_errors
        encoded = words + [
            a if type(a) is bytes else b"%d" % a if type(a) is int else a.encode(encoding, errors)
            for a in args[1:]
        ]
        if not encoded or max(map(len, encoded)) > self._buffer_cutoff:
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        body = b"\r\n$".join([b"%d\r\n%b" % (len(arg), arg) for arg in encoded])
        return [b"*%d\r\n$%b\r\n" % (len(encoded), body)]


def pack(args: Sequence[Any]) -> bytes:
    """``args`` (text, bytes, integers, floats) as one RESP command, for a connection of
    our own (cache_plugins_redis.wire): text in UTF-8, a float as redis-py writes it."""
    encoded = [
        a
        if type(a) is bytes
        else a.encode()
        if type(a) is str
        else b"%d" % a
        if type(a) is int
        else repr(a).encode()
        if type(a) is float
        else _other(a)
        for a in args
    ]
    body = b"\r\n$".join([b"%d\r\n%b" % (len(arg), arg) for arg in encoded])
    return b"*%d\r\n$%b\r\n" % (len(encoded), body)


def _other(arg: Any) -> bytes:
    if isinstance(arg, bytearray | memoryview):
        return bytes(arg)
    raise TypeError(f"cannot send a {type(arg).__name__} to the engine: {arg!r}")


_classes: dict[type, type] = {}


def fast_packing(connection_class: C) -> C:
    """``connection_class`` (a redis-py asyncio connection class) packing as
    :class:`FastPacking` does; the same class for the same class asked again."""
    if issubclass(connection_class, FastPacking):
        return connection_class
    made = _classes.get(connection_class)
    if made is None:
        name = f"FastPacking{connection_class.__name__}"
        made = _classes[connection_class] = type(name, (FastPacking, connection_class), {})
    return made  # type: ignore[return-value]


__all__ = ["FastPacking", "fast_packing", "pack"]
