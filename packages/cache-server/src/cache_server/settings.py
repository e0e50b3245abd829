"""The config sections cache-server owns (cache_core.settings): where it listens
(``agent``), who may call it (``server``), and how it exports and logs (its fields of
``monitoring``). Core never reads them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from attrs import define, field

from cache_core import hookimpl
from cache_core.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
"""What ``monitoring.log_level`` (and ``serve --log-level``) accept, least severe first."""


@define(frozen=True)
class AgentSettings:
    """The service's name and version (for telemetry) and where it listens."""

    SECTION: ClassVar[str] = "agent"

    name: str = "caching_agent"
    version: str = "1.0.0"
    port: int = 8015
    host: str = "0.0.0.0"

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"agent.port: must be a TCP port (1-65535), got {self.port}")


@define(frozen=True)
class ClientToken:
    """A bearer token a client presents, and the namespace its keys live in (None: none)."""

    token: str
    namespace: str | None = None


@define(frozen=True)
class ServerSettings:
    """Who may call the HTTP API, and how long a request body may take to arrive. With no
    token configured, anyone on the network may call it."""

    SECTION: ClassVar[str] = "server"
    ENV: ClassVar[Mapping[str, str]] = {"CACHE_API_TOKEN": "auth_token"}

    body_timeout: float = 10.0
    """Seconds a request body may take to arrive in full; a slower one is a 408."""

    auth_token: str | None = None
    """One bearer token for every route but /health (env CACHE_API_TOKEN)."""
    tokens: list[ClientToken] = field(factory=list)
    """Tokens with namespaces: a client sees, writes and invalidates only its own keys."""

    def check(self) -> None:
        if not self.body_timeout > 0:  # NaN included
            raise ConfigError(
                f"server.body_timeout: must be greater than 0, got {self.body_timeout}"
            )
        all_tokens = [t.token for t in self.tokens] + (
            [self.auth_token] if self.auth_token is not None else []
        )
        if any(len(token) < 16 for token in all_tokens):
            raise ConfigError("server: every token must be at least 16 characters long")
        if len(set(all_tokens)) != len(all_tokens):
            raise ConfigError("server: the same token is configured twice")
        for index, client in enumerate(self.tokens):
            if client.namespace is not None and (
                not client.namespace or not client.namespace.isprintable()
            ):
                raise ConfigError(f"server.tokens[{index}].namespace: expected printable text")


@define(frozen=True)
class ExportSettings:
    """cache-server's fields of ``monitoring``: metrics export, traces and logs."""

    SECTION: ClassVar[str] = "monitoring"

    prometheus_enabled: bool = True
    """Serve GET /metrics (Prometheus text) on the app's own port."""
    prometheus_port: int | None = None
    """Also serve /metrics on this port."""
    otlp_endpoint: str | None = None
    """Send metrics (and traces, when tracing is otlp) to this OTLP/HTTP collector."""
    tracing: str = "none"
    """Trace exporter: none, console or otlp."""
    log_format: str = "auto"
    """json (JSON lines), text (key=value) or auto (text on a terminal, else json)."""
    access_log: bool = False
    """An ``http_request`` line per request (method, route template, status, duration,
    request id), at info."""
    log_level: str = "info"
    """debug, info, warning or error: the least severe event logged. At debug the server
    logs every lookup (``cache_hit``, ``cache_miss``); ``serve --log-level`` overrides it."""

    def check(self) -> None:
        if self.tracing not in ("none", "console", "otlp"):
            raise ConfigError(
                f"monitoring.tracing: expected none, console or otlp, got {self.tracing!r}"
            )
        if self.tracing == "otlp" and not self.otlp_endpoint:
            raise ConfigError("monitoring.tracing: otlp needs monitoring.otlp_endpoint")
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError(
                f"monitoring.log_format: expected auto, json or text, got {self.log_format!r}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"monitoring.log_level: expected {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )


SETTINGS = (AgentSettings, ServerSettings, ExportSettings)


class _ServerSettingsPlugin:
    @hookimpl
    def cache_register_settings(self) -> list[type]:
        return list(SETTINGS)


SERVER_SETTINGS = _ServerSettingsPlugin()
"""Registered by the app factory: the server's sections are claimed whenever it serves,
even when ``CACHING_AGENT_PLUGINS`` leaves the server's entry point out."""
