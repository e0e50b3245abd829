"""The config the testing fixtures build: the default, the test's prefix, the merge."""

from __future__ import annotations

from cache_testing.config import default_config, merged, private_prefix


def test_mappings_merge_all_the_way_down_and_the_rest_replaces() -> None:
    base = default_config("redis://127.0.0.1:1/0", "p:")
    overrides = {
        "redis": {"key_prefix": "q:"},
        "cache_tiers": {"l2": {"ttl": None}},
        "loaders": {"curriculum": {"match": ["a:*"]}},
    }
    result = merged(base, overrides)
    assert result["redis"] == {"url": "redis://127.0.0.1:1/0", "key_prefix": "q:"}
    assert result["cache_tiers"]["l2"] == {"type": "redis", "ttl": None}
    assert result["cache_tiers"]["l1"] == base["cache_tiers"]["l1"]
    assert result["loaders"] == {"curriculum": {"match": ["a:*"]}}
    assert merged({"a": {"b": 1}}, {"a": [1]}) == {"a": [1]}
    assert merged({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_neither_input_is_changed_nor_shared() -> None:
    base = {"a": {"b": [1]}}
    overrides = {"a": {"c": [2]}}
    result = merged(base, overrides)
    result["a"]["b"].append(9)
    result["a"]["c"].append(9)
    assert base == {"a": {"b": [1]}}
    assert overrides == {"a": {"c": [2]}}


def test_every_prefix_is_new() -> None:
    prefixes = {private_prefix() for _ in range(1000)}
    assert len(prefixes) == 1000
    assert all(p.endswith(":") for p in prefixes)
