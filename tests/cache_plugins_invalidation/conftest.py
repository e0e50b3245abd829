"""Fixtures for the tag, event and dependency invalidation tests: an L1-only agent factory
with cache-plugins-invalidation registered explicitly.

As in tests/cache_core, ``env={"CACHING_AGENT_PLUGINS": ""}`` keeps every installed
entry-point plugin (and the caller's REDIS_* / CACHE_* variables) out, so what a test
uses is what it registers; compression is off, since gzip lives in a plugin package.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

import cache_plugins_invalidation.hooks
from cache_core import CachingAgent

NO_PLUGINS_ENV = {"CACHING_AGENT_PLUGINS": ""}
INVALIDATION = (cache_plugins_invalidation.hooks,)

BASE_CONFIG: dict[str, Any] = {
    "cache_tiers": {"l1": {"type": "memory", "max_size_mb": 4, "ttl": 300}},
    "compression": {"enable": False},
}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def no_plugins_env() -> dict[str, str]:
    return dict(NO_PLUGINS_ENV)


@pytest.fixture
def base_config() -> Callable[..., dict[str, Any]]:
    """``base_config(**sections)``: a fresh L1-only config, top-level sections replaced."""

    def make(**sections: Any) -> dict[str, Any]:
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg.update(copy.deepcopy(sections))
        return cfg

    return make


MakeAgent = Callable[..., Awaitable[CachingAgent]]


@pytest.fixture
async def make_agent(clock: FakeClock) -> AsyncIterator[MakeAgent]:
    """``await make_agent(config=None, plugins=(), env=None)``: a started agent on the fake
    clock with the invalidation plugin and ``plugins`` (closed at teardown unless the test
    closed it)."""
    agents: list[CachingAgent] = []

    async def make(
        config: Mapping[str, Any] | None = None,
        plugins: tuple[object, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> CachingAgent:
        cfg = copy.deepcopy(BASE_CONFIG) if config is None else config
        agent = CachingAgent.from_config(
            cfg,
            plugins=(*INVALIDATION, *plugins),
            env=NO_PLUGINS_ENV if env is None else env,
            clock=clock,
        )
        await agent.start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()
