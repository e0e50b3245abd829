"""The W-TinyLFU tier of a git ref against the working tree's, on every cell of
bench/hitratio.py: the targets each meets at seeds 0-4, its mean distance to the best of
LRU and theine, the synthetic short traces within a point of LRU, and a miss's and a
hit's cost against LRU's on a few traces (issue 19).

A change to the policy is judged here on the five counts, not on seed 0's alone: on these
short traces a cell can turn on one collision of the sketch's hash. Each side replays in
a process of its own (the ref's ``packages/cache-core/src`` extracted with ``git
archive``), the two alternating for the costs, best of COST_ROUNDS; LRU's costs, which
the ratios divide by, are measured once in this process. Before a5ef9be a seed moved only
the random admissions, not the sketch's hash, so an older ref's five counts vary less
than they would. Prints; writes no results file (what it compares is a development, not
the project beside its peers).

    uv run --group bench python bench/policy_ab.py [REF]        (REF: HEAD by default)
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = "packages/cache-core/src"
COST_TRACES = ("multi2", "web07", "ps")
COST_ROUNDS = 3


def cells() -> list[tuple[str, int, str]]:
    """(trace, size, kind) of every cell: the real traces' and the synthetic ones'."""
    from hitratio import load, names, sizes_for
    from synthetic_traces import cases

    found = [(name, size, "real") for name in names() for size in sizes_for(name, load(name))]
    found += [(f"{name}@{fraction:.0%}", size, "synthetic") for name, fraction, _, size in cases()]
    return found


@functools.cache
def synthetic() -> dict[str, list[int]]:
    from synthetic_traces import cases

    return {f"{name}@{fraction:.0%}": keys for name, fraction, keys, _ in cases()}


def keys_of(name: str) -> Any:
    from hitratio import load

    return synthetic()[name] if "@" in name else load(name)


def child(what: str) -> None:
    """In the side's process: ours at every seed on every cell, or the costs."""
    from hitratio import SEEDS, replay_tier, unit
    from policy_cost import TIERS, costs

    from cache_core.tiers.wtinylfu import WTinyLfuTier

    if what == "ratios":
        out: dict[str, Any] = {}
        for name, size, _ in cells():
            keys = keys_of(name)
            out[f"{name}|{size}"] = [
                replay_tier(WTinyLfuTier(weigher=unit, max_bytes=size, seed=seed), keys)
                for seed in range(SEEDS)
            ]
    else:
        out = {}
        for name in COST_TRACES:
            keys = keys_of(name)[:1_000_000]
            size = max(10, round(len(set(keys)) * 0.25))
            hit, miss, _ = costs(TIERS["W-TinyLFU"], size, keys)
            out[name] = [hit, miss]
    json.dump(out, sys.stdout)


def side(src: Path | None, what: str) -> Any:
    env = dict(os.environ)
    if src is not None:  # ahead of the installed (editable) working tree
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, __file__, "--child", what],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT / "bench",
    )
    if done.returncode:
        where = src or "the working tree"
        raise SystemExit(f"policy_ab: the {what} replay failed ({where}):\n{done.stderr}")
    return json.loads(done.stdout)


def extract(ref: str, into: Path) -> Path:
    command = ["git", "-C", str(ROOT), "archive", ref, SRC]
    done = subprocess.run(command, check=False, capture_output=True)
    if done.returncode:
        raise SystemExit(f"policy_ab: no {SRC} at {ref!r}: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / SRC


def verdicts(ours: dict[str, list[float]], peers: dict[str, tuple[float, float]]) -> list[str]:
    """Per seed: targets met on the real traces, the mean distance to the best, and the
    synthetic traces within a point of LRU (bench/hitratio.py's targets)."""
    from hitratio import SEEDS, short_target, target

    lines = []
    for seed in range(SEEDS):
        met = short = real = 0
        total = 0.0
        for cell, values in ours.items():
            name, _ = cell.split("|")
            lru, the = peers[cell]
            value = values[seed]
            if "@" in name:
                short += value >= short_target(lru)
                continue
            met += value >= target(name, lru, the)
            total += value - max(lru, the)
            real += 1
        lines.append(f"seed {seed}: {met}/{real} met, mean {total / real:+.3f}, synthetic {short}")
    return lines


def main(ref: str) -> None:
    from hitratio import replay_theine, replay_tier, unit
    from policy_cost import TIERS, costs

    from cache_core.tiers.memory import MemoryTier

    found = cells()
    if not any(kind == "real" for _, _, kind in found):
        raise SystemExit("policy_ab: no traces (see bench/hitratio.py); nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        src = extract(ref, Path(tmp))  # first: a ref that is not there fails at once
        peers = {}
        for name, size, _ in found:
            keys = keys_of(name)
            lru = replay_tier(MemoryTier(weigher=unit, max_bytes=size), keys)
            peers[f"{name}|{size}"] = (lru, replay_theine(size, keys))
        sides = {ref: src, "working tree": None}
        ratios = {label: side(path, "ratios") for label, path in sides.items()}
        cost: dict[str, dict[str, list[float]]] = {label: {} for label in sides}
        for _ in range(COST_ROUNDS):
            for label, path in sides.items():
                for name, pair in side(path, "costs").items():
                    best = cost[label].get(name, pair)
                    cost[label][name] = [min(a, b) for a, b in zip(best, pair, strict=True)]
    lru_cost = {}
    for name in COST_TRACES:
        keys = keys_of(name)[:1_000_000]
        size = max(10, round(len(set(keys)) * 0.25))
        hit, miss, _ = costs(TIERS["LRU"], size, keys)
        lru_cost[name] = (hit, miss)
    for label in sides:
        print(f"== {label}")
        for line in verdicts(ratios[label], peers):
            print("  " + line)
        for name, (hit, miss) in cost[label].items():
            lru_hit, lru_miss = lru_cost[name]
            print(f"  {name}: a miss {miss / lru_miss:.2f}x LRU's, a hit {hit / lru_hit:.2f}x")
    first, second = (ratios[label] for label in sides)
    moved = [
        f"{cell.replace('|', '@')}: {first[cell][0]:.2f} -> {second[cell][0]:.2f}"
        for cell in first
        if abs(first[cell][0] - second[cell][0]) >= 0.1
    ]
    print(f"cells moved by 0.1 point or more at seed 0 ({len(moved)}):")
    for line in moved:
        print("  " + line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
