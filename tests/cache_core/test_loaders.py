"""Loaders in core (``loaders.python``): read-through with the ids a template captures,
single-flight inside and across instances, the lock lease, negative caching, warm-up on
start. The HTTP loader and read-through over HTTP are in tests/cache_server/test_http_loader.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cache_core import CachingAgent, ConfigError, LoaderError


def python_config(loader_source: Any, function: str = "profile", **extra: Any) -> dict[str, Any]:
    return {
        "cache_tiers": {"l1": {"max_size_mb": 4}},
        "compression": {"enable": False},
        "loaders": {
            "python": {
                "function": f"{loader_source.NAME}:{function}",
                "match": ["user:{user_id}:profile"],
            }
        },
        **extra,
    }


async def test_python_loader_reads_through_with_ids(loader_source: Any) -> None:
    async with CachingAgent.from_config(python_config(loader_source), env={}) as agent:
        assert await agent.lookup("user:1:profile") == (b'{"name":"Ada"}', "loader")
        assert await agent.lookup("user:1:profile") == (b'{"name":"Ada"}', "l1")
        assert await agent.get("other:1") is None  # no loader matches
        assert loader_source.CALLS == ["user:1:profile"]


async def test_sync_python_function_runs_in_a_thread(loader_source: Any) -> None:
    config = python_config(loader_source, "plain")
    async with CachingAgent.from_config(config, env={}) as agent:
        assert await agent.get("user:9:profile") == {"key": "user:9:profile"}


def test_python_loader_names_a_bad_function(loader_source: Any) -> None:
    with pytest.raises(ConfigError, match=r"loaders\.python: function: cannot import"):
        CachingAgent.from_config(python_config(loader_source, "missing"), env={})


async def test_1000_concurrent_gets_on_two_instances_load_once(
    loader_source: Any, l2_backend: Any
) -> None:
    # On the Redis tier and on the third-party one of tests/: its leases make it so too.
    config = {**python_config(loader_source), **l2_backend.config()}
    async with l2_backend.agent(config) as a, l2_backend.agent(config) as b:
        results = await asyncio.gather(
            *(agent.get("user:2:profile") for _ in range(500) for agent in (a, b))
        )
        assert results == [{"name": "Grace"}] * 1000
        assert loader_source.CALLS == ["user:2:profile"]


async def test_a_dead_holder_blocks_no_longer_than_the_lease(
    loader_source: Any, l2_backend: Any
) -> None:
    loading = {"lock_lease": 0.3}
    config = {**python_config(loader_source, loading=loading), **l2_backend.config()}
    async with l2_backend.agent(config) as agent:
        assert agent.l2 is not None
        token = await agent.l2.try_lock("load:user:1:profile", 0.3)  # a holder that dies
        assert token is not None
        start = time.monotonic()
        assert await agent.get("user:1:profile") == {"name": "Ada"}
        waited = time.monotonic() - start
        assert 0.2 < waited < 2.0
        assert loader_source.CALLS == ["user:1:profile"]


async def test_not_found_is_cached_negatively_until_its_ttl(loader_source: Any) -> None:
    now = [0.0]
    config = python_config(loader_source, loading={"negative_ttl": 10})
    async with CachingAgent.from_config(config, env={}, clock=lambda: now[0]) as agent:
        assert await agent.get("user:404:profile") is None
        assert await agent.get("user:404:profile") is None
        assert loader_source.CALLS == ["user:404:profile"]
        now[0] = 11.0
        assert await agent.get("user:404:profile") is None
        assert loader_source.CALLS == ["user:404:profile"] * 2
        await agent.set("user:404:profile", {"name": "late"})  # a write clears the mark
        await agent.delete("user:404:profile")
        assert await agent.get("user:404:profile") is None
        assert len(loader_source.CALLS) == 3


async def test_warm_on_start_loads_the_configured_keys(loader_source: Any) -> None:
    config = python_config(
        loader_source, loading={"warm_on_start": ["user:1:profile", "user:2:profile"]}
    )
    async with CachingAgent.from_config(config, env={}) as agent:
        assert sorted(loader_source.CALLS) == ["user:1:profile", "user:2:profile"]
        assert await agent.lookup("user:2:profile") == (b'{"name":"Grace"}', "l1")


async def test_a_loader_past_loading_timeout_is_named_by_that_setting(loader_source: Any) -> None:
    # profile sleeps 0.05 s: past a loading.timeout of 0.01 s
    config = python_config(loader_source, loading={"timeout": 0.01})
    async with CachingAgent.from_config(config, env={}) as agent:
        with pytest.raises(LoaderError, match=r"longer than loading\.timeout \(0\.01 s\)"):
            await agent.get("user:1:profile")
