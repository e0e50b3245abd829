"""The product description's curl examples (its "API Usage" section), run as written with
the real ``curl`` against the real ``caching-agent serve`` on the shipped config.yaml.

Each example's text is copied verbatim from the description; only
``http://localhost:8015`` is replaced by the test server's address. Each test runs on a
server of its own (the shipped config in its own directory, so the embedded engine keeps
its data under that directory), so the numbers the description shows can be checked
exactly. Extra fields in an answer are fine; a documented field that is missing or of
another type is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_BASE = "http://localhost:8015"
CURL_TIMEOUT = 15.0

# -- the description's examples, verbatim ---------------------------------------------------

GET = """\
curl http://localhost:8015/cache/user:123:profile
"""

SET = """\
curl -X POST http://localhost:8015/cache \\
  -H "Content-Type: application/json" \\
  -d '{
    "key": "user:123:profile",
    "value": {"name": "Alice"},
    "ttl": 3600
  }'
"""

DELETE = """\
curl -X DELETE http://localhost:8015/cache/user:123:profile
"""

BATCH_GET = """\
curl -X POST http://localhost:8015/cache/batch-get \\
  -H "Content-Type: application/json" \\
  -d '{"keys": ["user:123:profile", "user:456:profile"]}'
"""

BATCH_SET = """\
curl -X POST http://localhost:8015/cache/batch-set \\
  -H "Content-Type: application/json" \\
  -d '{
    "items": {
      "user:123:profile": {"name": "Alice"},
      "user:456:profile": {"name": "Bob"}
    },
    "ttl": 3600
  }'
"""

INVALIDATE_PATTERN = """\
curl -X POST http://localhost:8015/invalidate \\
  -H "Content-Type: application/json" \\
  -d '{"pattern": "user:*:profile"}'
"""

INVALIDATE_TAGS = """\
curl -X POST http://localhost:8015/invalidate \\
  -H "Content-Type: application/json" \\
  -d '{"tags": ["user", "profile"]}'
"""

INVALIDATE_EVENT = """\
curl -X POST http://localhost:8015/invalidate \\
  -H "Content-Type: application/json" \\
  -d '{"event": "user_profile_update"}'
"""

STATS = """\
curl http://localhost:8015/stats
"""

WARM_UP = """\
curl -X POST http://localhost:8015/warm-up \\
  -H "Content-Type: application/json" \\
  -d '{
    "keys": ["user:123:profile", "user:456:profile"]
  }'
"""

# The "Request" bodies the description documents without a curl line of their own, sent
# the way its examples send bodies.
SET_REQUEST_BODY = {
    "key": "user:123:profile",
    "value": {"name": "Alice", "level": 5},
    "ttl": 3600,
    "strategy": "write_through",
    "tags": ["user", "profile"],
    "dependencies": ["user:123"],
}
BATCH_GET_REQUEST_BODY = {"keys": ["user:123:profile", "user:456:profile", "content:789"]}
BATCH_SET_REQUEST_BODY = {
    "items": {
        "user:123:profile": {"name": "Alice"},
        "user:456:profile": {"name": "Bob"},
    },
    "ttl": 3600,
    "strategy": "write_through",
}
WARM_UP_REQUEST_BODY = {
    "keys": ["user:123:profile", "user:456:profile"],
    "compute_strategy": "parallel",
}
INVALIDATE_REQUEST_BODY = {
    "pattern": "user:*:profile",
    "tags": ["user"],
    "event": "user_profile_update",
}


# -- running them ---------------------------------------------------------------------------


def _curl_env() -> dict[str, str]:
    # A proxy in the caller's environment must not stand between curl and the loopback.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def run_curl(server: Any, example: str) -> Any:
    """Run ``example`` through bash as written (pointed at ``server``); its JSON answer."""
    command = example.replace(DOCUMENTED_BASE, server.url)
    assert command != example, "the example names no http://localhost:8015 URL"
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_curl_env(),
        timeout=CURL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"curl exited {done.returncode}: {done.stderr}"
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not a JSON answer: {done.stdout!r}\n{server.output}")


def post_json(server: Any, path: str, body: Any) -> Any:
    """POST ``body`` the way the description's examples do (curl -X POST -H -d)."""
    quoted = json.dumps(body).replace("'", "'\\''")
    return run_curl(
        server,
        f"curl -X POST {DOCUMENTED_BASE}{path} -H \"Content-Type: application/json\" -d '{quoted}'",
    )


def expect(body: Any, fields: dict[str, Any]) -> None:
    """``body`` has ``fields`` with these values (and may have more)."""
    assert isinstance(body, dict), body
    missing = object()
    found = {name: body.get(name, missing) for name in fields}
    assert found == fields, f"answered {body}"


def check_types(body: Any, fields: dict[str, type]) -> None:
    assert isinstance(body, dict), body
    missing = sorted(set(fields) - set(body))
    assert not missing, f"missing {missing} in {body}"
    for name, kind in fields.items():
        value = body[name]
        # bool is an int to Python, not to a JSON reader; and JSON has one number type,
        # so 0 is as good a ratio as 0.0, while 1.5 is no count.
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        assert ok, f"{name} is {value!r}, expected {kind.__name__}"


@pytest.fixture
def shipped(spawner: Any, workdir: Path) -> Any:
    """``caching-agent serve`` on a copy of the shipped config.yaml, in its own directory
    (./config.yaml there, as at the repository's root; the engine's data under it)."""
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    return spawner.serve(None)


# -- the examples -----------------------------------------------------------------------------


def test_set(shipped: Any) -> None:
    body = run_curl(shipped, SET)
    expect(body, {"success": True, "key": "user:123:profile", "strategy": "write_through"})


def test_get_after_set_answers_from_l1(shipped: Any) -> None:
    run_curl(shipped, SET)
    body = run_curl(shipped, GET)
    expect(
        body,
        {
            "key": "user:123:profile",
            "value": {"name": "Alice"},
            "hit": True,
            "tier": "l1",
        },
    )


def test_get_of_a_missing_key_is_null(shipped: Any) -> None:
    # "Returns value if cached, null if miss."
    body = run_curl(shipped, GET)
    expect(body, {"key": "user:123:profile", "value": None, "hit": False})


def test_set_request_body(shipped: Any) -> None:
    body = post_json(shipped, "/cache", SET_REQUEST_BODY)
    expect(body, {"success": True, "key": "user:123:profile", "strategy": "write_through"})
    got = run_curl(shipped, GET)
    expect(got, {"value": {"name": "Alice", "level": 5}, "hit": True, "tier": "l1"})


def test_delete(shipped: Any) -> None:
    run_curl(shipped, SET)
    body = run_curl(shipped, DELETE)
    expect(body, {"success": True, "key": "user:123:profile"})
    got = run_curl(shipped, GET)
    assert (got["value"], got["hit"]) == (None, False)


def test_batch_set(shipped: Any) -> None:
    body = run_curl(shipped, BATCH_SET)
    expect(body, {"success": True, "count": 2})


def test_batch_get_after_batch_set(shipped: Any) -> None:
    run_curl(shipped, BATCH_SET)
    body = run_curl(shipped, BATCH_GET)
    expect(
        body,
        {
            "results": {
                "user:123:profile": {"name": "Alice"},
                "user:456:profile": {"name": "Bob"},
            },
            "hits": 2,
            "misses": 0,
        },
    )


def test_batch_request_bodies(shipped: Any) -> None:
    expect(
        post_json(shipped, "/cache/batch-set", BATCH_SET_REQUEST_BODY),
        {"success": True, "count": 2},
    )
    body = post_json(shipped, "/cache/batch-get", BATCH_GET_REQUEST_BODY)
    expect(
        body,
        {
            "results": {
                "user:123:profile": {"name": "Alice"},
                "user:456:profile": {"name": "Bob"},
                "content:789": None,
            },
            "hits": 2,
            "misses": 1,
        },
    )


def test_invalidate_pattern(shipped: Any) -> None:
    run_curl(shipped, BATCH_SET)
    post_json(shipped, "/cache", {"key": "user:123:settings", "value": 1})
    body = run_curl(shipped, INVALIDATE_PATTERN)
    expect(body, {"success": True, "invalidated_count": 2})
    got = run_curl(shipped, BATCH_GET)
    assert (got["hits"], got["misses"]) == (0, 2)
    kept = run_curl(shipped, GET.replace("profile", "settings"))
    assert kept["hit"] is True


def test_invalidate_tags(shipped: Any) -> None:
    post_json(shipped, "/cache", SET_REQUEST_BODY)  # tags ["user", "profile"]
    post_json(shipped, "/cache", {"key": "user:456:profile", "value": 2, "tags": ["profile"]})
    post_json(shipped, "/cache", {"key": "other:1", "value": 3, "tags": ["other"]})
    body = run_curl(shipped, INVALIDATE_TAGS)
    expect(body, {"success": True, "invalidated_count": 2})
    got = run_curl(shipped, BATCH_GET)
    assert (got["hits"], got["misses"]) == (0, 2)


def test_invalidate_event_without_context(shipped: Any) -> None:
    # The shipped config's user_profile_update reaches "user:{user_id}:*": with no
    # context, every user's keys (issue 14, item 1).
    run_curl(shipped, BATCH_SET)
    post_json(shipped, "/cache", {"key": "content:789", "value": 1})
    body = run_curl(shipped, INVALIDATE_EVENT)
    expect(body, {"success": True, "invalidated_count": 2})
    got = run_curl(shipped, BATCH_GET)
    assert (got["hits"], got["misses"]) == (0, 2)
    kept = run_curl(shipped, GET.replace("user:123:profile", "content:789"))
    assert kept["hit"] is True


def test_invalidate_combined_request_body(shipped: Any) -> None:
    run_curl(shipped, BATCH_SET)  # matched by the pattern (and the event)
    post_json(shipped, "/cache", {"key": "session:9", "value": 1, "tags": ["user"]})  # tag
    post_json(shipped, "/cache", {"key": "user:123:settings", "value": 2})  # event only
    post_json(shipped, "/cache", {"key": "content:789", "value": 3})  # none of them
    body = post_json(shipped, "/invalidate", INVALIDATE_REQUEST_BODY)
    expect(body, {"success": True, "invalidated_count": 4})
    got = run_curl(shipped, GET.replace("user:123:profile", "content:789"))
    assert got["hit"] is True


def test_stats_fields_and_counts(shipped: Any, seed_stats_fields: dict[str, type]) -> None:
    run_curl(shipped, BATCH_SET)  # 2 sets
    run_curl(shipped, BATCH_GET)  # 2 hits
    run_curl(shipped, GET.replace("user:123", "user:999"))  # 1 miss
    run_curl(shipped, DELETE)  # 1 delete
    body = run_curl(shipped, STATS)
    check_types(body, seed_stats_fields)
    assert (body["hits"], body["misses"], body["sets"], body["deletes"]) == (2, 1, 2, 1)
    assert body["hit_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert body["avg_latency_ms"] >= 0
    assert body["l1_size_bytes"] > 0  # user:456:profile is still there
    assert body["l2_size_keys"] >= 0


def test_warm_up_promotes_what_l2_holds(shipped: Any) -> None:
    # Written to L2 only, so warming has something to do.
    for key, name in (("user:123:profile", "Alice"), ("user:456:profile", "Bob")):
        body = {"key": key, "value": {"name": name}, "strategy": "write_around"}
        assert post_json(shipped, "/cache", body)["success"] is True
    body = run_curl(shipped, WARM_UP)
    expect(body, {"success": True, "warmed_count": 2})
    got = run_curl(shipped, GET)
    assert (got["value"], got["tier"]) == ({"name": "Alice"}, "l1")


def test_warm_up_request_body(shipped: Any) -> None:
    run_curl(shipped, BATCH_SET)
    body = post_json(shipped, "/warm-up", WARM_UP_REQUEST_BODY)
    expect(body, {"success": True, "warmed_count": 2})


def test_warm_up_of_keys_nobody_can_compute_does_not_claim_success(shipped: Any) -> None:
    # The shipped config has no loader: nothing can compute these keys, so the answer
    # must not say they were warmed (issue 14, item 4).
    body = run_curl(shipped, WARM_UP)
    expect(body, {"success": False, "warmed_count": 0})
    failures = body["failures"]
    assert set(failures) == {"user:123:profile", "user:456:profile"}
    assert all("no_loader" in json.dumps(why) for why in failures.values()), failures
