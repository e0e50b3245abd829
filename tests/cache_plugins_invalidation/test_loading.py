"""Loaders: python and http, read-through single-flight inside and across instances, the
lock lease, negative caching, warm-up with failures, warm-up on start."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from cache_core import CachingAgent, ConfigError, LoaderError
from cache_server import create_app

SOURCE_MODULE = """
import asyncio

CALLS = []
DATA = {"1": {"name": "Ada"}, "2": {"name": "Grace"}}


async def profile(key, ids):
    CALLS.append(key)
    await asyncio.sleep(0.05)  # long enough for every concurrent caller to pile up
    return DATA.get(ids["user_id"])


def plain(key, ids):
    CALLS.append(key)
    return {"key": key}
"""


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An importable module ``loader_source_<n>`` with loader functions that count calls."""
    name = f"loader_source_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(SOURCE_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module: Any = __import__(name)
    module.NAME = name
    return module


def python_config(source: Any, function: str = "profile", **extra: Any) -> dict[str, Any]:
    return {
        "cache_tiers": {"l1": {"max_size_mb": 4}},
        "compression": {"enable": False},
        "loaders": {
            "python": {"function": f"{source.NAME}:{function}", "match": ["user:{user_id}:profile"]}
        },
        **extra,
    }


def with_l2(config: dict[str, Any], engine: Any, prefix: str) -> dict[str, Any]:
    return {
        **config,
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
    }


async def test_python_loader_reads_through_with_ids(source: Any) -> None:
    async with CachingAgent.from_config(python_config(source), env={}) as agent:
        assert await agent.lookup("user:1:profile") == (b'{"name":"Ada"}', "loader")
        assert await agent.lookup("user:1:profile") == (b'{"name":"Ada"}', "l1")
        assert await agent.get("other:1") is None  # no loader matches
        assert source.CALLS == ["user:1:profile"]


async def test_sync_python_function_runs_in_a_thread(source: Any) -> None:
    config = python_config(source, "plain")
    async with CachingAgent.from_config(config, env={}) as agent:
        assert await agent.get("user:9:profile") == {"key": "user:9:profile"}


def test_python_loader_names_a_bad_function(source: Any) -> None:
    with pytest.raises(ConfigError, match=r"loaders\.python: function: cannot import"):
        CachingAgent.from_config(python_config(source, "missing"), env={})


async def test_1000_concurrent_gets_on_two_instances_load_once(
    source: Any, engine: Any, prefix: str
) -> None:
    config = with_l2(python_config(source), engine, prefix)
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        results = await asyncio.gather(
            *(agent.get("user:2:profile") for _ in range(500) for agent in (a, b))
        )
        assert results == [{"name": "Grace"}] * 1000
        assert source.CALLS == ["user:2:profile"]


async def test_1000_concurrent_http_gets_load_once(
    aiohttp_client: Any, source: Any, engine: Any, prefix: str
) -> None:
    client = await aiohttp_client(
        create_app(with_l2(python_config(source), engine, prefix), env={})
    )
    responses = await asyncio.gather(*(client.get("/cache/user:1:profile") for _ in range(1000)))
    bodies = [await r.json() for r in responses]
    assert {b["value"]["name"] for b in bodies} == {"Ada"}
    assert source.CALLS == ["user:1:profile"]


async def test_a_dead_holder_blocks_no_longer_than_the_lease(
    source: Any, engine: Any, prefix: str
) -> None:
    config = with_l2(python_config(source, loading={"lock_lease": 0.3}), engine, prefix)
    async with CachingAgent.from_config(config, env={}) as agent:
        assert agent.l2 is not None
        token = await agent.l2.try_lock("load:user:1:profile", 0.3)  # a holder that dies
        assert token is not None
        start = time.monotonic()
        assert await agent.get("user:1:profile") == {"name": "Ada"}
        waited = time.monotonic() - start
        assert 0.2 < waited < 2.0
        assert source.CALLS == ["user:1:profile"]


async def test_not_found_is_cached_negatively_until_its_ttl(source: Any) -> None:
    now = [0.0]
    config = python_config(source, loading={"negative_ttl": 10})
    async with CachingAgent.from_config(config, env={}, clock=lambda: now[0]) as agent:
        assert await agent.get("user:404:profile") is None
        assert await agent.get("user:404:profile") is None
        assert source.CALLS == ["user:404:profile"]
        now[0] = 11.0
        assert await agent.get("user:404:profile") is None
        assert source.CALLS == ["user:404:profile"] * 2
        await agent.set("user:404:profile", {"name": "late"})  # a write clears the mark
        await agent.delete("user:404:profile")
        assert await agent.get("user:404:profile") is None
        assert len(source.CALLS) == 3


async def test_warm_on_start_loads_the_configured_keys(source: Any) -> None:
    config = python_config(source, loading={"warm_on_start": ["user:1:profile", "user:2:profile"]})
    async with CachingAgent.from_config(config, env={}) as agent:
        assert sorted(source.CALLS) == ["user:1:profile", "user:2:profile"]
        assert await agent.lookup("user:2:profile") == (b'{"name":"Grace"}', "l1")


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
    assert "longer than" in failures["user:slow:profile"]["message"]
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
