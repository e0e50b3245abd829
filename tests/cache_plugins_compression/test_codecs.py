"""Codecs through the agent and a real store: ratio, switching algorithms, bounded reads;
each on the Redis tier and on a third-party L2 tier (``l2_backend``), which store the
frames core compressed byte for byte alike."""

from __future__ import annotations

import functools
import json
import os
import tracemalloc
import zlib
from typing import Any

import pytest

from cache_core import CorruptEntryError, hookimpl
from cache_core.frames import COMPRESSED_HEADER_SIZE, MAGIC, VERSION, encode_frame
from cache_plugins_compression.gzip_codec import GzipCodec
from cache_plugins_compression.lz4_codec import Lz4Codec
from cache_plugins_compression.zstd_codec import ZstdCodec

CODECS = [("gzip", 1), ("zstd", 2), ("lz4", 3)]
MIB = 1024 * 1024


def learning_path(size: int = 4096) -> dict[str, Any]:
    """A JSON text value of about ``size`` bytes, shaped like a learning path."""
    steps: list[dict[str, Any]] = []
    i = 0
    while len(json.dumps({"user": 123, "steps": steps}, separators=(",", ":"))) < size:
        steps.append(
            {
                "id": f"step-{i}",
                "title": f"Fractions, part {i}: adding unlike denominators",
                "kind": "lesson" if i % 3 else "quiz",
                "minutes": 10 + i % 7,
                "mastery": round(0.1 * (i % 10), 1),
            }
        )
        i += 1
    return {"user": 123, "steps": steps}


def config(l2: Any, algorithm: str, **compression: Any) -> dict[str, Any]:
    config: dict[str, Any] = l2.config(compression={"algorithm": algorithm, **compression})
    return config


@pytest.mark.parametrize(("algorithm", "codec_id"), CODECS)
async def test_4kb_json_is_stored_under_1_5kb_and_reads_back(
    l2_backend: Any, algorithm: str, codec_id: int
) -> None:
    value = learning_path()
    assert len(json.dumps(value, separators=(",", ":"))) >= 4096
    async with l2_backend.agent(config(l2_backend, algorithm)) as agent:
        await agent.set("user:123:learning_path", value)
        stored = l2_backend.stored("user:123:learning_path")
        assert stored[:3] == bytes((MAGIC, VERSION, codec_id))
        assert len(stored) < 1536
        agent.l1.clear()
        assert await agent.get("user:123:learning_path") == value
        stats = (await agent.fetch_stats())["compression"][algorithm]
        assert stats["frames"] == 1
        assert stats["bytes_in"] >= 4096
        assert stats["bytes_out"] == len(stored) - COMPRESSED_HEADER_SIZE
        assert stats["ratio"] > 2.5


@pytest.mark.parametrize("writer", ["gzip", "zstd", "lz4"])
async def test_entries_read_back_after_the_algorithm_changes(l2_backend: Any, writer: str) -> None:
    value = learning_path()
    async with l2_backend.agent(config(l2_backend, writer)) as agent:
        await agent.set("content:1", value)
    for reader in ("gzip", "zstd", "lz4"):
        async with l2_backend.agent(config(l2_backend, reader)) as agent:
            assert await agent.lookup("content:1") == (
                json.dumps(value, separators=(",", ":")).encode(),
                "l2",
            )


async def test_values_at_or_below_the_threshold_are_stored_raw(l2_backend: Any) -> None:
    async with l2_backend.agent(config(l2_backend, "gzip")) as agent:
        await agent.set("small", "x" * 1000)  # 1002 bytes of JSON: under 1024
        await agent.set("large", "x" * 1100)
        assert l2_backend.stored("small")[2] == 0
        assert l2_backend.stored("large")[2] == 1


@pytest.mark.parametrize("codec_cls", [GzipCodec, ZstdCodec, Lz4Codec])
def test_compression_that_does_not_shrink_is_skipped(codec_cls: Any) -> None:
    noise = os.urandom(4000)
    frame = encode_frame(noise, codec_cls(6))
    assert frame == bytes((MAGIC, VERSION, 0)) + bytes(16) + noise  # never expires, unstamped


async def test_policy_without_compress_stores_raw(l2_backend: Any) -> None:
    cfg = config(l2_backend, "gzip")
    cfg["cache_policies"] = {"model_inference": {"match": ["model:*"], "compress": False}}
    async with l2_backend.agent(cfg) as agent:
        await agent.set("model:m:1", learning_path())
        await agent.set("user:1:path", learning_path())
        assert l2_backend.stored("model:m:1")[2] == 0
        assert l2_backend.stored("user:1:path")[2] == 1


async def test_compression_disabled_stores_raw(l2_backend: Any) -> None:
    async with l2_backend.agent(config(l2_backend, "gzip", enable=False)) as agent:
        await agent.set("content:1", learning_path())
        assert l2_backend.stored("content:1")[2] == 0


@functools.cache
def gzip_of_zeros(zeros: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(MIB)
    parts = [packer.compress(chunk) for _ in range(zeros // MIB)]
    parts.append(packer.flush())
    return b"".join(parts)


def plant_gzip_bomb(l2: Any, key: str, zeros: int, declared: int, version: int) -> int:
    """A gzip frame of ``zeros`` zero bytes that declares ``declared`` bytes."""
    payload = gzip_of_zeros(zeros)
    # An expiry from version 2, a stamp from version 3 (8 bytes each; 0: never, none).
    fields = bytes(8 * (version - 1))
    header = bytes((MAGIC, version, 1)) + fields + declared.to_bytes(4, "big")
    l2.plant(key, header + payload)
    return len(payload)


@pytest.mark.parametrize(
    ("declared", "message", "version"),
    [
        (1024 * MIB - 1, "inflates beyond 8388608", VERSION),
        (100, "beyond 100", VERSION),
        (0, "beyond 0", VERSION),
        (1024 * MIB - 1, "inflates beyond 8388608", 1),
        (100, "beyond 100", 1),
    ],
    ids=["honest-1GB", "lying-small", "lying-zero", "v1-honest-1GB", "v1-lying-small"],
)
async def test_a_gzip_bomb_is_refused_without_inflating(
    l2_backend: Any, declared: int, message: str, version: int
) -> None:
    packed = plant_gzip_bomb(l2_backend, "bomb", 1024 * MIB, declared, version)  # 1 GB
    assert packed < 4 * MIB
    async with l2_backend.agent(config(l2_backend, "gzip")) as agent:
        tracemalloc.start()
        try:
            with pytest.raises(CorruptEntryError, match=message):
                await agent.get("bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Decompression is capped by the declared size, so the read holds little beyond the
    # ~1 MB frame it fetched.
    assert peak < 3 * MIB, f"peak {peak / MIB:.1f} MiB"


@pytest.mark.parametrize("codec_cls", [GzipCodec, ZstdCodec, Lz4Codec])
def test_every_codec_caps_what_it_inflates(codec_cls: Any) -> None:
    codec = codec_cls(6)
    packed = codec.compress(bytes(8 * MIB))
    with pytest.raises(CorruptEntryError, match="beyond"):
        codec.decompress(packed, MIB)
    assert codec.decompress(packed, 8 * MIB) == bytes(8 * MIB)


@pytest.mark.parametrize("codec_cls", [GzipCodec, ZstdCodec, Lz4Codec])
def test_damaged_payloads_are_corrupt_entries(codec_cls: Any) -> None:
    codec = codec_cls(6)
    packed = codec.compress(b'{"a": "' + b"x" * 5000 + b'"}')
    with pytest.raises(CorruptEntryError):
        codec.decompress(packed[: len(packed) // 2], MIB)
    with pytest.raises(CorruptEntryError):
        codec.decompress(b"not a compressed frame at all", MIB)


class GzipOnly:
    @hookimpl
    def cache_register_codecs(self) -> list[type[Any]]:
        return [GzipCodec]


async def test_a_frame_of_an_uninstalled_codec_names_the_extra(l2_backend: Any) -> None:
    async with l2_backend.agent(config(l2_backend, "zstd")) as agent:
        await agent.set("content:z", learning_path())
    # Only the L2 tier and gzip: as if caching-agent[zstd] were not installed.
    cfg = config(l2_backend, "gzip")
    async with l2_backend.agent(cfg, GzipOnly(), alone=True) as agent:
        with pytest.raises(CorruptEntryError, match=r"caching-agent\[zstd\]"):
            await agent.get("content:z")


def test_a_zstd_frame_that_lies_about_its_size_is_refused() -> None:
    codec = ZstdCodec(3)
    forged = bytearray(codec.compress(bytes(50 * MIB)))
    assert forged[4] == 0x80  # 4-byte content size after a 1-byte window descriptor
    forged[6:10] = (100).to_bytes(4, "little")  # claims 100 bytes, holds 50 MiB of zeros
    tracemalloc.start()
    try:
        with pytest.raises(CorruptEntryError, match="damaged"):
            codec.decompress(bytes(forged), MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MIB
