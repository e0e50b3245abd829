"""Every endpoint of the seed with good input, checking the exact response shapes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson

from cache_core.tiers.memory import ETAG_WEIGHT, entry_weight
from cache_server.keys import AGENT


def weight(key: str, value: Any) -> int:
    """What one entry of ``key`` -> ``value`` is accounted for in L1."""
    return entry_weight(key, orjson.dumps(value))


async def stats_of(client: Any) -> dict[str, Any]:
    resp = await client.get("/stats")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


# -- GET / POST / DELETE /cache ------------------------------------------------------------


async def test_get_hit_has_the_seed_shape(client):
    await client.post("/cache", json={"key": "user:123:profile", "value": {"name": "Alice"}})
    resp = await client.get("/cache/user:123:profile")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "key": "user:123:profile",
        "value": {"name": "Alice"},
        "hit": True,
        "tier": "l1",
    }


async def test_get_miss_is_200_with_null_value(client):
    resp = await client.get("/cache/user:999:profile")
    assert resp.status == 200
    body = await resp.json()
    assert body["key"] == "user:999:profile"
    assert body["value"] is None
    assert body["hit"] is False
    assert set(body) >= {"key", "value", "hit"}


async def test_set_returns_success_key_and_default_strategy(client):
    resp = await client.post(
        "/cache",
        json={
            "key": "user:123:profile",
            "value": {"name": "Alice", "level": 5},
            "ttl": 3600,
            "tags": ["user", "profile"],
            "dependencies": ["user:123"],
        },
    )
    assert resp.status == 200
    assert await resp.json() == {
        "success": True,
        "key": "user:123:profile",
        "strategy": "write_through",
    }


async def test_set_reports_the_strategy_named_or_taken_from_the_policy(client):
    resp = await client.post("/cache", json={"key": "k1", "value": 1, "strategy": "write_around"})
    assert (await resp.json())["strategy"] == "write_around"
    # model:* matches the model_inference policy, whose strategy is write_back
    resp = await client.post("/cache", json={"key": "model:m:abc", "value": [0.5]})
    assert (await resp.json())["strategy"] == "write_back"
    # a request's strategy beats the policy's
    resp = await client.post(
        "/cache", json={"key": "model:m:def", "value": [1], "strategy": "write_through"}
    )
    assert (await resp.json())["strategy"] == "write_through"
    # with no L2 every strategy writes L1, so all three read back from L1
    for key in ("k1", "model:m:abc", "model:m:def"):
        body = await (await client.get(f"/cache/{key}")).json()
        assert body["hit"] is True
        assert body["tier"] == "l1"


async def test_set_accepts_a_ttl_preset_name_and_null_ttl_and_strategy(client):
    resp = await client.post("/cache", json={"key": "p", "value": 1, "ttl": "short"})
    assert resp.status == 200
    resp = await client.post("/cache", json={"key": "q", "value": 2, "ttl": None, "strategy": None})
    assert await resp.json() == {"success": True, "key": "q", "strategy": "write_through"}
    assert (await (await client.get("/cache/p")).json())["value"] == 1


async def test_set_overwrites(client):
    await client.post("/cache", json={"key": "k", "value": "old"})
    await client.post("/cache", json={"key": "k", "value": "new"})
    assert (await (await client.get("/cache/k")).json())["value"] == "new"


async def test_value_expires_after_its_ttl(client):
    await client.post("/cache", json={"key": "brief", "value": 1, "ttl": 0.05})
    assert (await (await client.get("/cache/brief")).json())["hit"] is True
    await asyncio.sleep(0.15)
    body = await (await client.get("/cache/brief")).json()
    assert body["hit"] is False
    assert body["value"] is None


async def test_delete_returns_success_and_key_and_removes_the_value(client):
    await client.post("/cache", json={"key": "user:123:profile", "value": {"name": "Alice"}})
    resp = await client.delete("/cache/user:123:profile")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["key"] == "user:123:profile"
    assert body.get("deleted", True) is True
    assert (await (await client.get("/cache/user:123:profile")).json())["hit"] is False


async def test_delete_of_a_missing_key_succeeds(client):
    resp = await client.delete("/cache/never:set")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["key"] == "never:set"
    assert body.get("deleted", False) is False


async def test_delete_cascades_to_dependents(client):
    await client.post("/cache", json={"key": "user:1", "value": {"id": 1}})
    await client.post("/cache", json={"key": "recs:1", "value": [1, 2], "dependencies": ["user:1"]})
    await client.post("/cache", json={"key": "recs:1:top", "value": 1, "dependencies": ["recs:1"]})
    await client.post("/cache", json={"key": "other", "value": 0})
    assert (await client.delete("/cache/user:1")).status == 200
    for key in ("user:1", "recs:1", "recs:1:top"):
        assert (await (await client.get(f"/cache/{key}")).json())["hit"] is False, key
    assert (await (await client.get("/cache/other")).json())["hit"] is True


async def test_overwriting_a_source_invalidates_its_dependents(client):
    await client.post("/cache", json={"key": "user:1", "value": {"v": 1}})
    await client.post("/cache", json={"key": "recs:1", "value": [1], "dependencies": ["user:1"]})
    await client.post("/cache", json={"key": "user:1", "value": {"v": 2}})
    assert (await (await client.get("/cache/user:1")).json())["value"] == {"v": 2}
    assert (await (await client.get("/cache/recs:1")).json())["hit"] is False


# -- batch ---------------------------------------------------------------------------------


async def test_batch_set_returns_success_and_count(client):
    resp = await client.post(
        "/cache/batch-set",
        json={
            "items": {"user:123:profile": {"name": "Alice"}, "user:456:profile": {"name": "Bob"}},
            "ttl": 3600,
            "strategy": "write_through",
        },
    )
    assert resp.status == 200
    assert await resp.json() == {"success": True, "count": 2}
    for key, name in (("user:123:profile", "Alice"), ("user:456:profile", "Bob")):
        assert await (await client.get(f"/cache/{key}")).json() == {
            "key": key,
            "value": {"name": name},
            "hit": True,
            "tier": "l1",
        }


async def test_batch_set_with_tags_then_invalidate_those_tags(client):
    resp = await client.post("/cache/batch-set", json={"items": {"a": 1, "b": 2}, "tags": ["grp"]})
    assert await resp.json() == {"success": True, "count": 2}
    resp = await client.post("/invalidate", json={"tags": ["grp"]})
    assert await resp.json() == {"success": True, "invalidated_count": 2}


async def test_batch_get_returns_results_hits_misses(client):
    await client.post(
        "/cache/batch-set",
        json={
            "items": {"user:123:profile": {"name": "Alice"}, "user:456:profile": {"name": "Bob"}}
        },
    )
    resp = await client.post(
        "/cache/batch-get", json={"keys": ["user:123:profile", "user:456:profile", "content:789"]}
    )
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "results": {
            "user:123:profile": {"name": "Alice"},
            "user:456:profile": {"name": "Bob"},
            "content:789": None,
        },
        "hits": 2,
        "misses": 1,
    }


async def test_batch_get_and_batch_set_of_nothing(client):
    resp = await client.post("/cache/batch-get", json={"keys": []})
    assert await resp.json() == {"results": {}, "hits": 0, "misses": 0}
    resp = await client.post("/cache/batch-set", json={"items": {}})
    assert await resp.json() == {"success": True, "count": 0}


async def test_batch_get_tells_a_stored_null_from_a_miss_by_hits(client):
    await client.post("/cache", json={"key": "n", "value": None})
    body = await (await client.post("/cache/batch-get", json={"keys": ["n", "m"]})).json()
    assert body == {"results": {"n": None, "m": None}, "hits": 1, "misses": 1}


async def test_batch_of_max_batch_size_is_accepted(client, config_factory):
    limit = config_factory()["limits"]["max_batch_size"]
    items = {f"k{i}": i for i in range(limit)}
    assert (await client.post("/cache/batch-set", json={"items": items})).status == 200
    body = await (await client.post("/cache/batch-get", json={"keys": list(items)})).json()
    assert body == {"results": items, "hits": limit, "misses": 0}


# -- warm-up, health -----------------------------------------------------------------------


async def test_warm_up_without_loader_reports_what_it_could_not_warm(client):
    await client.post("/cache", json={"key": "user:123:profile", "value": {"name": "Alice"}})
    resp = await client.post(
        "/warm-up",
        json={"keys": ["user:123:profile", "user:456:profile"], "compute_strategy": "parallel"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is False  # user:456:profile is not cached after the call
    assert body["warmed_count"] == 1
    assert body["requested"] == 2
    assert set(body["failures"]) == {"user:456:profile"}
    failure = body["failures"]["user:456:profile"]
    assert failure["code"] == "no_loader"
    assert "no loader" in failure["message"]


async def test_warm_up_succeeds_when_every_key_is_cached_after_it(client):
    await client.post("/cache/batch-set", json={"items": {"a": 1, "b": 2}})
    for extra in ({}, {"compute_strategy": "sequential"}, {"compute_strategy": "parallel"}):
        resp = await client.post("/warm-up", json={"keys": ["a", "b"], **extra})
        assert resp.status == 200, extra
        body = await resp.json()
        assert body == {"success": True, "warmed_count": 2, "requested": 2, "failures": {}}
        body = await (await client.post("/warm-up", json={"keys": ["a", "b", "c"]})).json()
        assert (body["success"], body["warmed_count"]) == (False, 2)


async def test_warm_up_promotes_what_l2_holds(engine, prefix, make_client, config_factory, heard):
    cfg = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={"l1": {"type": "memory", "max_size_mb": 4}, "l2": {"type": "redis"}},
    )
    writer, reader = await make_client(cfg), await make_client(cfg)
    await writer.post("/cache", json={"key": "k", "value": 1, "strategy": "write_around"})
    # The writer's notice, arriving after the warm-up, would drop what it promoted (CI saw it).
    await heard(reader.app[AGENT], 1)
    body = await (await reader.post("/warm-up", json={"keys": ["k"]})).json()
    assert (body["success"], body["warmed_count"]) == (True, 1)
    assert (await (await reader.get("/cache/k")).json())["tier"] == "l1"


async def test_health(client):
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok",
        "reasons": [],
        "tiers": {"l1": "ok", "l2": "not configured"},
        "pid": os.getpid(),  # the test serves in its own process
    }


# -- stats ---------------------------------------------------------------------------------


async def test_stats_of_a_fresh_agent_has_the_seed_fields_all_zero(client, seed_stats_fields):
    stats = await stats_of(client)
    for name, kind in seed_stats_fields.items():
        assert name in stats, name
        assert type(stats[name]) is kind, (name, stats[name])
        assert stats[name] == 0, name


async def test_stats_count_exactly_after_a_known_sequence(client):
    values = {"a": 1, "b": {"x": [1, 2]}, "c": "three", "d": None}
    await client.post("/cache", json={"key": "a", "value": values["a"]})
    await client.post("/cache", json={"key": "b", "value": values["b"], "tags": ["t"]})
    await client.post("/cache/batch-set", json={"items": {"c": values["c"], "d": values["d"]}})
    assert (await (await client.get("/cache/a")).json())["hit"] is True  # hit 1
    assert (await (await client.get("/cache/b")).json())["hit"] is True  # hit 2
    assert (await (await client.get("/cache/zzz")).json())["hit"] is False  # miss 1
    body = await (await client.post("/cache/batch-get", json={"keys": ["a", "c", "nope"]})).json()
    assert (body["hits"], body["misses"]) == (2, 1)  # hits 4, misses 2
    await client.delete("/cache/d")  # deletes 1
    await client.delete("/cache/never")  # deletes 2 (a delete is counted even of nothing)
    # warm-up lookups are not hits or misses
    warm = await (await client.post("/warm-up", json={"keys": ["a", "nothing"]})).json()
    assert warm["warmed_count"] == 1

    stats = await stats_of(client)
    assert stats["hits"] == 4
    assert stats["misses"] == 2
    assert stats["sets"] == 4
    assert stats["deletes"] == 2
    assert stats["hit_rate"] == round(4 / 6, 4)
    # a and b were answered over HTTP: each keeps its entity tag, which L1 counts
    tags = 2 * ETAG_WEIGHT
    assert stats["l1_size_bytes"] == sum(weight(k, values[k]) for k in ("a", "b", "c")) + tags
    assert stats["l2_size_keys"] == 0
    assert isinstance(stats["avg_latency_ms"], float)
    assert stats["avg_latency_ms"] > 0

    # invalidation removes bytes but is not a delete or a set
    assert (await client.post("/invalidate", json={"tags": ["t"]})).status == 200
    after = await stats_of(client)
    assert (after["sets"], after["deletes"]) == (4, 2)
    assert after["l1_size_bytes"] == weight("a", 1) + ETAG_WEIGHT + weight("c", "three")


async def test_stats_l1_size_follows_overwrites_and_deletes(client):
    await client.post("/cache", json={"key": "k", "value": "x" * 100})
    assert (await stats_of(client))["l1_size_bytes"] == weight("k", "x" * 100)
    await client.post("/cache", json={"key": "k", "value": "y"})
    assert (await stats_of(client))["l1_size_bytes"] == weight("k", "y")
    await client.delete("/cache/k")
    assert (await stats_of(client))["l1_size_bytes"] == 0


# -- known bugs ----------------------------------------------------------------------------


async def test_sequential_warm_up_counts_each_key_once(client):
    await client.post("/cache", json={"key": "a", "value": 1})
    keys = ["a", "a", "a", "b"]
    parallel = await (await client.post("/warm-up", json={"keys": keys})).json()
    sequential = await (
        await client.post("/warm-up", json={"keys": keys, "compute_strategy": "sequential"})
    ).json()
    assert parallel["warmed_count"] == 1
    assert sequential["warmed_count"] == parallel["warmed_count"]


async def test_batch_get_with_repeated_keys_counts_stats_like_its_response(client):
    await client.post("/cache", json={"key": "a", "value": 1})
    resp = await client.post("/cache/batch-get", json={"keys": ["a", "a", "b", "b"]})
    body = await resp.json()
    stats = await stats_of(client)
    assert (stats["hits"], stats["misses"]) == (body["hits"], body["misses"])


async def test_batch_get_logs_each_lookup_at_debug(client, caplog):
    await client.post("/cache", json={"key": "user:1:profile", "value": 1})
    with caplog.at_level("DEBUG", logger="cache_server.routes"):
        body = {"keys": ["user:1:profile", "user:2:profile"]}
        assert (await client.post("/cache/batch-get", json=body)).status == 200
    # The routes' records alone: the POST's access log line may be written in this window.
    records = [r for r in caplog.records if r.name == "cache_server.routes"]
    events = [(r.getMessage(), getattr(r, "tier", None)) for r in records]
    assert events == [("cache_hit", "l1"), ("cache_miss", None)]
    assert all(r.key_pattern == "user:*" for r in records)
