"""``serve --workers N`` asks plugins for capabilities, never for a plugin by name: the
engine the workers share comes from the ``cache_shared_engine`` hook, and whether the
invalidation index is shared from the index's ``shared``. A third-party L2 tier gets the
same checks as Redis, and no engine when no plugin offers one."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from attrs import define

import cache_core
from cache_core import CacheError, CachingAgent
from cache_plugins_invalidation.local_index import LocalIndex
from cache_server.workers import refusal, shared_engine, supervise


class StoreTier:
    """A third-party L2 tier, storage only, that knows nothing of ``serve --workers``."""

    PLUGIN_NAME: ClassVar[str] = "store"

    @define(frozen=True)
    class Options:
        coherent: bool = True
        """Whether it reports other instances' changes (what attach answers)."""

    def __init__(self, options: StoreTier.Options, context: Any) -> None:
        self.default_ttl: float | None = None
        self.coherent = options.coherent
        self.data: dict[str, tuple[bytes, float]] = {}
        self._clock = context.clock

    def attach(self, listener: Any) -> bool:
        return self.coherent

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        entry = self.data.get(key)
        return entry[0] if entry is not None and entry[1] > self._clock() else None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        self.data[key] = (data, math.inf if ttl is None else self._clock() + ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        for key, data, ttl in items:
            await self.set(key, data, ttl)

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if self.data.pop(key, None) is not None]

    async def delete_matching(self, pattern: str) -> list[str]:
        raise NotImplementedError  # never called: nothing here is started

    async def count(self) -> int:
        return len(self.data)

    def describe(self) -> dict[str, Any]:
        return {"type": self.PLUGIN_NAME}

    async def try_lock(self, name: str, lease: float) -> str | None:
        return "token"

    async def unlock(self, name: str, token: str) -> None:
        return None


class SharedStubIndex(LocalIndex):
    """Stands for a third-party index every instance sees (kept in the tier's store)."""

    PLUGIN_NAME: ClassVar[str] = "shared_stub"
    shared: ClassVar[bool] = True


class StorePlugin:
    @cache_core.hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [StoreTier]

    @cache_core.hookimpl
    def cache_register_invalidators(self) -> list[type[Any]]:
        return [SharedStubIndex]


class FakeEngine:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    def worker_env(self) -> Mapping[str, str]:
        self.events.append("worker_env")
        return {"CACHING_AGENT_TEST_ENGINE": "fake"}


class EnginePlugin:
    """Offers ``answer`` as the workers' engine, recording each agent it is asked for."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.asked: list[Any] = []

    @cache_core.hookimpl
    def cache_shared_engine(self, agent: Any) -> object:
        self.asked.append(agent)
        return self.answer


def store_agent(*plugins: object, coherent: bool = True, backend: str = "shared_stub") -> Any:
    config = {
        "cache_tiers": {"l1": {"type": "memory"}, "l2": {"type": "store", "coherent": coherent}},
        "invalidation": {"backend": backend},
    }
    # env={}: every installed plugin loads, the Redis one (and its hook) included.
    return CachingAgent.from_config(config, plugins=[StorePlugin(), *plugins], env={})


def test_a_third_party_l2_that_reports_no_changes_is_refused_by_its_name() -> None:
    why = refusal(store_agent(coherent=False), 2)
    assert why is not None
    assert "L2 'store' does not report other instances' changes" in why


def test_a_third_party_l2_with_a_process_local_index_is_refused() -> None:
    why = refusal(store_agent(backend="local"), 2)
    assert why is not None
    assert "needs the tag and dependency indexes in L2" in why


def test_a_third_party_l2_with_a_shared_index_serves_workers_and_gets_no_engine() -> None:
    agent = store_agent()
    assert refusal(agent, 2) is None
    # No plugin offers an engine for this tier (the Redis plugin's hook declines it): the
    # workers reach L2 each as a lone instance would.
    assert shared_engine(agent) is None


def test_the_engine_comes_from_the_hook_asked_once_with_the_agent() -> None:
    engine = FakeEngine([])
    plugin = EnginePlugin(engine)
    agent = store_agent(plugin)
    assert shared_engine(agent) is engine
    assert plugin.asked == [agent]


def test_a_hook_answer_that_is_no_engine_is_refused_naming_its_class() -> None:
    agent = store_agent(EnginePlugin(object()))
    with pytest.raises(CacheError, match=r"builtins\.object, which lacks start, stop"):
        shared_engine(agent)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _worker_pids() -> list[int]:
    """This process's children started as ``serve --worker-of``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"--worker-of" in cmdline:
            pids.append(int(entry.name))
    return pids


def _environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers need Linux")
async def test_the_parent_starts_the_hooks_engine_before_the_workers_and_stops_it_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deadline: Any
) -> None:
    events: list[str] = []
    plugin = EnginePlugin(FakeEngine(events))
    parent = store_agent(plugin)
    config = tmp_path / "worker.yaml"  # the worker's own: L1 alone is enough to listen
    config.write_text(json.dumps({"cache_tiers": {"l1": {"type": "memory"}}}))
    port = _free_port()
    worker_args = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    worker_args += ["--config", str(config)]
    with deadline(60):
        running = asyncio.create_task(supervise(parent, worker_args, 1, "all listening"))
        said = ""
        while "all listening" not in said:
            assert not running.done(), running.result()
            await asyncio.sleep(0.05)
            said += capsys.readouterr().out
        (worker,) = _worker_pids()
        assert b"CACHING_AGENT_TEST_ENGINE=fake" in _environ(worker)
        assert events == ["start", "worker_env"]
        # supervise's own handler takes it (installed while it runs): as a Ctrl-C would.
        os.kill(os.getpid(), signal.SIGTERM)
        assert await running == 0
    assert events == ["start", "worker_env", "stop"]
    assert plugin.asked == [parent]
    assert _worker_pids() == []
