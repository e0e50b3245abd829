"""Registers cache-server's plugins with the Caching Agent: the ``http`` loader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core import hookimpl
from cache_server.http_loader import HttpLoader


@hookimpl
def cache_register_loaders() -> Sequence[type[Any]]:
    return [HttpLoader]
