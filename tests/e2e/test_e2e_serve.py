"""The real ``caching-agent serve`` process, driven over HTTP like the seed's curl examples."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.e2e

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def http(served) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=served.url, timeout=TIMEOUT) as session:
        yield session


async def call(
    session: aiohttp.ClientSession, method: str, path: str, payload: Any = None
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {}
    if payload is not None:
        kwargs = {"json": payload, "headers": {"Content-Type": "application/json"}}
    async with session.request(method, path, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_seed_curl_examples(http):
    # curl -X POST /cache -d '{"key": "user:123:profile", "value": {"name": "Alice"}, "ttl": 3600}'
    status, body = await call(
        http,
        "POST",
        "/cache",
        {"key": "user:123:profile", "value": {"name": "Alice"}, "ttl": 3600},
    )
    assert (status, body) == (
        200,
        {"success": True, "key": "user:123:profile", "strategy": "write_through"},
    )

    # curl /cache/user:123:profile
    status, body = await call(http, "GET", "/cache/user:123:profile")
    assert (status, body) == (
        200,
        {"key": "user:123:profile", "value": {"name": "Alice"}, "hit": True, "tier": "l1"},
    )

    # curl -X POST /cache/batch-set -d '{"items": {...}, "ttl": 3600}'
    status, body = await call(
        http,
        "POST",
        "/cache/batch-set",
        {
            "items": {"user:123:profile": {"name": "Alice"}, "user:456:profile": {"name": "Bob"}},
            "ttl": 3600,
        },
    )
    assert (status, body) == (200, {"success": True, "count": 2})

    # curl -X POST /cache/batch-get -d '{"keys": ["user:123:profile", "user:456:profile"]}'
    status, body = await call(
        http, "POST", "/cache/batch-get", {"keys": ["user:123:profile", "user:456:profile"]}
    )
    assert (status, body) == (
        200,
        {
            "results": {
                "user:123:profile": {"name": "Alice"},
                "user:456:profile": {"name": "Bob"},
            },
            "hits": 2,
            "misses": 0,
        },
    )

    # curl -X POST /warm-up -d '{"keys": ["user:123:profile", "user:456:profile"]}'
    status, body = await call(
        http, "POST", "/warm-up", {"keys": ["user:123:profile", "user:456:profile"]}
    )
    assert status == 200
    assert body["success"] is True
    assert body["warmed_count"] == 2

    # curl /stats
    status, stats = await call(http, "GET", "/stats")
    assert status == 200
    for name in ("hits", "misses", "sets", "deletes", "l1_size_bytes", "l2_size_keys"):
        assert isinstance(stats[name], int), name
    for name in ("hit_rate", "avg_latency_ms"):
        assert isinstance(stats[name], float), name
    assert stats["sets"] >= 3
    assert stats["hits"] >= 3
    assert stats["l1_size_bytes"] > 0
    assert stats["l2_size_keys"] == 0

    # curl -X DELETE /cache/user:123:profile
    status, body = await call(http, "DELETE", "/cache/user:123:profile")
    assert status == 200
    assert body["success"] is True
    assert body["key"] == "user:123:profile"
    status, body = await call(http, "GET", "/cache/user:123:profile")
    assert (status, body["hit"], body["value"]) == (200, False, None)


async def test_seed_curl_invalidate_examples(http):
    items = {
        "user:7:profile": {"name": "Alice"},
        "user:8:profile": {"name": "Bob"},
        "user:7:settings": {"dark": True},
        "content:7": {"title": "Algebra"},
    }
    # the server is shared by this module: start from an empty cache
    status, _ = await call(http, "POST", "/invalidate", {"pattern": "*"})
    assert status == 200
    await call(http, "POST", "/cache", {"key": "tagged:1", "value": 1, "tags": ["user"]})
    await call(http, "POST", "/cache", {"key": "tagged:2", "value": 2, "tags": ["profile"]})
    status, _ = await call(http, "POST", "/cache/batch-set", {"items": items})
    assert status == 200

    # curl -X POST /invalidate -d '{"pattern": "user:*:profile"}'
    status, body = await call(http, "POST", "/invalidate", {"pattern": "user:*:profile"})
    assert (status, body) == (200, {"success": True, "invalidated_count": 2})

    # curl -X POST /invalidate -d '{"tags": ["user", "profile"]}'
    status, body = await call(http, "POST", "/invalidate", {"tags": ["user", "profile"]})
    assert (status, body) == (200, {"success": True, "invalidated_count": 2})

    # curl -X POST /invalidate -d '{"event": "user_profile_update"}' (+ its context)
    status, body = await call(
        http,
        "POST",
        "/invalidate",
        {"event": "user_profile_update", "context": {"user_id": 7}},
    )
    assert (status, body) == (200, {"success": True, "invalidated_count": 1})

    status, body = await call(http, "POST", "/cache/batch-get", {"keys": list(items)})
    assert body["results"] == {
        "user:7:profile": None,
        "user:8:profile": None,
        "user:7:settings": None,
        "content:7": {"title": "Algebra"},
    }

    # the event as the description writes it, without context: every user:*:* key
    await call(http, "POST", "/cache/batch-set", {"items": items})
    status, body = await call(http, "POST", "/invalidate", {"event": "user_profile_update"})
    assert (status, body) == (200, {"success": True, "invalidated_count": 3})


async def test_health_errors_and_policies_over_the_wire(http, served):
    status, body = await call(http, "GET", "/health")
    expected = {"status": "ok", "reasons": [], "tiers": {"l1": "ok", "l2": "not configured"}}
    assert status == 200
    assert body == {**expected, "pid": served.proc.pid}

    status, body = await call(http, "POST", "/cache", {"key": "analytics:day:1", "value": [1]})
    assert (status, body["strategy"]) == (200, "write_back")

    status, body = await call(http, "POST", "/cache", {"key": "x", "value": 1, "ttl": "nope"})
    assert status == 400
    assert set(body["error"]) == {"code", "message"}

    json_type = {"Content-Type": "application/json"}
    async with http.post("/cache", data=b"{not json", headers=json_type) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
    async with http.post("/cache", data=b"{not json", headers={"Content-Type": "x"}) as resp:
        assert resp.status == 415  # not JSON by its type: refused before it is read
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"

    status, body = await call(http, "GET", "/no/such/route")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_concurrent_clients(http):
    async def one(i: int) -> None:
        status, _ = await call(http, "POST", "/cache", {"key": f"c:{i}", "value": {"i": i}})
        assert status == 200
        status, body = await call(http, "GET", f"/cache/c:{i}")
        assert body["value"] == {"i": i}

    await asyncio.gather(*(one(i) for i in range(50)))


async def test_other_config_file_and_port_are_used(spawner, workdir, find_port):
    # ./config.yaml is in the cwd too, and must lose to --config
    (workdir / "config.yaml").write_text("limits:\n  max_key_length: 512\n", encoding="utf-8")
    other = workdir / "other.yaml"
    other.write_text(
        "cache_tiers:\n  l1:\n    max_size_mb: 3\n"
        "limits:\n  max_key_length: 10\n"
        "strategies:\n  default: write_around\n",
        encoding="utf-8",
    )
    port = find_port(9000, 9999)
    server = spawner.serve("other.yaml", port=port)
    assert server.port == port
    assert f"{server.url}" in "\n".join(server.stdout)
    assert "config: other.yaml" in server.stdout
    assert any("l1=memory (3 MB)" in line for line in server.stdout)

    async with aiohttp.ClientSession(base_url=server.url, timeout=TIMEOUT) as http:
        status, body = await call(http, "POST", "/cache", {"key": "k" * 10, "value": 1})
        assert (status, body["strategy"]) == (200, "write_around")
        status, body = await call(http, "POST", "/cache", {"key": "k" * 11, "value": 1})
        assert status == 400
        assert body["error"]["code"] == "invalid_key"
        status, stats = await call(http, "GET", "/stats")
        assert stats.get("l1_max_bytes", 3 * 1024 * 1024) == 3 * 1024 * 1024


async def test_config_yaml_in_the_cwd_is_used_without_config(spawner, workdir):
    (workdir / "config.yaml").write_text(
        "limits:\n  max_key_length: 8\nstrategies:\n  default: write_around\n", encoding="utf-8"
    )
    server = spawner.serve(None)
    assert "config: config.yaml" in server.stdout
    async with aiohttp.ClientSession(base_url=server.url, timeout=TIMEOUT) as http:
        status, body = await call(http, "POST", "/cache", {"key": "k" * 8, "value": 1})
        assert (status, body["strategy"]) == (200, "write_around")
        status, _ = await call(http, "POST", "/cache", {"key": "k" * 9, "value": 1})
        assert status == 400


async def test_sigterm_exits_0_within_10_seconds(spawner, workdir):
    (workdir / "c.yaml").write_text("cache_tiers:\n  l1:\n    max_size_mb: 2\n", encoding="utf-8")
    server = spawner.serve("c.yaml")
    async with aiohttp.ClientSession(base_url=server.url, timeout=TIMEOUT) as http:
        status, _ = await call(http, "POST", "/cache", {"key": "k", "value": 1})
        assert status == 200
        status, _ = await call(
            http, "POST", "/cache", {"key": "analytics:1", "value": 1, "strategy": "write_back"}
        )
        assert status == 200
    assert server.terminate(timeout=10) == 0, server.output
    assert not any("Traceback" in line for line in server.stderr), server.output


def test_serve_with_a_bad_config_exits_2_with_one_line(spawner, workdir):
    (workdir / "bad.yaml").write_text(
        "cache_tiers:\n  l1:\n    max_size_mb: big\n", encoding="utf-8"
    )
    server = spawner.serve("bad.yaml", wait=False)
    try:
        code = server.proc.wait(20)
    finally:
        server.kill()
    assert code == 2, server.output
    assert len(server.stderr) == 1, server.output
    assert "cache_tiers.l1.max_size_mb" in server.stderr[0]
    assert not any("listening" in line for line in server.stdout)


def test_serve_on_a_port_in_use_exits_2(spawner, workdir, find_port):
    import socket

    (workdir / "c.yaml").write_text("", encoding="utf-8")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = spawner.serve("c.yaml", port=port, wait=False)
        try:
            code = server.proc.wait(20)
        finally:
            server.kill()
    assert code == 2, server.output
    assert any(f"127.0.0.1:{port}" in line for line in server.stderr), server.output
    assert not any("Traceback" in line for line in server.stderr), server.output
