"""Caching Agent core: the orchestrator, its plugin hooks, config and the L1 tier."""

from cache_core.agent import CachingAgent
from cache_core.config import Config, load_config
from cache_core.errors import (
    CacheError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    InvalidValueError,
    LoaderError,
    LockLostError,
    LockTimeoutError,
    MissingContextError,
    NotInstalledError,
    PluginConflictError,
    PluginMissingError,
    TierUnavailableError,
    UnknownEventError,
    UnknownNameError,
)
from cache_core.loaders import NotFound
from cache_core.logs import get_logger, logger
from cache_core.markers import NAME, hookimpl, hookspec
from cache_core.strategies import CacheStrategy
from cache_core.tiers.memory import MemoryTier

__all__ = [
    "NAME",
    "CacheError",
    "CacheStrategy",
    "CachingAgent",
    "Config",
    "ConfigError",
    "CorruptEntryError",
    "InvalidKeyError",
    "InvalidValueError",
    "LoaderError",
    "LockLostError",
    "LockTimeoutError",
    "MemoryTier",
    "MissingContextError",
    "NotFound",
    "NotInstalledError",
    "PluginConflictError",
    "PluginMissingError",
    "TierUnavailableError",
    "UnknownEventError",
    "UnknownNameError",
    "get_logger",
    "hookimpl",
    "hookspec",
    "load_config",
    "logger",
]
