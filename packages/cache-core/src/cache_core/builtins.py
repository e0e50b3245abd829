"""cache-core's own plugins: the L1 memory tiers (LRU, W-TinyLFU), the three strategies,
the ``python`` loader.

Registered on every plugin manager (``plugins.DEFAULT_PLUGINS``), through the same hooks a
third-party plugin implements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core.markers import hookimpl
from cache_core.python_loader import PythonLoader
from cache_core.strategies import WriteAround, WriteBack, WriteThrough
from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import WTinyLfuTier


@hookimpl
def cache_register_tiers() -> Sequence[type[Any]]:
    return [MemoryTier, WTinyLfuTier]


@hookimpl
def cache_register_strategies() -> Sequence[type[Any]]:
    return [WriteThrough, WriteBack, WriteAround]


@hookimpl
def cache_register_loaders() -> Sequence[type[Any]]:
    return [PythonLoader]
