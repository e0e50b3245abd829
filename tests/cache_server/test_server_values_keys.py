"""Values of every JSON type round-trip exactly; keys with URL-special characters round-trip
through GET and DELETE when percent-encoded."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from yarl import URL

VALUES: dict[str, Any] = {
    "int": 42,
    "zero": 0,
    "negative": -17,
    "i64_max": 2**63 - 1,
    "i64_min": -(2**63),
    "u64_max": 2**64 - 1,
    "float": 3.141592653589793,
    "tiny_float": 5e-324,
    "huge_float": 1.7976931348623157e308,
    "negative_float": -0.1,
    "true": True,
    "false": False,
    "null": None,
    "empty_string": "",
    "string": "plain text",
    "unicode": "héllo wörld — 日本語 — Ωμέγα — 😀🎉",
    "escapes": 'quote " backslash \\ newline \n tab \t nul \u0000 del \x7f',
    "line_separators": "a\u2028b\u2029c",
    "empty_list": [],
    "empty_object": {},
    "list": [1, "two", 3.0, None, True, [], {}],
    "nested": {
        "name": "Alice",
        "level": 5,
        "scores": [98.5, 87.25, 100],
        "profile": {"tags": ["a", "b"], "meta": {"deep": {"deeper": [None, {"x": "y"}]}}},
        "ключ": "значение",
        "": "empty key",
    },
    "deep_list": [[[[[[[[[[1]]]]]]]]]],
}


def get_path(key: str) -> URL:
    """``/cache/<key>`` with every reserved character percent-encoded, sent as is."""
    return URL("/cache/" + quote(key, safe=""), encoded=True)


def exact(text: str) -> Any:
    """Decode with the stdlib (exact big ints, floats as written), to compare bit for bit."""
    return json.loads(text)


@pytest.mark.parametrize("name", list(VALUES))
async def test_value_round_trips_exactly(client, name):
    value = VALUES[name]
    key = f"value:{name}"
    resp = await client.post("/cache", json={"key": key, "value": value})
    assert resp.status == 200, await resp.text()
    resp = await client.get(f"/cache/{key}")
    body = exact(await resp.text())
    assert body == {"key": key, "value": value, "hit": True, "tier": "l1"}
    # same types, not merely equal (True == 1, 1 == 1.0)
    assert type(body["value"]) is type(value)
    assert json.dumps(body["value"], sort_keys=True) == json.dumps(value, sort_keys=True)


async def test_values_round_trip_through_the_batch_endpoints(client):
    items = {f"b:{name}": VALUES[name] for name in ("nested", "unicode", "null", "u64_max", "list")}
    resp = await client.post("/cache/batch-set", json={"items": items})
    assert await resp.json() == {"success": True, "count": len(items)}
    resp = await client.post("/cache/batch-get", json={"keys": list(items)})
    body = exact(await resp.text())
    assert body == {"results": items, "hits": len(items), "misses": 0}
    assert json.dumps(body["results"], sort_keys=True) == json.dumps(items, sort_keys=True)


@pytest.mark.parametrize("big", [2**64, 123456789012345678901234567890, -(2**63) - 1])
async def test_integer_beyond_64_bits_round_trips_or_is_refused(client, big):
    body = f'{{"key": "big", "value": {big}}}'
    resp = await client.post("/cache", data=body, headers={"Content-Type": "application/json"})
    if resp.status >= 400:  # refusing it is fine too
        return
    got = exact(await (await client.get("/cache/big")).text())
    assert got["value"] == big
    assert type(got["value"]) is int


URL_KEYS = [
    "with space",
    "  leading and trailing  ",
    "a/b",
    "a//b",
    "/leading-slash",
    "trailing-slash/",
    "a/../b",
    "100%",
    "%2F",
    "%25",
    "a%20b",
    "ü:ключ:日本:😀",
    "question?mark",
    "hash#tag",
    "plus+sign",
    "amp&er=sand",
    "semi;colon",
    "back\\slash",
    'quote"d',
    "tilde~",
    "batch-get",
    "user:*:profile",
    "[brackets]",
    "{braces}",
]


@pytest.mark.parametrize("key", URL_KEYS)
async def test_url_special_key_round_trips_through_get_and_delete(client, key):
    resp = await client.post("/cache", json={"key": key, "value": {"k": key}})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["key"] == key

    resp = await client.get(get_path(key))
    assert resp.status == 200
    assert await resp.json() == {"key": key, "value": {"k": key}, "hit": True, "tier": "l1"}

    resp = await client.delete(get_path(key))
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["key"] == key
    assert body.get("deleted", True) is True

    resp = await client.get(get_path(key))
    body = await resp.json()
    assert body["key"] == key
    assert body["hit"] is False


async def test_encoded_and_decoded_spellings_are_different_keys(client):
    await client.post("/cache", json={"key": "a b", "value": "space"})
    await client.post("/cache", json={"key": "a%20b", "value": "literal"})
    assert (await (await client.get(get_path("a b"))).json())["value"] == "space"
    assert (await (await client.get(get_path("a%20b"))).json())["value"] == "literal"


async def test_key_of_max_length_is_accepted(client, config_factory):
    key = "k" * config_factory()["limits"]["max_key_length"]
    assert (await client.post("/cache", json={"key": key, "value": 1})).status == 200
    assert (await (await client.get(f"/cache/{key}")).json())["hit"] is True
