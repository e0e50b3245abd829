"""The pytest plugin (entry point ``pytest11``): fixtures giving a test a started
:class:`~cache_core.CachingAgent`, or the HTTP app served on a loopback port, on the
real engine or on fakeredis.

Loading the plugin starts nothing: an engine starts when a test of the session first asks
for it, and every import of the project's packages is made then too. The async fixtures
are ``pytest_asyncio`` fixtures, so they work in pytest-asyncio's strict mode as in its
auto mode (in strict mode the tests themselves still need ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.test_utils import TestClient

    from cache_core import CachingAgent
    from cache_testing.engines import FakeEngine, RealEngine, Store

MARKER = "caching_agent"
HTTP_TIMEOUT = 30.0
"""Seconds one request of the app fixtures' client may take in all."""

MakeAgent = Callable[..., Awaitable["CachingAgent"]]
"""``await make(overrides=None, *, plugins=())``: what the factory fixtures give."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(config=None, plugins=()): for the caching_agent fixtures, a config merged "
        "over their default and plugins their agents and app get besides the installed ones",
    )


# -- what every fixture is built from ----------------------------------------------------


def _marked(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None or marker.kwargs.get(name) is None:
        return default
    return marker.kwargs[name]


@pytest.fixture
def caching_agent_overrides(request: pytest.FixtureRequest) -> Mapping[str, Any]:
    """The config merged over the default (mappings key by key, anything else replaced):
    the test's ``@pytest.mark.caching_agent(config={...})``, else none. Override this
    fixture in a conftest.py to give a whole directory the same."""
    overrides: Mapping[str, Any] = _marked(request, "config", {})
    return overrides


@pytest.fixture
def caching_agent_plugins(request: pytest.FixtureRequest) -> tuple[object, ...]:
    """Plugins (modules or objects with ``@hookimpl`` methods) every agent and app of the
    test gets besides the installed ones: ``@pytest.mark.caching_agent(plugins=[...])``,
    else none. A plugin under test needs no entry point to be tried."""
    return tuple(_marked(request, "plugins", ()))


def _config(store: Store, overrides: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    from cache_testing.config import default_config, merged, private_prefix

    config = merged(default_config(store.url, private_prefix()), overrides)
    yield config
    # After every agent and app of the test closed (they depend on this fixture), so a
    # write-back flush at close is deleted too.
    store.drop(config["redis"]["key_prefix"])


async def _agents(config: Mapping[str, Any], plugins: Iterable[object]) -> AsyncIterator[MakeAgent]:
    from cache_core import CachingAgent
    from cache_testing.config import merged

    base = tuple(plugins)
    async with contextlib.AsyncExitStack() as opened:

        async def make(
            overrides: Mapping[str, Any] | None = None, *, plugins: Iterable[object] = ()
        ) -> CachingAgent:
            # env={}: the caller's REDIS_URL and the like must not send a test elsewhere.
            agent = CachingAgent.from_config(
                merged(config, overrides or {}), plugins=(*base, *plugins), env={}
            )
            await agent.start()
            opened.push_async_callback(agent.close)
            return agent

        yield make


async def _app(
    config: Mapping[str, Any], plugins: Iterable[object]
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    from aiohttp import ClientTimeout
    from aiohttp.test_utils import TestClient, TestServer

    from cache_server import create_app

    app = create_app(config, plugins=plugins, env={})
    client = TestClient(TestServer(app, host="127.0.0.1"), timeout=ClientTimeout(HTTP_TIMEOUT))
    await client.start_server()  # starts the app: its agent opens L2 here
    try:
        yield client
    finally:
        await client.close()


# -- on the real engine ------------------------------------------------------------------


@pytest.fixture(scope="session")
def caching_agent_engine() -> Iterator[RealEngine]:
    """The engine of the test session (the embedded engine's binary), on a unix socket;
    ``.url``, and ``.client`` (redis-py) to look at what is stored past the agent."""
    from cache_testing.engines import RealEngine

    engine = RealEngine()
    yield engine
    engine.stop()


@pytest.fixture
def caching_agent_config(
    caching_agent_engine: RealEngine, caching_agent_overrides: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """This test's config: the session's engine, a key prefix of the test's own (its keys
    are deleted after the test), the overrides merged over it."""
    yield from _config(caching_agent_engine, caching_agent_overrides)


@pytest_asyncio.fixture
async def caching_agent_factory(
    caching_agent_config: dict[str, Any], caching_agent_plugins: tuple[object, ...]
) -> AsyncIterator[MakeAgent]:
    """``await caching_agent_factory(overrides=None, *, plugins=())``: another started agent
    on this test's config (so on its prefix: instances sharing one L2), closed after it."""
    async for make in _agents(caching_agent_config, caching_agent_plugins):
        yield make


@pytest_asyncio.fixture
async def caching_agent(caching_agent_factory: MakeAgent) -> CachingAgent:
    """A started agent on the real engine, closed after the test."""
    return await caching_agent_factory()


@pytest_asyncio.fixture
async def caching_agent_app(
    caching_agent_config: dict[str, Any], caching_agent_plugins: tuple[object, ...]
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The HTTP app on the real engine, served on 127.0.0.1: an aiohttp ``TestClient``
    (``await client.get("/health")``); its agent is ``client.app[cache_server.keys.AGENT]``."""
    async for client in _app(caching_agent_config, caching_agent_plugins):
        yield client


# -- on fakeredis ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def caching_agent_fake_engine() -> Iterator[FakeEngine]:
    """fakeredis serving the Redis protocol on 127.0.0.1 from a thread, for the session."""
    from cache_testing.engines import FakeEngine

    engine = FakeEngine()
    yield engine
    engine.stop()


@pytest.fixture
def caching_agent_fake_config(
    caching_agent_fake_engine: FakeEngine, caching_agent_overrides: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """:func:`caching_agent_config` on fakeredis, without server-assisted coherence: the
    engine's CLIENT TRACKING is not fakeredis's (2.34 broke the subscription when asked)."""
    from cache_testing.config import merged

    overrides = merged({"redis": {"client_tracking": "off"}}, caching_agent_overrides)
    yield from _config(caching_agent_fake_engine, overrides)


@pytest_asyncio.fixture
async def caching_agent_fake_factory(
    caching_agent_fake_config: dict[str, Any], caching_agent_plugins: tuple[object, ...]
) -> AsyncIterator[MakeAgent]:
    """:func:`caching_agent_factory` on fakeredis."""
    async for make in _agents(caching_agent_fake_config, caching_agent_plugins):
        yield make


@pytest_asyncio.fixture
async def caching_agent_fake(caching_agent_fake_factory: MakeAgent) -> CachingAgent:
    """A started agent on fakeredis, closed after the test."""
    return await caching_agent_fake_factory()


@pytest_asyncio.fixture
async def caching_agent_fake_app(
    caching_agent_fake_config: dict[str, Any], caching_agent_plugins: tuple[object, ...]
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """:func:`caching_agent_app` on fakeredis."""
    async for client in _app(caching_agent_fake_config, caching_agent_plugins):
        yield client
