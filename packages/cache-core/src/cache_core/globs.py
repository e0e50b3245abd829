"""Redis glob patterns (SCAN MATCH syntax), compiled for matching keys the same way.

``*`` any run, ``?`` one byte, ``[abc]`` / ``[a-z]`` / ``[^a]`` a class, ``\\x`` the byte
x. L1 and L2 must agree on what a pattern selects, so this is a translation of Redis's
``stringmatchlen`` (util.c), quirks included: it works on the UTF-8 bytes of pattern and
key (``?`` is one byte of ``é``), an unclosed class runs to the end of the pattern, an empty
negated class matches any byte, and ``[a-]`` is the range ``a`` to ``]``.

Matching runs on a "byte view" of a str, its UTF-8 bytes read as Latin-1 (one character
per byte); ASCII text is its own byte view, so the common case costs nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache


def byte_view(text: str) -> str:
    """``text`` with one character per UTF-8 byte (ASCII text unchanged)."""
    return text if text.isascii() else text.encode().decode("latin-1")


def from_byte_view(text: str) -> str:
    """The str a byte view came from (text cut mid-character keeps a replacement mark)."""
    return text if text.isascii() else text.encode("latin-1").decode(errors="replace")


class Glob:
    """A compiled pattern; ``fullmatch(key)`` as Redis would match ``key``."""

    __slots__ = ("pattern", "regex")

    def __init__(self, pattern: str, source: str) -> None:
        self.pattern = source
        """The regular expression's source, over byte views (to embed in a larger one)."""
        self.regex = re.compile(source, re.DOTALL)

    def fullmatch(self, key: str) -> re.Match[str] | None:
        return self.regex.fullmatch(byte_view(key))


def _class(view: str, i: int) -> tuple[str, int]:
    """The regex of the class whose body starts at ``view[i]``, and the index after it."""
    n = len(view)
    negate = i < n and view[i] == "^"
    if negate:
        i += 1
    members: list[str] = []
    while True:
        if i < n and view[i] == "\\" and n - i >= 2:
            members.append(re.escape(view[i + 1]))
            i += 2
            continue
        if i < n and view[i] == "]":
            i += 1
            break
        if i >= n:  # unclosed: the class runs to the end of the pattern
            break
        if n - i >= 3 and view[i + 1] == "-":
            lo, hi = sorted((view[i], view[i + 2]))
            members.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
            continue
        members.append(re.escape(view[i]))
        i += 1
    if not members:
        return ("." if negate else "(?!)"), i
    return f"[{'^' if negate else ''}{''.join(members)}]", i


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Glob:
    """The :class:`Glob` that matches exactly the keys Redis matches with ``pattern``."""
    view = byte_view(pattern)
    out: list[str] = []
    i, n = 0, len(view)
    while i < n:
        c = view[i]
        if c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            part, i = _class(view, i + 1)
            out.append(part)
        elif c == "\\" and n - i >= 2:
            out.append(re.escape(view[i + 1]))
            i += 2
        else:  # a trailing lone backslash is itself, as in Redis
            out.append(re.escape(c))
            i += 1
    return Glob(pattern, "".join(out))


def is_literal(pattern: str) -> bool:
    """True when ``pattern`` has no glob metacharacters, so it names one key."""
    return not any(c in pattern for c in "*?[\\")


def glob_features(pattern: str) -> tuple[int, bool]:
    """How many unescaped ``*``/``?`` a pattern has, and whether it has a ``[`` class."""
    wildcards = 0
    has_class = False
    escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in "*?":
            wildcards += 1
        elif c == "[":
            has_class = True
    return wildcards, has_class
