"""Key templates and policy globs come from the config, but the keys matched against them
come from callers (up to 512 characters): matching must not backtrack over a hostile key,
and must capture what a plain backtracking regex of the template captures."""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

import pytest

from cache_core.config import load_config
from cache_core.globs import byte_view, from_byte_view, glob_elements
from cache_core.policies import PolicyTable
from cache_core.templates import PLACEHOLDER, Template


def naive_ids(text: str, key: str) -> dict[str, str] | None:
    """The reference: the template as one plain regex (a star is ``.*``, a placeholder
    ``[^:]+``), run by a backtracking engine; exponential, so only for short keys."""
    parts, pos = [], 0
    for found in PLACEHOLDER.finditer(text):
        parts.append(text[pos : found.start()])
        parts.append(f"(?P<{found.group(1)}>[^:]+)")
        pos = found.end()
    parts.append(text[pos:])
    source = "".join(
        part
        if i % 2
        else "".join(".*" if element is None else element for element in glob_elements(part))
        for i, part in enumerate(parts)
    )
    matched = re.fullmatch(source, byte_view(key), re.DOTALL)
    if matched is None:
        return None
    return {name: from_byte_view(value) for name, value in matched.groupdict().items()}


def regex_ids(template: Template, view: str) -> dict[str, str] | None:
    """What the template's own regex captures (whichever way it is matched by default)."""
    found = template.regex.fullmatch(view)
    if found is None:
        return None
    return {name: from_byte_view(value) for name, value in found.groupdict().items()}


PIECES = ["a", "b", ":", "*", "?", "[ab]", "[^:]", "\\*", "é", "{x}", "{y}", "{z}"]
KEY_CHARS = "ab:*é"


def _templates(rng: random.Random) -> set[str]:
    found = set()
    for _ in range(600):
        pieces = rng.choices(PIECES, k=rng.randint(1, 7))
        text = "".join(pieces)
        if all(text.count(name) <= 1 for name in ("{x}", "{y}", "{z}")):
            found.add(text)
    return found


def test_both_matchers_capture_what_a_backtracking_regex_captures() -> None:
    rng = random.Random(5)
    keys = ["".join(t) for n in range(5) for t in itertools.product("ab:", repeat=n)]
    keys += ["".join(rng.choices(KEY_CHARS, k=rng.randint(5, 9))) for _ in range(150)]
    templates = _templates(rng)
    disagreements = []
    matched = 0
    for text in sorted(templates):
        template = Template(text)
        for key in keys:
            expected = naive_ids(text, key)
            matched += expected is not None
            view = byte_view(key)
            by_regex, by_table = regex_ids(template, view), template._table_ids(view)
            if not expected == by_regex == by_table == template.ids(key):
                disagreements.append((text, key, expected, by_regex, by_table))
    assert disagreements == []
    assert matched > len(templates)  # the keys do exercise the captures


@pytest.mark.parametrize(
    ("text", "by_regex"),
    [
        ("user:{user_id}:{resource}", True),
        ("user:{user_id}:learning_path*", True),
        ("model:{model_name}:{input_hash}", True),
        ("{id}", True),
        ("v{major}.x", True),  # one placeholder gives back bytes; what follows is fixed
        ("v{major}.{minor}", False),  # each byte given back: {minor} reads the rest again
        ("user:{id}:*a*a*b", True),
        ("*:{id}:*a*a*b", False),
        ("*:{a}:*:{b}:*:x", False),
        ("{a}*{b}*x", False),
        ("*{id}", False),
    ],
)
def test_regex_serves_the_templates_it_runs_in_linear_time(text: str, by_regex: bool) -> None:
    assert Template(text)._by_regex is by_regex


HOSTILE = [  # (template, a key it backtracks over, a key it matches)
    ("user:{id}:*a*a*a*a*a*b", "user:1:" + "a" * 500, "user:1:" + "a" * 500 + "b"),
    ("*a*a*a*a*a*a*a*b:{id}", "a" * 500 + ":x", "a" * 500 + "b:x"),
    ("{a}*{b}*x", "a" * 512, "a" * 511 + "x"),
    ("{a}{b}{c}{d}x", "a" * 512, "a" * 511 + "x"),
    ("*{a}*{b}*:x", "a" * 511 + ":", "a" * 510 + ":x"),
    ("*:{a}:*:{b}:*:{c}:*:x", ":a" * 256, ":a" * 255 + ":x"),
    ("{a}*{b}*{c}:x", "a" * 512, "a" * 510 + ":x"),
    ("{a}*:{b}*:{c}*:{d}*:{e}*:x", "a:" * 256, "a:" * 255 + "x"),
    ("*:*:*:*:{a}:*:*:*:*:x", ":" * 512, "::::a:::::x"),
]


@pytest.mark.parametrize(("text", "hostile", "matching"), HOSTILE)
def test_hostile_keys_match_templates_in_linear_time(
    text: str, hostile: str, matching: str, deadline: Any
) -> None:
    template = Template(text)
    rng = random.Random(text)
    keys = [hostile] + ["".join(rng.choices(hostile[:2] + ":x", k=512)) for _ in range(49)]
    with deadline(5.0):
        for key in keys:
            template.ids(key)
        assert template.ids(hostile) is None
        assert template.ids(matching) is not None


def test_policy_globs_match_hostile_keys_in_linear_time(deadline: Any) -> None:
    policies = {
        "odd": {"match": ["*a*a*a*a*a*a*a*b", "*[ab]*?*a*a*a*a*a*c"], "ttl": 5},
        "rest": {"match": ["*"], "ttl": 7},
    }
    table = PolicyTable(load_config({"cache_policies": policies}, env={}))
    keys = ["a" * 512, "a" * 500 + "é" * 6] + ["a" * n + "b" for n in range(400, 511, 37)]
    with deadline(5.0):
        found = [table.match(key) for key in keys * 100]
    assert [policy.name if policy else None for policy in found[: len(keys)]] == ["rest"] * 2 + [
        "odd"
    ] * (len(keys) - 2)
