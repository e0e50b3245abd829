"""Registers tag, event and dependency invalidation, and the in-process index, with the
Caching Agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core import hookimpl
from cache_plugins_invalidation.links import InvalidationLinks
from cache_plugins_invalidation.local_index import LocalIndex
from cache_plugins_invalidation.settings import InvalidationSettings


@hookimpl
def cache_register_links() -> Sequence[type[Any]]:
    return [InvalidationLinks]


@hookimpl
def cache_register_invalidators() -> Sequence[type[Any]]:
    return [LocalIndex]


@hookimpl
def cache_register_settings() -> Sequence[type[Any]]:
    return [InvalidationSettings]
