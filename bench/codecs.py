"""Compression codecs side by side on realistic cache payloads.

For each payload and codec: stored size / JSON size (ratio), and µs per encode and per
decode of a whole L2 frame (cache_core.frames, as the Redis tier does it), best of 5
repeats. Writes bench/results-codecs.md and prints the same table.

    uv run python bench/codecs.py
"""

from __future__ import annotations

import random
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from cache_core.frames import decode_frame, encode_frame
from cache_plugins_compression.gzip_codec import GzipCodec
from cache_plugins_compression.lz4_codec import Lz4Codec
from cache_plugins_compression.zstd_codec import ZstdCodec

LEVEL = 6  # compression.compression_level of the shipped config
MAX = 8 * 1024 * 1024
WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 60 strings
    "the a of to and in is that for fraction numerator denominator equivalent add subtract "
    "multiply divide whole number line compare order mixed improper simplify common factor "
    "multiple prime area perimeter angle triangle square circle radius diameter graph data "
    "mean median mode probability chance experiment outcome predict explain reason model "
    "student learns practice shows example step first then next finally check answer"
).split()


def learning_path(steps: int, rng: random.Random) -> dict[str, Any]:
    return {
        "user_id": 123,
        "path_id": "lp-7f3a",
        "generated_at": "2026-11-25T06:00:00Z",
        "steps": [
            {
                "id": f"step-{i}",
                "content_id": f"content:{rng.randint(1000, 99999)}",
                "title": " ".join(rng.choices(WORDS, k=6)).capitalize(),
                "kind": rng.choice(["lesson", "quiz", "video", "exercise"]),
                "minutes": rng.randint(5, 40),
                "mastery": round(rng.random(), 3),
                "prerequisites": [f"step-{j}" for j in range(max(0, i - 2), i)],
            }
            for i in range(steps)
        ],
    }


def model_output(rng: random.Random) -> dict[str, Any]:
    return {
        "model": "recommender-v3",
        "input_hash": "9c1e4b",
        "scores": [
            {"content_id": rng.randint(1, 10**6), "score": rng.random()} for _ in range(200)
        ],
        "embedding": [round(rng.gauss(0, 1), 6) for _ in range(384)],
        "explanation": " ".join(rng.choices(WORDS, k=80)),
    }


def curriculum_text(rng: random.Random) -> dict[str, Any]:
    paragraphs = [
        ". ".join(" ".join(rng.choices(WORDS, k=rng.randint(8, 20))) for _ in range(6)) + "."
        for _ in range(30)
    ]
    return {"content_id": "content:4411", "title": "Fractions", "body": "\n\n".join(paragraphs)}


def payloads() -> dict[str, bytes]:
    rng = random.Random(7)
    return {
        "learning path (small)": orjson.dumps(learning_path(12, rng)),
        "learning path (large)": orjson.dumps(learning_path(150, rng)),
        "model output": orjson.dumps(model_output(rng)),
        "curriculum text": orjson.dumps(curriculum_text(rng)),
    }


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    codecs = {"gzip": GzipCodec(LEVEL), "zstd": ZstdCodec(LEVEL), "lz4": Lz4Codec(LEVEL)}
    readers = {c.CODEC_ID: c for c in codecs.values()}
    rows = [
        "| payload | JSON bytes | codec | stored bytes | ratio | encode µs | decode µs |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, data in payloads().items():
        number = max(20, 2_000_000 // len(data))
        for codec_name, codec in codecs.items():
            frame = encode_frame(data, codec)
            assert decode_frame(frame, readers, MAX) == data
            enc = best_us(lambda data=data, codec=codec: encode_frame(data, codec), number)
            dec = best_us(lambda frame=frame: decode_frame(frame, readers, MAX), number)
            rows.append(
                f"| {name} | {len(data)} | {codec_name} | {len(frame)} | "
                f"{len(data) / len(frame):.2f} | {enc:.1f} | {dec:.1f} |"
            )
    table = "\n".join(rows)
    print(table)
    out = Path(__file__).with_name("results-codecs.md")
    out.write_text(
        "# Codecs on realistic payloads\n\n"
        f"Level {LEVEL} for each codec (gzip 6, zstd 6, lz4 fast mode); whole L2 frames "
        "(3-byte header included); best of 5 repeats. Produced by "
        "`uv run python bench/codecs.py`.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
