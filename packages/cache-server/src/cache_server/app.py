"""The app factory: ``create_app(config)`` builds the agent and the aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from os import PathLike
from typing import Any

from aiohttp import web

from cache_core import CachingAgent, Config
from cache_server.auth import Authenticator
from cache_server.keys import AGENT, CONFIG, TELEMETRY
from cache_server.middleware import add_routes
from cache_server.routes import get_value, l1_hits, metrics, routes
from cache_server.settings import SERVER_SETTINGS, AgentSettings, ExportSettings, ServerSettings
from cache_server.telemetry import OpenTelemetryRecorder


def create_app(
    config: str | PathLike[str] | Mapping[str, Any] | Config | None = None,
    *,
    plugins: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
) -> web.Application:
    """An application serving the cache API; the agent is assembled now (a bad config
    raises :class:`~cache_core.ConfigError` here) and opened and closed with the app."""
    # The server's own sections are claimed even when CACHING_AGENT_PLUGINS leaves its
    # entry point out: it is what reads them.
    agent = CachingAgent.from_config(config, plugins=(*plugins, SERVER_SETTINGS), env=env)
    authenticator = Authenticator(agent.config.section(ServerSettings))
    telemetry = next((r for r in agent.recorders if isinstance(r, OpenTelemetryRecorder)), None)
    app = web.Application(client_max_size=agent.config.limits.max_request_bytes)
    app[AGENT] = agent
    app[CONFIG] = agent.config
    app[TELEMETRY] = telemetry
    add_routes(
        app,
        routes,
        authenticator,
        telemetry,
        at_once={get_value: l1_hits(agent)},
        max_body=agent.config.limits.max_request_bytes,
        body_timeout=agent.config.section(ServerSettings).body_timeout,
        access_log=agent.config.section(ExportSettings).access_log,
    )
    app.cleanup_ctx.append(_agent_lifetime)
    if agent.config.section(ExportSettings).prometheus_port is not None:
        app.cleanup_ctx.append(_metrics_port)
    return app


async def _agent_lifetime(app: web.Application) -> AsyncIterator[None]:
    agent = app[AGENT]
    await agent.start()
    try:
        yield
    finally:
        await agent.close()


async def _metrics_port(app: web.Application) -> AsyncIterator[None]:
    """``monitoring.prometheus_port``: /metrics alone, on a port of its own."""
    side = web.Application()
    side[AGENT] = app[AGENT]
    side[TELEMETRY] = app[TELEMETRY]
    side.router.add_get("/metrics", metrics)
    runner = web.AppRunner(side, access_log=None)
    await runner.setup()
    config = app[AGENT].config
    site = web.TCPSite(
        runner, config.section(AgentSettings).host, config.section(ExportSettings).prometheus_port
    )
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()
