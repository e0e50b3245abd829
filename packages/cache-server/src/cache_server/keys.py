"""Typed application state: every shared object of the app lives under one of these keys."""

from __future__ import annotations

from aiohttp import web

from cache_core import CachingAgent, Config
from cache_server.telemetry import OpenTelemetryRecorder

AGENT = web.AppKey("agent", CachingAgent)
CONFIG = web.AppKey("config", Config)
TELEMETRY: web.AppKey[OpenTelemetryRecorder | None] = web.AppKey("telemetry")
"""The agent's OpenTelemetry recorder (None when monitoring.recorders leaves it out)."""
