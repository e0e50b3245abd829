"""Typed application state: every shared object of the app lives under one of these keys."""

from __future__ import annotations

from aiohttp import web

from cache_core import CachingAgent, Config

AGENT = web.AppKey("agent", CachingAgent)
CONFIG = web.AppKey("config", Config)
