"""Cluster (3 masters, keys in different slots) and Sentinel, on real engines."""

from __future__ import annotations

from typing import Any

from cache_core import CachingAgent


async def test_cluster_multi_key_operations_span_slots(
    cluster: list[Any], cluster_config: dict[str, Any]
) -> None:
    items = {f"user:{i}:profile": {"id": i} for i in range(60)}
    async with CachingAgent.from_config(cluster_config, env={}) as agent:
        assert await agent.set_many(items) == 60
        # The keys really are spread over the three masters.
        held = [n.client.dbsize() for n in cluster]
        assert all(count > 0 for count in held), held
        agent.l1.clear()
        found = await agent.lookup_many(list(items))
        assert {k: v[1] for k, v in found.items() if v} == dict.fromkeys(items, "l2")
        assert (await agent.fetch_stats())["l2_size_keys"] == 60
        assert await agent.invalidate_pattern("user:1*:profile") == 11
        assert await agent.get("user:15:profile") is None
        assert await agent.get("user:2:profile") == {"id": 2}
        assert await agent.delete("user:2:profile") is True


async def test_cluster_instances_stay_coherent(cluster_config: dict[str, Any]) -> None:
    async with (
        CachingAgent.from_config(cluster_config, env={}) as a,
        CachingAgent.from_config(cluster_config, env={}) as b,
    ):
        await a.set("k", 1)
        assert await b.get("k") == 1
        await a.set("k", 2)
        for _ in range(200):
            if await b.get("k") == 2:
                break
            import asyncio

            await asyncio.sleep(0.005)
        assert await b.get("k") == 2


async def test_cluster_tags_and_dependencies_hold_across_slots(
    cluster_config: dict[str, Any],
) -> None:
    """In Cluster the index takes its own round trips (a script's keys must share a slot):
    tags, the cascade on an overwrite and on a delete, and a rewrite dropping old tags all
    hold with keys, their metas and their sets in different slots."""
    async with CachingAgent.from_config(cluster_config, env={}) as agent:
        assert agent.index is not None and not agent.index.in_step  # type: ignore[attr-defined]
        await agent.set("source", 1)
        await agent.set("child", 2, dependencies=["source"], tags=["kids"])
        await agent.set("grandchild", 3, dependencies=["child"])
        await agent.set("source", 10)  # the old value's dependents go
        assert [await agent.get(k) for k in ("source", "child", "grandchild")] == [10, None, None]
        await agent.set("t", "old", tags=["old"])
        await agent.set("t", "new", tags=["new"])
        assert await agent.invalidate_by_tags(["old"]) == 0
        assert await agent.invalidate_by_tags(["new"]) == 1
        await agent.set("a", 1)
        await agent.set("b", 2, dependencies=["a"])
        assert await agent.delete("a") is True
        agent.l1.clear()
        assert await agent.get("b") is None


async def test_sentinel_finds_the_master(sentinel: tuple[Any, Any], prefix: str) -> None:
    master, watcher = sentinel
    config = {
        "redis": {
            "sentinel": {
                "master_name": "mymaster",
                "nodes": [{"host": "127.0.0.1", "port": watcher.port}],
            },
            "key_prefix": prefix,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
    }
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set("s", {"via": "sentinel"})
        assert master.client.exists(prefix + "s") == 1
        agent.l1.clear()
        assert await agent.lookup("s") == (b'{"via":"sentinel"}', "l2")
        assert agent.l2.coherent  # type: ignore[union-attr]
