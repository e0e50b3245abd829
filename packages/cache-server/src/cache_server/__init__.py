"""The Caching Agent HTTP server (aiohttp) and the ``caching-agent`` command."""

from cache_server.app import create_app

__all__ = ["create_app"]
