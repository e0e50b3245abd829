"""compile_glob follows Redis's glob (SCAN MATCH / KEYS) semantics, so L1 and L2 agree.

``redis_match`` below is a line-by-line port of ``stringmatchlen`` from Redis's
``src/util.c`` (case-sensitive, on bytes). Every row of the table is checked against the
port as well as against compile_glob, so the table's expectations are Redis's own.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from cache_core.globs import compile_glob, is_literal, matcher


def signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def redis_match(pattern: bytes, string: bytes) -> bool:
    """Port of Redis ``stringmatchlen(pattern, string, nocase=0)``."""
    skip_longer = [False]
    p_buf = pattern + b"\0"  # C strings end in NUL; the class loop may read it

    def impl(p: int, plen: int, s: int, slen: int, nesting: int) -> bool:
        if nesting > 1000:
            return False
        while plen and slen:
            c = p_buf[p]
            if c == ord("*"):
                while plen and p_buf[p + 1] == ord("*"):
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p + 1, plen - 1, s, slen, nesting + 1):
                        return True
                    if skip_longer[0]:
                        return False
                    s += 1
                    slen -= 1
                skip_longer[0] = True
                return False
            if c == ord("?"):
                s += 1
                slen -= 1
            elif c == ord("["):
                p += 1
                plen -= 1
                negate = p_buf[p] == ord("^")
                if negate:
                    p += 1
                    plen -= 1
                matched = False
                while True:
                    if p_buf[p] == ord("\\") and plen >= 2:
                        p += 1
                        plen -= 1
                        matched |= p_buf[p] == string[s]
                    elif p_buf[p] == ord("]"):
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and p_buf[p + 1] == ord("-"):
                        # C's char is signed (x86-64): bytes past 0x7f compare below NUL
                        lo, hi = sorted((signed(p_buf[p]), signed(p_buf[p + 2])))
                        p += 2
                        plen -= 2
                        matched |= lo <= signed(string[s]) <= hi
                    else:
                        matched |= p_buf[p] == string[s]
                    p += 1
                    plen -= 1
                if negate:
                    matched = not matched
                if not matched:
                    return False
                s += 1
                slen -= 1
            else:
                if c == ord("\\") and plen >= 2:
                    p += 1
                    plen -= 1
                if p_buf[p] != string[s]:
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while p_buf[p] == ord("*"):
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(0, len(pattern), 0, len(string), 0)


def glob_matches(pattern: str, key: str) -> bool:
    return compile_glob(pattern).fullmatch(key) is not None


CASES = [
    # * : any run, including none
    ("*", "anything", True),
    ("user:*", "user:", True),
    ("user:*:profile", "user:123:profile", True),
    ("user:*:profile", "user:1:2:profile", True),
    ("user:*:profile", "user:123:settings", False),
    ("*a*b*", "xaybz", True),
    ("*a*b*", "xbya", False),
    ("h*llo", "hllo", True),
    ("h*llo", "heeeello", True),
    ("**x", "abx", True),
    # ? : exactly one character (a newline too)
    ("h?llo", "hello", True),
    ("h?llo", "hllo", False),
    ("h?llo", "heello", False),
    ("a?b", "a\nb", True),
    # classes
    ("h[ae]llo", "hello", True),
    ("h[ae]llo", "hallo", True),
    ("h[ae]llo", "hillo", False),
    ("h[^e]llo", "hallo", True),
    ("h[^e]llo", "hello", False),
    ("h[a-b]llo", "hbllo", True),
    ("h[a-b]llo", "hcllo", False),
    ("h[b-a]llo", "hallo", True),  # a reversed range is swapped
    ("h[^a-c]llo", "hdllo", True),
    ("h[^a-c]llo", "hbllo", False),
    ("[!a]x", "!x", True),  # ! is not negation in Redis (fnmatch would say so)
    ("[!a]x", "bx", False),
    ("[*?]", "*", True),
    ("[*?]", "a", False),
    ("[a\\-z]", "-", True),
    ("[a\\-z]", "m", False),
    ("[\\\\]", "\\", True),
    ("[abc", "b", True),  # an unclosed class runs to the end of the pattern
    ("[abc", "[", False),
    # escapes
    ("\\*", "*", True),
    ("\\*", "a", False),
    ("a\\?", "a?", True),
    ("a\\?", "ab", False),
    ("\\[a]", "[a]", True),
    ("\\a", "a", True),
    ("a\\", "a\\", True),  # a trailing backslash is literal
    # everything else is literal, including regex metacharacters
    ("a.b", "a.b", True),
    ("a.b", "axb", False),
    ("a+b", "a+b", True),
    ("a+b", "aab", False),
    ("(x)|y", "(x)|y", True),
    ("(x)|y", "y", False),
    ("{id}", "{id}", True),
    ("^$", "^$", True),
    # whole-key match, case-sensitive
    ("ab", "abc", False),
    ("ab", "a", False),
    ("User", "user", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_table_agrees_with_redis(pattern: str, key: str, expected: bool) -> None:
    assert redis_match(pattern.encode(), key.encode()) is expected  # the table is Redis's
    assert glob_matches(pattern, key) is expected


# Well-formed pieces of patterns; any sequence of them must match what Redis matches.
TOKENS = [
    "a",
    "b",
    ":",
    ".",
    "*",
    "?",
    "\\*",
    "\\?",
    "\\[",
    "\\\\",
    "[ab]",
    "[^a]",
    "[a-c]",
    "[c-a]",
    "[^a-b]",
    "[*?]",
    "[a\\-]",
]
ALPHABET = "abc*?\\-"


def _keys() -> list[str]:
    return ["".join(t) for n in (1, 2, 3) for t in itertools.product(ALPHABET, repeat=n)]


def test_generated_patterns_agree_with_redis() -> None:
    rng = random.Random(6379)
    patterns = ["".join(t) for n in (1, 2) for t in itertools.product(TOKENS, repeat=n)]
    patterns += ["".join(rng.choices(TOKENS, k=rng.randint(3, 5))) for _ in range(100)]
    keys = _keys()
    disagreements = [
        (pattern, key)
        for pattern in patterns
        for key in keys
        if glob_matches(pattern, key) != redis_match(pattern.encode(), key.encode())
    ]
    assert disagreements == []


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        pytest.param("[\\]]", "]", True, id="escaped-close-bracket"),
        pytest.param("[a\\]b]", "b", True, id="escaped-close-bracket-mid-class"),
        pytest.param("[a\\]b]", "\\b]", False, id="escaped-close-bracket-not-backslash"),
        pytest.param("x[\\]]y", "x]y", True, id="escaped-close-bracket-in-key"),
    ],
)
def test_escaped_bracket_inside_class(pattern: str, key: str, expected: bool) -> None:
    assert redis_match(pattern.encode(), key.encode()) is expected
    assert glob_matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        pytest.param("[^]", "x", True, id="empty-negated-class-matches-any-char"),
        pytest.param("a[^", "ab", True, id="unclosed-empty-negated-class"),
        pytest.param("[a-]", "_", True, id="trailing-dash-is-a-range-to-bracket"),
        pytest.param("[a-]", "-", False, id="trailing-dash-is-not-a-literal-dash"),
    ],
)
def test_edge_classes_follow_redis(pattern: str, key: str, expected: bool) -> None:
    assert redis_match(pattern.encode(), key.encode()) is expected
    assert glob_matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        pytest.param("user:?", "user:é", False, id="question-mark-is-one-byte"),
        pytest.param("user:??", "user:é", True, id="two-bytes-of-one-character"),
        # é is C3 A9: the range is a..\xc3, whose ends C compares as signed chars
        pytest.param("[a-é]", "b", False, id="range-to-a-high-byte-wraps-below-a"),
        pytest.param("[a-é]", "_", True, id="range-to-a-high-byte-keeps-ascii-below"),
    ],
)
def test_non_ascii_keys_match_bytewise_like_redis(pattern: str, key: str, expected: bool) -> None:
    assert redis_match(pattern.encode(), key.encode()) is expected
    assert glob_matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("user:1:profile", True),
        ("a]b", True),
        ("a-b^c", True),
        ("user:*", False),
        ("user:?", False),
        ("user:[ab]", False),
        ("user\\:1", False),
    ],
)
def test_is_literal(pattern: str, literal: bool) -> None:
    assert is_literal(pattern) is literal
    if literal:  # a literal pattern matches itself and nothing else
        assert glob_matches(pattern, pattern)
        assert redis_match(pattern.encode(), pattern.encode())


# Patterns within the caller limits (8 wildcards) that a backtracking matcher takes
# O(len(key) ** stars) steps to refuse; the issue's own is first.
PATHOLOGICAL = [
    "*a*a*a*a*a*a*a*b",
    "*a*a*a*a*a*a*a*a*b",
    "a*a*a*a*a*a*a*a",
    "*?*?*?*?*?*?*?*b",
    "*[ab]*[ab]*[^b]*\\a*a*a*[a-b]*c",
    "*aa*aa*aa*aa*aa*aa*aa*ab",
    "*é*é*é*é*é*é*é*x",
    "*a" * 60 + "b",  # a peer's change notice is not held to the caller limits
]


@pytest.mark.parametrize("pattern", PATHOLOGICAL)
def test_pathological_patterns_match_in_linear_time(pattern: str, deadline: Any) -> None:
    rng = random.Random(pattern)
    keys = ["a" * 500, "a" * 512, "a" * 511 + "b", "é" * 256, "a" * 400 + "é" * 56]
    keys += ["".join(rng.choices("aab", k=512)) for _ in range(1000 - len(keys))]
    with deadline(5.0):
        ours = [glob_matches(pattern, key) for key in keys]
    assert ours == [redis_match(pattern.encode(), key.encode()) for key in keys]


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*a*a*a*a*a*a*a*b", "a" * 500 + "b", True),
        ("*a*a*a*a*a*a*a*b", "a" * 500, False),
        ("a*a*a*a*a*a*a*a", "a" * 511 + "b", False),
        ("a*a*a*a*a*a*a*a", "a" * 8, True),
        ("*ab*ab*ab", "abab", False),  # the segments may not overlap
        ("*ab*ab*ab", "ababab", True),
        ("*aba*", "abba", False),
        ("*aba*", "xxababa", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("a*?", "a", False),
        ("a*?", "ab", True),
        ("?*?", "é", True),  # two bytes
        ("*[^a]", "a" * 300 + "é", True),
    ],
)
def test_long_and_overlapping_segments_agree_with_redis(
    pattern: str, key: str, expected: bool, deadline: Any
) -> None:
    assert redis_match(pattern.encode(), key.encode()) is expected
    with deadline(5.0):
        assert glob_matches(pattern, key) is expected


# Random patterns over every metacharacter (so unclosed classes, lone backslashes, `[a-]`,
# `[^]` and reversed ranges come up) and a two-byte character, against keys that often
# match them: the engine's own SCAN MATCH is the reference.
PATTERN_CHARS = "ab-é*?[]^\\"
KEY_CHARS = "ab-é]^\\*?["


def _random_key_for(pattern: str, rng: random.Random) -> str:
    """A key shaped like ``pattern``: its wildcards filled in, so it often matches."""
    out = []
    for c in pattern:
        if c == "*":
            out.append("".join(rng.choices(KEY_CHARS, k=rng.randint(0, 3))))
        elif c in "?[]^\\" and rng.random() < 0.7:
            out.append(rng.choice(KEY_CHARS))
        else:
            out.append(c)
    return "".join(out)


def test_generated_patterns_agree_with_the_engine(engine: Any, prefix: str) -> None:
    rng = random.Random(16379)
    patterns = {"".join(rng.choices(PATTERN_CHARS, k=rng.randint(1, 8))) for _ in range(400)}
    patterns |= {"".join(rng.choices(TOKENS, k=rng.randint(1, 4))) for _ in range(100)}
    keys = {"".join(rng.choices(KEY_CHARS, k=rng.randint(0, 6))) for _ in range(300)}
    keys |= {_random_key_for(p, rng) for p in patterns}
    client = engine.client
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(prefix + key, b"1", ex=60)
    pipe.execute()
    disagreements = []
    for pattern in sorted(patterns):
        # The prefix is plain text ([0-9a-z:]), so it is its own glob.
        found = client.scan_iter(match=(prefix + pattern).encode(), count=10_000)
        by_engine = {raw.decode()[len(prefix) :] for raw in found}
        ours = {key for key in keys if glob_matches(pattern, key)}
        if by_engine != ours:
            disagreements.append((pattern, sorted(by_engine ^ ours)))
    client.delete(*(prefix + key for key in keys))
    assert disagreements == []
    assert sum(glob_matches(p, k) for p in patterns for k in keys) > len(patterns)


@pytest.mark.parametrize(
    "pattern",
    ["ab", "a*", "a**", "*b", "**b", "*", "**", "é*", "*é", "a*b", "a\\*", "\\**", "*\\*", "[a]*"],
)
def test_matcher_agrees_with_the_glob(pattern: str) -> None:
    keys = [*_keys(), "", "é", "éa", "aé", "a\\*", "ab*"]
    match = matcher(pattern)
    assert [key for key in keys if match(key)] == [k for k in keys if glob_matches(pattern, k)]
