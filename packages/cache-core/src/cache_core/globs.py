"""Redis glob patterns (SCAN MATCH syntax), compiled for matching L1 keys the same way.

``*`` any run, ``?`` one character, ``[abc]`` / ``[a-z]`` / ``[^a]`` a class, ``\\x`` the
character x. L1 and L2 must agree on what a pattern selects, so this follows Redis's
``stringmatchlen`` rather than :mod:`fnmatch` (which spells negation ``[!a]``).
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """A compiled regular expression that matches exactly the keys ``pattern`` matches."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] == "^" else i + 1)
            if end == -1:  # Redis treats an unclosed class as running to the end
                end = n
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            parts = []
            j = 0
            while j < len(body):
                if body[j] == "\\" and j + 1 < len(body):
                    parts.append(re.escape(body[j + 1]))
                    j += 2
                elif j + 2 < len(body) and body[j + 1] == "-":
                    lo, hi = sorted((body[j], body[j + 2]))
                    parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 3
                else:
                    parts.append(re.escape(body[j]))
                    j += 1
            out.append(f"[{'^' if negate else ''}{''.join(parts)}]" if parts else "(?!)")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


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
