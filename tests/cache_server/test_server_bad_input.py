"""Malformed requests: each gets a 4xx ``{"error": {"code", "message"}}`` and changes nothing.

Limits come from the test config (conftest ``LIMITS``): keys up to 64 characters, values up
to 2048 bytes of JSON, batches of 5, warm-ups of 5, request bodies up to 16 KiB.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from yarl import URL

MAX_KEY = 64
MAX_VALUE = 2048
MAX_BATCH = 5
MAX_WARMUP = 5
MAX_REQUEST = 16 * 1024

JSON_HEADERS = {"Content-Type": "application/json"}

# What is cached before every bad request; none of it may change.
KNOWN: dict[str, dict[str, Any]] = {
    "user:1:profile": {"value": {"name": "Alice", "level": 5}, "tags": ["user", "profile"]},
    "user:2:profile": {"value": {"name": "Bob"}, "tags": ["user"]},
    "content:1": {"value": "Algebra", "tags": ["content"]},
    "k": {"value": [1, 2, 3], "tags": ["u", "s", "e", "r"]},
}


def raw(body: str | bytes) -> dict[str, Any]:
    return {"data": body if isinstance(body, bytes) else body.encode(), "headers": JSON_HEADERS}


def body(payload: Any) -> dict[str, Any]:
    return raw(orjson.dumps(payload))


def path(encoded: str) -> URL:
    return URL(encoded, encoded=True)


def case(
    name: str,
    method: str,
    target: str | URL,
    kwargs: dict[str, Any] | None,
    status: int,
    code: str,
) -> Any:
    return pytest.param(method, target, kwargs or {}, status, code, id=name)


LONG_KEY = "k" * (MAX_KEY + 1)
BIG_VALUE = "x" * MAX_VALUE  # 2050 bytes as JSON

BAD_REQUESTS = [
    # -- body is not a JSON object ------------------------------------------------------
    case("set-bad-json", "POST", "/cache", raw('{"key": "a", "value": '), 400, "invalid_json"),
    case(
        "set-trailing-comma",
        "POST",
        "/cache",
        raw('{"key": "a", "value": 1,}'),
        400,
        "invalid_json",
    ),
    case("set-nan", "POST", "/cache", raw('{"key": "a", "value": NaN}'), 400, "invalid_json"),
    case("set-empty-body", "POST", "/cache", raw(b""), 400, "invalid_json"),
    case(
        "set-not-utf8",
        "POST",
        "/cache",
        raw(b'{"key": "\xff\xfe", "value": 1}'),
        400,
        "invalid_json",
    ),
    case(
        "set-body-list", "POST", "/cache", body([{"key": "a", "value": 1}]), 400, "invalid_request"
    ),
    case("set-body-string", "POST", "/cache", body("key=a"), 400, "invalid_request"),
    case("set-body-null", "POST", "/cache", raw("null"), 400, "invalid_request"),
    case("batch-get-body-number", "POST", "/cache/batch-get", raw("42"), 400, "invalid_request"),
    case("invalidate-bad-json", "POST", "/invalidate", raw("{pattern: *}"), 400, "invalid_json"),
    case("warm-up-bad-json", "POST", "/warm-up", raw("{"), 400, "invalid_json"),
    # -- POST /cache fields ---------------------------------------------------------------
    case("set-key-missing", "POST", "/cache", body({"value": 1}), 400, "invalid_request"),
    case("set-value-missing", "POST", "/cache", body({"key": "a"}), 400, "invalid_request"),
    case("set-key-int", "POST", "/cache", body({"key": 1, "value": 1}), 400, "invalid_request"),
    case("set-key-null", "POST", "/cache", body({"key": None, "value": 1}), 400, "invalid_request"),
    case("set-key-empty", "POST", "/cache", body({"key": "", "value": 1}), 400, "invalid_key"),
    case(
        "set-key-newline",
        "POST",
        "/cache",
        body({"key": "user:1\nprofile", "value": 1}),
        400,
        "invalid_key",
    ),
    case("set-key-nul", "POST", "/cache", body({"key": "a\x00b", "value": 1}), 400, "invalid_key"),
    case("set-key-del", "POST", "/cache", body({"key": "a\x7f", "value": 1}), 400, "invalid_key"),
    case(
        "set-key-c1-control",
        "POST",
        "/cache",
        body({"key": "a\x85b", "value": 1}),
        400,
        "invalid_key",
    ),
    case(
        "set-key-too-long",
        "POST",
        "/cache",
        body({"key": LONG_KEY, "value": 1}),
        400,
        "invalid_key",
    ),
    case(
        "set-value-too-large",
        "POST",
        "/cache",
        body({"key": "a", "value": BIG_VALUE}),
        400,
        "invalid_value",
    ),
    case(
        "set-unknown-strategy",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "strategy": "write_sideways"}),
        400,
        "unknown_name",
    ),
    case(
        "set-strategy-int",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "strategy": 1}),
        400,
        "invalid_request",
    ),
    case(
        "set-unknown-ttl-preset",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "ttl": "forever"}),
        400,
        "unknown_name",
    ),
    case(
        "set-negative-ttl",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "ttl": -5}),
        400,
        "invalid_value",
    ),
    case(
        "set-zero-ttl",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "ttl": 0}),
        400,
        "invalid_value",
    ),
    case(
        "set-bool-ttl",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "ttl": True}),
        400,
        "invalid_request",
    ),
    case(
        "set-list-ttl",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "ttl": [60]}),
        400,
        "invalid_request",
    ),
    case(
        "set-tags-ints",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "tags": [1]}),
        400,
        "invalid_request",
    ),
    case(
        "set-tags-empty-name",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "tags": [""]}),
        400,
        "invalid_value",
    ),
    case(
        "set-tags-string",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "tags": "user"}),
        400,
        "invalid_request",
    ),
    case(
        "set-dependencies-string",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "dependencies": "user:1"}),
        400,
        "invalid_request",
    ),
    case(
        "set-dependency-empty",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "dependencies": [""]}),
        400,
        "invalid_key",
    ),
    case(
        "set-unknown-field",
        "POST",
        "/cache",
        body({"key": "a", "value": 1, "ttl_s": 5}),
        400,
        "invalid_request",
    ),
    # -- batch-get / batch-set ------------------------------------------------------------
    case(
        "batch-get-too-many",
        "POST",
        "/cache/batch-get",
        body({"keys": [f"k{i}" for i in range(MAX_BATCH + 1)]}),
        400,
        "invalid_value",
    ),
    case("batch-get-keys-missing", "POST", "/cache/batch-get", body({}), 400, "invalid_request"),
    case(
        "batch-get-keys-ints",
        "POST",
        "/cache/batch-get",
        body({"keys": [1, 2]}),
        400,
        "invalid_request",
    ),
    case(
        "batch-get-key-empty",
        "POST",
        "/cache/batch-get",
        body({"keys": ["k", ""]}),
        400,
        "invalid_key",
    ),
    case(
        "batch-get-key-too-long",
        "POST",
        "/cache/batch-get",
        body({"keys": [LONG_KEY]}),
        400,
        "invalid_key",
    ),
    case(
        "batch-get-keys-string",
        "POST",
        "/cache/batch-get",
        body({"keys": "k"}),
        400,
        "invalid_request",
    ),
    case(
        "batch-get-keys-object",
        "POST",
        "/cache/batch-get",
        body({"keys": {"k": 1}}),
        400,
        "invalid_request",
    ),
    case(
        "batch-get-unknown-field",
        "POST",
        "/cache/batch-get",
        body({"keys": ["k"], "x": 1}),
        400,
        "invalid_request",
    ),
    case(
        "batch-set-too-many",
        "POST",
        "/cache/batch-set",
        body({"items": {f"n{i}": i for i in range(MAX_BATCH + 1)}}),
        400,
        "invalid_value",
    ),
    case(
        "batch-set-items-list",
        "POST",
        "/cache/batch-set",
        body({"items": [["n", 1]]}),
        400,
        "invalid_request",
    ),
    case(
        "batch-set-items-missing",
        "POST",
        "/cache/batch-set",
        body({"ttl": 5}),
        400,
        "invalid_request",
    ),
    case(
        "batch-set-empty-key",
        "POST",
        "/cache/batch-set",
        body({"items": {"n": 1, "": 2}}),
        400,
        "invalid_key",
    ),
    case(
        "batch-set-long-key",
        "POST",
        "/cache/batch-set",
        body({"items": {"n": 1, LONG_KEY: 2}}),
        400,
        "invalid_key",
    ),
    case(
        "batch-set-value-too-large",
        "POST",
        "/cache/batch-set",
        body({"items": {"n": 1, "m": BIG_VALUE}}),
        400,
        "invalid_value",
    ),
    case(
        "batch-set-unknown-strategy",
        "POST",
        "/cache/batch-set",
        body({"items": {"n": 1}, "strategy": "nope"}),
        400,
        "unknown_name",
    ),
    case(
        "batch-set-negative-ttl",
        "POST",
        "/cache/batch-set",
        body({"items": {"n": 1}, "ttl": -1}),
        400,
        "invalid_value",
    ),
    case(
        "batch-set-tags-string",
        "POST",
        "/cache/batch-set",
        body({"items": {"n": 1}, "tags": "user"}),
        400,
        "invalid_request",
    ),
    # -- /invalidate ----------------------------------------------------------------------
    case("invalidate-no-field", "POST", "/invalidate", body({}), 400, "invalid_request"),
    case(
        "invalidate-only-context",
        "POST",
        "/invalidate",
        body({"context": {"user_id": 1}}),
        400,
        "invalid_request",
    ),
    case(
        "invalidate-empty-tags-only",
        "POST",
        "/invalidate",
        body({"tags": []}),
        400,
        "invalid_request",
    ),
    case(
        "invalidate-unknown-event",
        "POST",
        "/invalidate",
        body({"event": "moon_landing"}),
        400,
        "unknown_event",
    ),
    case(
        "invalidate-context-not-object",
        "POST",
        "/invalidate",
        body({"event": "user_profile_update", "context": ["user_id", 1]}),
        400,
        "invalid_request",
    ),
    case(
        "invalidate-empty-pattern", "POST", "/invalidate", body({"pattern": ""}), 400, "invalid_key"
    ),
    case(
        "invalidate-pattern-int",
        "POST",
        "/invalidate",
        body({"pattern": 5}),
        400,
        "invalid_request",
    ),
    case(
        "invalidate-pattern-control-char",
        "POST",
        "/invalidate",
        body({"pattern": "user:\t*"}),
        400,
        "invalid_key",
    ),
    case(
        "invalidate-pattern-too-long",
        "POST",
        "/invalidate",
        body({"pattern": "*" + "x" * MAX_KEY}),
        400,
        "invalid_key",
    ),
    case(
        "invalidate-tags-empty-name",
        "POST",
        "/invalidate",
        body({"tags": ["user", ""]}),
        400,
        "invalid_value",
    ),
    case(
        "invalidate-tags-string",
        "POST",
        "/invalidate",
        body({"tags": "user"}),
        400,
        "invalid_request",
    ),
    case(
        "invalidate-unknown-field",
        "POST",
        "/invalidate",
        body({"patern": "user:*"}),
        400,
        "invalid_request",
    ),
    # every part is validated before anything is removed
    case(
        "invalidate-all-but-unknown-event",
        "POST",
        "/invalidate",
        body({"pattern": "*", "event": "moon_landing"}),
        400,
        "unknown_event",
    ),
    case(
        "invalidate-all-but-bad-tag",
        "POST",
        "/invalidate",
        body({"pattern": "*", "tags": ["ok", ""]}),
        400,
        "invalid_value",
    ),
    # -- /warm-up -------------------------------------------------------------------------
    case(
        "warm-up-too-many",
        "POST",
        "/warm-up",
        body({"keys": [f"w{i}" for i in range(MAX_WARMUP + 1)]}),
        400,
        "invalid_value",
    ),
    case(
        "warm-up-unknown-compute-strategy",
        "POST",
        "/warm-up",
        body({"keys": ["k"], "compute_strategy": "eventually"}),
        400,
        "unknown_name",
    ),
    case(
        "warm-up-compute-strategy-int",
        "POST",
        "/warm-up",
        body({"keys": ["k"], "compute_strategy": 2}),
        400,
        "invalid_request",
    ),
    case(
        "warm-up-keys-missing",
        "POST",
        "/warm-up",
        body({"compute_strategy": "parallel"}),
        400,
        "invalid_request",
    ),
    case("warm-up-empty-key", "POST", "/warm-up", body({"keys": [""]}), 400, "invalid_key"),
    case(
        "warm-up-keys-string",
        "POST",
        "/warm-up",
        body({"keys": "k"}),
        400,
        "invalid_request",
    ),
    # -- keys in the path -----------------------------------------------------------------
    case("get-key-control-char", "GET", path("/cache/a%09b"), None, 400, "invalid_key"),
    # the route's {key:.+} does not match a newline, so this one never reaches the agent
    case("get-key-newline", "GET", path("/cache/a%0Ab"), None, 404, "not_found"),
    case("get-key-too-long", "GET", f"/cache/{LONG_KEY}", None, 400, "invalid_key"),
    case("delete-key-nul", "DELETE", path("/cache/a%00b"), None, 400, "invalid_key"),
    case("delete-key-too-long", "DELETE", f"/cache/{LONG_KEY}", None, 400, "invalid_key"),
    # -- routing --------------------------------------------------------------------------
    case("unknown-route", "GET", "/caches/k", None, 404, "not_found"),
    case(
        "post-to-a-key-path",
        "POST",
        "/cache/batch-delete",
        body({"keys": ["k"]}),
        405,
        "method_not_allowed",
    ),
    case("unknown-route-root", "GET", "/", None, 404, "not_found"),
    case(
        "wrong-method-put-cache",
        "PUT",
        "/cache",
        body({"key": "k", "value": 1}),
        405,
        "method_not_allowed",
    ),
    case("wrong-method-get-cache", "GET", "/cache", None, 405, "method_not_allowed"),
    case("wrong-method-post-stats", "POST", "/stats", body({}), 405, "method_not_allowed"),
    case("wrong-method-get-invalidate", "GET", "/invalidate", None, 405, "method_not_allowed"),
    case(
        "wrong-method-patch-key", "PATCH", "/cache/k", body({"value": 2}), 405, "method_not_allowed"
    ),
    # -- body over limits.max_request_bytes -----------------------------------------------
    case(
        "set-body-too-large",
        "POST",
        "/cache",
        body({"key": "k", "value": "x" * (MAX_REQUEST + 1)}),
        413,
        "request_too_large",
    ),
    case(
        "batch-set-body-too-large",
        "POST",
        "/cache/batch-set",
        body({"items": {"k": "y" * (MAX_REQUEST + 1)}}),
        413,
        "request_too_large",
    ),
]

GOOD_CASES = [p for p in BAD_REQUESTS if not p.marks]


@pytest.fixture
async def known(client):
    for key, entry in KNOWN.items():
        resp = await client.post(
            "/cache", json={"key": key, "value": entry["value"], "tags": entry["tags"]}
        )
        assert resp.status == 200
    return client


async def snapshot(client: Any) -> dict[str, Any]:
    """What must not change: each known key's GET and the stats that follow writes."""
    values = {}
    for key in KNOWN:
        resp = await client.get(f"/cache/{key}")
        values[key] = await resp.json()
    stats = await (await client.get("/stats")).json()
    return {
        "values": values,
        "sets": stats["sets"],
        "deletes": stats["deletes"],
        "l1_size_bytes": stats["l1_size_bytes"],
        "l1_entries": stats.get("l1_entries"),
    }


def test_the_table_is_big_enough():
    assert len(GOOD_CASES) >= 25
    assert len({p.id for p in BAD_REQUESTS}) == len(BAD_REQUESTS)


@pytest.mark.parametrize(("method", "target", "kwargs", "status", "code"), BAD_REQUESTS)
async def test_bad_request_gets_4xx_error_and_changes_nothing(
    known, check_error, method, target, kwargs, status, code
):
    before = await snapshot(known)
    resp = await known.request(method, target, **kwargs)
    error = await check_error(resp)
    assert resp.status == status, error
    assert error["code"] == code, error
    after = await snapshot(known)
    assert after == before


async def test_store_unchanged_after_the_whole_table(known, check_error):
    before = await snapshot(known)
    for param in GOOD_CASES:
        method, target, kwargs, status, _ = param.values
        resp = await known.request(method, target, **kwargs)
        await check_error(resp)
        assert resp.status == status, param.id
    after = await snapshot(known)
    assert after == before
    for key, entry in KNOWN.items():
        assert after["values"][key] == {
            "key": key,
            "value": entry["value"],
            "hit": True,
            "tier": "l1",
        }


async def test_bad_item_in_a_batch_set_writes_none_of_the_batch(known, check_error):
    resp = await known.post("/cache/batch-set", json={"items": {"fresh:1": 1, "fresh:2": 2, "": 3}})
    await check_error(resp)
    body = await (
        await known.post("/cache/batch-get", json={"keys": ["fresh:1", "fresh:2"]})
    ).json()
    assert body["hits"] == 0


async def test_error_messages_name_the_field(known, check_error):
    resp = await known.post("/cache", json={"key": "a", "value": 1, "ttl": True})
    assert "ttl" in (await check_error(resp))["message"]
    resp = await known.post("/cache", json={"value": 1})
    assert "key" in (await check_error(resp))["message"]
    resp = await known.post("/cache", json={"key": "a", "value": 1, "colour": "red"})
    assert "colour" in (await check_error(resp))["message"]
    resp = await known.post("/invalidate", json={"event": "moon_landing"})
    assert "moon_landing" in (await check_error(resp))["message"]


async def test_limits_are_inclusive(known):
    assert (await known.post("/cache", json={"key": "k" * MAX_KEY, "value": 1})).status == 200
    exact_value = "x" * (MAX_VALUE - 2)  # 2048 bytes as JSON
    assert (await known.post("/cache", json={"key": "v", "value": exact_value})).status == 200
    keys = [f"w{i}" for i in range(MAX_WARMUP)]
    assert (await known.post("/warm-up", json={"keys": keys})).status == 200
