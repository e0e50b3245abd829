"""The exceptions the core raises; each carries a stable `code` the HTTP layer reports."""

from __future__ import annotations


class CacheError(Exception):
    """Base of every error the caching agent raises on purpose."""

    code = "cache_error"


class ConfigError(CacheError):
    """The configuration is wrong; the message is one line naming the field."""

    code = "invalid_config"


class PluginMissingError(ConfigError):
    """The configuration names a plugin that is not installed; the message names the extra."""

    code = "plugin_missing"


class NotInstalledError(CacheError):
    """A call needs a plugin package that is not installed (tags, dependencies or events
    without caching-agent[invalidation]); the message names the extra. Nothing changed."""

    code = "not_installed"


class PluginConflictError(CacheError):
    """Two plugins registered the same name in one family."""

    code = "plugin_conflict"


class InvalidKeyError(CacheError, ValueError):
    """A key is empty, too long or holds characters a key may not hold."""

    code = "invalid_key"


class InvalidValueError(CacheError, ValueError):
    """A value cannot be stored (not JSON-serialisable, or too large)."""

    code = "invalid_value"


class UnknownNameError(CacheError, ValueError):
    """A strategy, TTL preset, event or similar name is not one the agent knows."""

    code = "unknown_name"


class UnknownEventError(UnknownNameError):
    """An event is neither configured nor subscribed to."""

    code = "unknown_event"


class MissingContextError(UnknownNameError):
    """An event's target needs a context field the caller did not give."""

    code = "missing_context"


class CorruptEntryError(CacheError):
    """A stored entry is not in the project's frame format, or fails to decode."""

    code = "corrupt_entry"


class TierUnavailableError(CacheError):
    """A tier below L1 cannot be reached and L1 cannot answer."""

    code = "tier_unavailable"


class NoLoaderError(CacheError):
    """A key to warm is not cached and no loader serves it."""

    code = "no_loader"


class NotLoadedError(CacheError):
    """A loader serves the key and found no value for it."""

    code = "not_found"


class LoaderError(CacheError):
    """A loader failed (error or timeout) computing a missing value."""

    code = "loader_failed"


class LockTimeoutError(CacheError):
    """A lock was not acquired within the time given: another holder kept it."""

    code = "lock_timeout"


class LockLostError(CacheError):
    """A lock's lease ran out while held: another holder may have taken it since (its
    fencing token is larger than this holder's)."""

    code = "lock_lost"
