"""Registers cache-server's plugins with the Caching Agent: the ``http`` loader, the
``opentelemetry`` metrics recorder and the config sections the server owns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core import hookimpl
from cache_server.http_loader import HttpLoader
from cache_server.settings import SETTINGS
from cache_server.telemetry import OpenTelemetryRecorder


@hookimpl
def cache_register_loaders() -> Sequence[type[Any]]:
    return [HttpLoader]


@hookimpl
def cache_register_settings() -> Sequence[type[Any]]:
    return list(SETTINGS)


@hookimpl
def cache_register_metrics() -> Sequence[type[Any]]:
    return [OpenTelemetryRecorder]
