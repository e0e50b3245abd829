"""HTTP caching semantics of GET /cache/{key}: an ETag (a digest of the value, kept with
the L1 entry), Cache-Control max-age, If-None-Match answered 304, and a request's
Cache-Control: no-cache skipping L1 (the loader again, else L2), on the real engine."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cache_core import etags
from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import WTinyLfuTier
from cache_server.keys import AGENT


@pytest.fixture
def l2_cfg(engine: Any, prefix: str, config_factory: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={
            "l1": {"type": "memory", "max_size_mb": 4, "ttl": 300},
            "l2": {"type": "redis"},
        },
    )
    return cfg


async def test_a_hit_carries_a_tag_of_its_value_and_its_time_left(
    make_client: Any, l2_cfg: dict[str, Any]
) -> None:
    a, b = await make_client(l2_cfg), await make_client(l2_cfg)
    await a.post("/cache", json={"key": "k", "value": {"n": 1}, "ttl": 120})
    first = await a.get("/cache/k")
    assert first.status == 200
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and etag.endswith('"')
    max_age = int(first.headers["Cache-Control"].removeprefix("max-age="))
    assert 110 <= max_age <= 120
    from_l2 = await b.get("/cache/k")  # another instance, from L2: the same tag
    assert (await from_l2.json())["tier"] == "l2"
    assert from_l2.headers["ETag"] == etag
    assert (await b.get("/cache/k")).headers["ETag"] == etag  # and from its L1
    await a.post("/cache", json={"key": "k", "value": {"n": 2}})
    assert (await a.get("/cache/k")).headers["ETag"] != etag
    await a.post("/cache", json={"key": "k", "value": {"n": 1}})
    assert (await a.get("/cache/k")).headers["ETag"] == etag  # the value decides the tag
    miss = await a.get("/cache/absent")
    assert "ETag" not in miss.headers and (await miss.json())["hit"] is False


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("{etag}", 304),
        ("{strong}", 304),  # weak comparison: W/ or not, the same tag
        ('"other", {etag}', 304),
        ("*", 304),
        ('W/"0000000000000000"', 200),
        ("", 200),
    ],
)
async def test_if_none_match_answers_304_without_a_body(
    make_client: Any, l2_cfg: dict[str, Any], given: str, status: int
) -> None:
    client = await make_client(l2_cfg)
    await client.post("/cache", json={"key": "k", "value": [1, 2]})
    etag = (await client.get("/cache/k")).headers["ETag"]
    header = given.format(etag=etag, strong=etag.removeprefix("W/"))
    for _ in range(2):  # from L1, then from L2 (L1 emptied)
        resp = await client.get("/cache/k", headers={"If-None-Match": header})
        assert resp.status == status, header
        if status == 304:
            assert await resp.read() == b""
            assert resp.headers["ETag"] == etag
            assert resp.headers["Cache-Control"].startswith("max-age=")
        else:
            assert (await resp.json())["value"] == [1, 2]
        client.server.app[AGENT].l1.clear()
    missing = await client.get("/cache/nothing", headers={"If-None-Match": "*"})
    assert missing.status == 200  # "*" matches a current value only


async def test_no_cache_skips_l1_and_answers_from_l2(
    make_client: Any, l2_cfg: dict[str, Any]
) -> None:
    client = await make_client(l2_cfg)
    agent = client.server.app[AGENT]
    await client.post("/cache", json={"key": "k", "value": "in l2"})
    agent.l1.set("k", orjson.dumps("only in l1"), 60)  # L1 out of step with L2
    assert (await (await client.get("/cache/k")).json())["value"] == "only in l1"
    fresh = await client.get("/cache/k", headers={"Cache-Control": "max-age=0, no-cache"})
    body = await fresh.json()
    assert (body["value"], body["tier"]) == ("in l2", "l2")
    # L1 took what L2 answered.
    assert (await (await client.get("/cache/k")).json()) == {
        "key": "k",
        "value": "in l2",
        "hit": True,
        "tier": "l1",
    }


async def test_no_cache_reloads_through_the_keys_loader(
    make_client: Any, l2_cfg: dict[str, Any], loader_source: Any
) -> None:
    cfg = {
        **l2_cfg,
        "loaders": {"python": {"function": f"{loader_source.NAME}:plain", "match": ["doc:{id}"]}},
    }
    client = await make_client(cfg)
    assert (await (await client.get("/cache/doc:1")).json())["tier"] == "loader"
    assert (await (await client.get("/cache/doc:1")).json())["tier"] == "l1"
    assert loader_source.CALLS == ["doc:1"]
    again = await client.get("/cache/doc:1", headers={"Cache-Control": "no-cache"})
    assert (await again.json())["tier"] == "loader"
    assert loader_source.CALLS == ["doc:1", "doc:1"]


async def test_with_l1_alone_no_cache_is_answered_by_l1(client: Any) -> None:
    await client.post("/cache", json={"key": "k", "value": 5})
    resp = await client.get("/cache/k", headers={"Cache-Control": "no-cache"})
    assert (await resp.json())["value"] == 5


@pytest.mark.parametrize("tier_cls", [MemoryTier, WTinyLfuTier])
def test_the_tag_is_computed_once_per_entry(
    tier_cls: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    digests: list[bytes] = []
    real = etags.etag_of

    def counted(data: bytes) -> str:
        digests.append(data)
        return real(data)

    monkeypatch.setattr(f"{tier_cls.__module__}.etag_of", counted)
    tier = tier_cls()
    tier.set("k", b"1", 60)
    first, again = tier.tagged("k"), tier.tagged("k")
    assert first is not None and again is not None and again[:2] == first[:2]
    assert 59 < first[2] <= 60
    assert digests == [b"1"]  # two reads, one digest
    tier.set("k", b"2", 60)
    second = tier.tagged("k")
    assert second is not None and second[1] != first[1]
    assert digests == [b"1", b"2"]
    assert tier.get("k") == b"2" and tier.tagged("absent") is None


@pytest.mark.parametrize("tier_cls", [MemoryTier, WTinyLfuTier])
def test_a_kept_tag_counts_in_l1s_bytes(tier_cls: type[Any]) -> None:
    from cache_core.tiers.memory import ETAG_WEIGHT

    tier = tier_cls()
    tier.set("k", b"1", 60)
    before = tier.size_bytes
    assert tier.tagged("k") is not None
    assert tier.size_bytes == before + ETAG_WEIGHT
    assert tier.tagged("k") is not None
    assert tier.size_bytes == before + ETAG_WEIGHT  # kept: counted once
    tier.delete("k")
    assert tier.size_bytes == 0
