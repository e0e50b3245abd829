"""The HTTP loader (``loaders.http``, cache-server's): fetching, failures, ids encoded into
the URL, the shipped example; and read-through single-flight over the HTTP API. The
python loader's own tests are in tests/cache_core/test_loaders.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from cache_core import CachingAgent, ConfigError, LoaderError
from cache_server import create_app


async def test_1000_concurrent_http_gets_load_once(
    aiohttp_client: Any, loader_source: Any, engine: Any, prefix: str
) -> None:
    config = {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "compression": {"enable": False},
        "loaders": {
            "python": {
                "function": f"{loader_source.NAME}:profile",
                "match": ["user:{user_id}:profile"],
            }
        },
    }
    client = await aiohttp_client(create_app(config, env={}))
    responses = await asyncio.gather(*(client.get("/cache/user:1:profile") for _ in range(1000)))
    bodies = [await r.json() for r in responses]
    assert {b["value"]["name"] for b in bodies} == {"Ada"}
    assert loader_source.CALLS == ["user:1:profile"]


@pytest.fixture
async def upstream() -> Any:
    """A profiles service on loopback: 200 for known users, 404, 500, and a slow one."""
    calls: list[str] = []

    async def user(request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        calls.append(user_id)
        if user_id == "slow":
            await asyncio.sleep(1)
        if user_id == "boom":
            return web.json_response({"error": "down"}, status=500)
        if user_id not in ("1", "a b"):
            return web.json_response({"error": "no such user"}, status=404)
        return web.json_response({"id": user_id, "name": "Ada"})

    app = web.Application()
    app.router.add_get("/users/{user_id}", user)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.calls = calls  # type: ignore[attr-defined]
    yield server
    await server.close()


def http_config(upstream: Any, **extra: Any) -> dict[str, Any]:
    return {
        "cache_tiers": {"l1": {"max_size_mb": 4}},
        "compression": {"enable": False},
        "loaders": {
            "http": {
                "url": f"http://127.0.0.1:{upstream.port}/users/{{user_id}}",
                "match": ["user:{user_id}:profile"],
                "timeout": 0.3,
                "max_concurrency": 4,
            }
        },
        **extra,
    }


async def test_http_loader_fetches_and_reports_failures(aiohttp_client: Any, upstream: Any) -> None:
    client = await aiohttp_client(create_app(http_config(upstream), env={}))
    keys = ["user:1:profile", "user:404:profile", "user:boom:profile", "user:slow:profile", "x:1"]
    resp = await client.post("/warm-up", json={"keys": keys})
    body = await resp.json()
    assert body["warmed_count"] == 1
    failures = body["failures"]
    assert failures["user:404:profile"]["code"] == "not_found"
    assert "500" in failures["user:boom:profile"]["message"]
    slow = failures["user:slow:profile"]["message"]
    assert "longer than loaders.http.timeout (0.3 s)" in slow  # its own, not loading.timeout
    assert failures["x:1"]["code"] == "no_loader"
    got = await (await client.get("/cache/user:1:profile")).json()
    assert got == {
        "key": "user:1:profile",
        "value": {"id": "1", "name": "Ada"},
        "hit": True,
        "tier": "l1",
    }
    # a read-through that fails is a 502 naming the loader, not a silent miss
    resp = await client.get("/cache/user:boom:profile")
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "loader_failed"


async def test_http_loader_encodes_ids_into_the_url(upstream: Any) -> None:
    async with CachingAgent.from_config(http_config(upstream), env={}) as agent:
        assert await agent.get("user:a b:profile") == {"id": "a b", "name": "Ada"}
        assert upstream.calls == ["a b"]


async def test_http_loader_failure_raises_loader_error(upstream: Any) -> None:
    async with CachingAgent.from_config(http_config(upstream), env={}) as agent:
        with pytest.raises(LoaderError, match="answered 500"):
            await agent.get("user:boom:profile")


def test_http_loader_url_needs_what_match_captures(upstream: Any) -> None:
    config = http_config(upstream)
    config["loaders"]["http"]["match"] = ["user:*"]
    with pytest.raises(ConfigError, match="user_id"):
        CachingAgent.from_config(config, env={})


async def test_the_shipped_loader_example_works_once_uncommented(
    aiohttp_client: Any, upstream: Any, engine: Any, prefix: str
) -> None:
    text = (Path(__file__).parents[2] / "config.yaml").read_text()
    head, example = text.split("\n# loaders:\n")
    uncommented = "loaders:\n" + "\n".join(line[2:] for line in example.splitlines())
    cfg = yaml.safe_load(head + "\n" + uncommented.replace(":8000/", f":{upstream.port}/"))
    assert list(cfg["loaders"]) == ["http"]  # the python example stays a comment
    cfg["redis"] = {"url": engine.url, "key_prefix": prefix}
    client = await aiohttp_client(create_app(cfg, env={}))
    resp = await client.post("/warm-up", json={"keys": ["user:1:profile"]})
    assert await resp.json() == {
        "success": True,
        "warmed_count": 1,
        "requested": 1,
        "failures": {},
    }
