"""freeze_startup_heap: the served process's startup objects leave the collector's walks
(issue 16: full collections of the whole heap were the POSTs' p99), and its young
generation is collected at YOUNG_THRESHOLD.

Checked in fresh interpreters: freezing the test process would keep its objects forever.
"""

from __future__ import annotations

import json
import subprocess
import sys

from cache_server.collector import YOUNG_THRESHOLD

FREEZE = """
import gc, json, weakref
from cache_server.collector import freeze_startup_heap

class Node:
    pass

# Startup garbage: a cycle no one refers to, which only the collector frees.
cycle = Node()
cycle.me = cycle
dead = weakref.ref(cycle)
del cycle
kept = Node()
before = gc.get_freeze_count()
frozen = freeze_startup_heap()
print(json.dumps({
    "before": before, "frozen": frozen, "counted": gc.get_freeze_count(),
    "garbage_freed": dead() is None, "threshold": gc.get_threshold(),
}))
"""

SERVE = """
import asyncio, gc, os, signal
from aiohttp import web
from cache_server.server import serve_app

def ready():
    print(gc.get_freeze_count(), gc.get_threshold()[0], flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

asyncio.run(serve_app(
    web.Application(), "127.0.0.1", 0, ready=ready, reuse_port=False, shutdown_timeout=1
))
"""


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout


def test_startup_garbage_is_collected_and_the_rest_frozen() -> None:
    got = json.loads(run(FREEZE))
    assert got["before"] == 0
    assert got["frozen"] == got["counted"] > 1000  # the interpreter's and aiohttp's objects
    # Frozen after a collection, never before it: a startup cycle is not kept for good.
    assert got["garbage_freed"] is True
    # Young collections at YOUNG_THRESHOLD, the older generations' thresholds as they were.
    assert got["threshold"] == [YOUNG_THRESHOLD, 10, 10]


def test_serve_app_freezes_before_it_answers() -> None:
    frozen, young = map(int, run(SERVE).split())
    assert frozen > 1000
    assert young == YOUNG_THRESHOLD
