"""Redis glob patterns (SCAN MATCH syntax), compiled for matching keys the same way.

``*`` any run, ``?`` one byte, ``[abc]`` / ``[a-z]`` / ``[^a]`` a class, ``\\x`` the byte
x. L1 and L2 must agree on what a pattern selects, so this follows Redis's
``stringmatchlen`` (util.c), quirks included: it works on the UTF-8 bytes of pattern and
key (``?`` is one byte of ``é``), an unclosed class runs to the end of the pattern, an empty
negated class matches any byte, ``[a-]`` is the range ``a`` to ``]``, and a range compares
bytes as C's signed ``char`` does on x86-64 (``[a-\\xa9]`` is ``\\xa9``..``\\xff`` plus
``\\x00``..``a``; an engine built where ``char`` is unsigned, as on ARM, differs there).

Matching runs on a "byte view" of a str, its UTF-8 bytes read as Latin-1 (one character
per byte); ASCII text is its own byte view, so the common case costs nothing.

Matching takes O(len(key) * len(pattern)) whatever the pattern: a caller's pattern, or a
peer's change notice, is matched against every L1 key, so ``*a*a*a*a*b`` must not
backtrack. Every element but ``*`` matches exactly one byte, so a pattern is fixed-width
segments between stars, and the leftmost place for each middle segment is as good as any
later one (the star after it absorbs the difference): the regex commits to it with an atomic
group. This is the two-pointer wildcard algorithm with its single backtrack point, run by
the regex engine in C.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
        """The regular expression's source, over byte views: embedded in a larger regex it
        still matches exactly the glob, and backtracks only at its last star (what else in
        that regex backtracks is the embedder's care: see :mod:`cache_core.templates`)."""
        self.regex = re.compile(source, re.DOTALL)

    def fullmatch(self, key: str) -> re.Match[str] | None:
        return self.regex.fullmatch(byte_view(key))


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _range(lo: str, hi: str) -> str:
    """Class members for the range ``lo-hi``, whose ends Redis compares as signed chars."""
    first, last = sorted((_signed(ord(lo)), _signed(ord(hi))))
    if first < 0 <= last:  # wraps around in unsigned order: two runs
        return f"\\x00-{re.escape(chr(last))}{re.escape(chr(first + 256))}-\\xff"
    return f"{re.escape(chr(first % 256))}-{re.escape(chr(last % 256))}"


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
            members.append(_range(view[i], view[i + 2]))
            i += 3
            continue
        members.append(re.escape(view[i]))
        i += 1
    if not members:
        return ("." if negate else "(?!)"), i
    return f"[{'^' if negate else ''}{''.join(members)}]", i


def glob_elements(pattern: str) -> list[str | None]:
    """The elements of ``pattern`` in order: ``None`` for a run of stars, else the regex
    source (over byte views) of an element that matches exactly one byte."""
    view = byte_view(pattern)
    elements: list[str | None] = []
    i, n = 0, len(view)
    while i < n:
        c = view[i]
        if c == "*":
            if not elements or elements[-1] is not None:  # a run of stars is one star
                elements.append(None)
            i += 1
        elif c == "?":
            elements.append(".")
            i += 1
        elif c == "[":
            part, i = _class(view, i + 1)
            elements.append(part)
        elif c == "\\" and n - i >= 2:
            elements.append(re.escape(view[i + 1]))
            i += 2
        else:  # a trailing lone backslash is itself, as in Redis
            elements.append(re.escape(c))
            i += 1
    return elements


def _segments(pattern: str) -> list[str]:
    """The fixed-width segments of ``pattern`` (regex sources), split where it has stars:
    ``a*b?*c`` gives ``["a", "b.", "c"]``, ``*`` gives ``["", ""]``."""
    segments = [""]
    for element in glob_elements(pattern):
        if element is None:
            segments.append("")
        else:
            segments[-1] += element
    return segments


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Glob:
    """The :class:`Glob` that matches exactly the keys Redis matches with ``pattern``."""
    segments = _segments(pattern)
    if len(segments) == 1:  # no star
        return Glob(pattern, segments[0])
    first, *middle, last = segments
    # A middle segment commits to its leftmost place; the last one stays free to move, so
    # that whatever follows the glob in a larger regex can still pick where it ends.
    committed = "".join(f"(?>.*?{segment})" for segment in middle)
    return Glob(pattern, f"{first}{committed}.*{last}")


def matcher(pattern: str) -> Callable[[str], object]:
    """A predicate, truthy for the keys ``pattern`` matches, for sweeps over many keys:
    plain ``str`` comparisons where the pattern allows (a literal, ``prefix*``,
    ``*suffix``), else the compiled glob's ``fullmatch``. UTF-8 never starts or ends one
    character's bytes inside another's, so those comparisons agree with the byte view."""
    if is_literal(pattern):
        return pattern.__eq__
    head, star, tail = pattern.partition("*")
    rest = tail.lstrip("*")
    if star and is_literal(head) and not rest:
        return lambda key: key.startswith(head)
    if star and not head and is_literal(rest):
        return lambda key: key.endswith(rest)
    return compile_glob(pattern).fullmatch


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
