"""tune_allocator: glibc's mmap threshold stops following freed blocks (issue 13, item 16).

The effect is checked in a fresh interpreter (the test process keeps glibc's defaults):
after a 4 MiB block is freed, is the next 2 MiB block mapped on its own (``hblkhd`` in
``mallinfo2``) or carved from the heap?
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cache_core import serialization
from cache_server import cli
from cache_server.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, tune_allocator

glibc = pytest.mark.skipif(
    not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    if hasattr(os, "confstr")
    else True,
    reason="glibc malloc only",
)

PROBE = """
import ctypes, json, sys
from cache_server.allocator import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
applied = tune_allocator() if sys.argv[1] == "tuned" else {}
libc.free(libc.malloc(4 << 20))  # freeing a mapped block raises a dynamic threshold
before = libc.mallinfo2().hblkhd
block = libc.malloc(2 << 20)
mapped = libc.mallinfo2().hblkhd - before
libc.free(block)
from cache_core import serialization
uncopied = serialization.large_buffers_mapped
print(json.dumps({"applied": applied, "mapped": mapped, "uncopied": uncopied}))
"""


def probe(mode: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env=env,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@glibc
def test_tuned_process_maps_large_blocks_after_a_free():
    untuned = probe("untuned")
    tuned = probe("tuned")
    # The control shows the defect this guards against on this glibc.
    assert untuned["mapped"] == 0
    assert tuned["applied"] == {"mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    assert isinstance(tuned["mapped"], int)
    assert tuned["mapped"] >= 2 << 20
    # Large JSON is kept uncopied only where large buffers are known to be mapped.
    assert (untuned["uncopied"], tuned["uncopied"]) == (False, True)


@glibc
def test_operator_settings_win():
    # Both named, so nothing is called in this (the test) process.
    env = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    assert tune_allocator(env) == {}
    tunables = "glibc.malloc.trim_threshold=1048576:glibc.malloc.mmap_threshold=1048576"
    assert tune_allocator({"GLIBC_TUNABLES": tunables}) == {}
    assert serialization.large_buffers_mapped is False  # the operator's may be anything


def test_serve_worker_tunes_before_anything_else(monkeypatch):
    calls: list[str] = []

    def tune() -> dict[str, int]:
        calls.append("tune")
        return {}

    def become_worker(parent: int) -> bool:
        calls.append("worker")
        return False

    monkeypatch.setattr(cli, "tune_allocator", tune)
    monkeypatch.setattr(cli, "become_worker", become_worker)
    assert cli.serve_worker(None, "127.0.0.1", 1, 1, 0) == cli.EXIT_START
    assert calls == ["tune", "worker"]
