"""Key templates: a Redis glob whose ``{placeholders}`` each capture one key segment.

``user:{user_id}:profile`` matches ``user:123:profile`` and captures ``user_id="123"``. A
placeholder captures one or more bytes but no ``:``; the rest of the template is a glob
(see :mod:`cache_core.globs`). Where a key allows several captures, each placeholder and
star takes as much as it can, left to right (a backtracking regex's answer).

Templates come from the operator's config, but the keys they are matched against come from
callers (up to ``limits.max_key_length``), so matching must stay linear in the key: a
template like ``*:{a}:*:{b}:*:x`` would make a backtracking regex try every way to place
its stars. A template is matched by one regex when that regex cannot backtrack more than
once over the key (the common ``prefix:{id}:suffix*`` shapes), else by a table over
(template step, key position) that gives the same captures in O(steps * len(key)).
"""

from __future__ import annotations

import re
from functools import lru_cache

from cache_core.globs import byte_view, from_byte_view, glob_elements

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A ``{placeholder}``, its name in group 1: the one spelling of a placeholder in key
templates, event targets and loader URLs, so each accepts the names the others do."""
_BYTES = [chr(b) for b in range(256)]

# What the regex of a template is made of, by how it can backtrack over the key:
_FIXED = 0  # one byte per element: never
_COMMITTED = 1  # a middle segment of a glob, atomic: found once, never revisited
_HELD = 2  # a possessive placeholder: takes its whole segment, never gives any back
_FREE = 3  # a star or a placeholder that gives back a byte at a time: backtracks

Step = tuple[bool, frozenset[str] | None]
"""One step of the table matcher: (repeats, the bytes it takes; None: any)."""


@lru_cache(maxsize=512)
def _chars(element: str) -> frozenset[str]:
    """The byte-view characters a one-byte glob element matches."""
    regex = re.compile(element, re.DOTALL)
    return frozenset(c for c in _BYTES if regex.fullmatch(c))


class Template:
    """A compiled key template; :meth:`ids` matches a key and returns what it captures."""

    __slots__ = ("_by_regex", "_captures", "_sources", "_steps", "placeholders", "regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.placeholders = frozenset(PLACEHOLDER.findall(text))
        tokens: list[tuple[str, str]] = []  # ("glob", text) or ("name", placeholder)
        pos = 0
        for found in PLACEHOLDER.finditer(text):
            if found.start() > pos:
                tokens.append(("glob", text[pos : found.start()]))
            tokens.append(("name", found.group(1)))
            pos = found.end()
        if text[pos:]:
            tokens.append(("glob", text[pos:]))
        elements = [glob_elements(value) if kind == "glob" else [] for kind, value in tokens]

        pieces: list[tuple[int, str, bool]] = []  # (kind, regex source, ends with a ":")
        steps: list[tuple[bool, str | None]] = []  # a Step, with the element's regex source
        captures: list[tuple[str, int]] = []  # (name, index of its first step)
        for index, (kind, value) in enumerate(tokens):
            if kind == "name":
                after = elements[index + 1] if index + 1 < len(tokens) else [":"]
                # Followed by a ":" (or the end) it must take its whole segment anyway.
                held = bool(after) and after[0] == ":"
                group = f"(?P<{value}>[^:]+{'+' if held else ''})"
                pieces.append((_HELD if held else _FREE, group, False))
                captures.append((value, len(steps)))
                steps += [(False, "[^:]"), (True, "[^:]")]
                continue
            segments: list[list[str]] = [[]]
            for element in elements[index]:
                if element is None:
                    segments.append([])
                    steps.append((True, None))
                else:
                    segments[-1].append(element)
                    steps.append((False, element))
            first, *middle = segments
            pieces.append((_FIXED, "".join(first), first[-1:] == [":"]))
            if middle:
                *middle, last = middle
                pieces += [(_COMMITTED, f"(?>.*?{''.join(s)})", False) for s in middle]
                # A star that ends the template takes the rest of the key at once.
                trailing = not last and index == len(tokens) - 1
                pieces.append((_FIXED if trailing else _FREE, ".*", False))
                pieces.append((_FIXED, "".join(last), last[-1:] == [":"]))
        self.regex = re.compile("".join(source for _, source, _ in pieces), re.DOTALL)
        self._captures = captures
        self._by_regex = _linear(pieces)
        self._sources = steps
        self._steps: list[Step] | None = None  # built on first use: most never need it

    def ids(self, key: str) -> dict[str, str] | None:
        """What the placeholders capture from ``key``, or None if it does not match."""
        view = byte_view(key)
        if not self._by_regex:
            return self._table_ids(view)
        found = self.regex.fullmatch(view)
        if found is None:
            return None
        return {name: from_byte_view(value) for name, value in found.groupdict().items()}

    def _table_ids(self, view: str) -> dict[str, str] | None:
        if self._steps is None:
            self._steps = [
                (repeats, None if source is None else _chars(source))
                for repeats, source in self._sources
            ]
        entered = _walk(self._steps, view)
        if entered is None:
            return None
        return {
            name: from_byte_view(view[entered[step] : entered[step + 2]])
            for name, step in self._captures
        }


def _linear(pieces: list[tuple[int, str, bool]]) -> bool:
    """Whether the regex of ``pieces`` runs in linear time: at most one piece backtracks,
    and what follows it is fixed, or placeholders that each start a key segment (the
    segments of distinct starts are disjoint, so trying every start reads each once)."""
    free = [i for i, (kind, _, _) in enumerate(pieces) if kind == _FREE]
    if len(free) != 1:
        return not free
    return all(
        kind == _FIXED or (kind == _HELD and pieces[i - 1][2])
        for i, (kind, _, _) in enumerate(pieces)
        if i > free[0]
    )


def _walk(steps: list[Step], view: str) -> list[int] | None:
    """Where the match of ``steps`` over all of ``view`` enters each step (and the end),
    each repeating step taking as much as it can, left to right; None without a match.

    ``ok[i][p]``: steps ``i..`` match ``view[p:]``; filled from the last step back, then
    walked forward taking the first choice that still leads to the end."""
    n, m = len(view), len(steps)
    ok = bytearray(n + 1)
    ok[n] = 1
    table = [ok]
    for repeats, chars in reversed(steps):
        after, ok = ok, bytearray(n + 1)
        if chars is None:  # a star: anywhere up to the last place the rest matches from
            last = after.rfind(1) + 1
            ok[:last] = b"\x01" * last
        elif repeats:
            for p in range(n, -1, -1):
                ok[p] = after[p] or (p < n and ok[p + 1] and view[p] in chars)
        else:
            p = after.find(1, 1)
            while p != -1:
                if view[p - 1] in chars:
                    ok[p - 1] = 1
                p = after.find(1, p + 1)
        table.append(ok)
    table.reverse()
    if not table[0][0]:
        return None
    entered = [0] * (m + 1)
    i = p = 0
    while i < m:
        repeats, chars = steps[i]
        if repeats and p < n and table[i][p + 1] and (chars is None or view[p] in chars):
            p += 1
            continue
        if not repeats:
            p += 1
        i += 1
        entered[i] = p
    return entered
