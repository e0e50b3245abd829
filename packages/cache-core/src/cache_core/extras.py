"""What to install for a plugin this project ships outside cache-core: the hint in the
error for a config (or a stored frame) that needs one that is not installed.

This is the one place core names shipped plugins, and it cannot be elsewhere: the hint is
needed exactly when the package that could declare it is absent, and the ``caching-agent``
meta-package is metadata only (and not installed at all when cache-core and cache-server
are installed alone). A third-party plugin gets no hint, only the list of installed ones.
``tests/cache_core/test_extras.py`` checks the table against what the packages register
and the extras the meta-package declares.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class Shipped:
    """One plugin a shipped package registers, and the meta-package extra that installs it."""

    family: str
    name: str
    """Its ``PLUGIN_NAME``."""
    extra: str
    codec_id: int | None = None
    """A codec's ``CODEC_ID``: stored frames name their codec by it, not by name."""


SHIPPED = (
    Shipped("tier", "redis", "redis"),
    Shipped("codec", "gzip", "compression", codec_id=1),
    Shipped("codec", "zstd", "zstd", codec_id=2),
    Shipped("codec", "lz4", "lz4", codec_id=3),
    Shipped("invalidator", "redis", "redis"),
    Shipped("invalidator", "local", "invalidation"),
    Shipped("links", "invalidation", "invalidation"),
    Shipped("loader", "http", "server"),
    Shipped("metrics", "opentelemetry", "server"),
    # Config sections (and fields of core's) a shipped plugin owns (cache_core.settings):
    # refused naming the extra while it is not installed (the server's: ignored).
    Shipped("settings", "redis", "redis"),
    *(
        Shipped("settings", f"invalidation.{name}", "invalidation")
        for name in ("event_triggers", "dependency_rules", "categories")
    ),
    Shipped("settings", "agent", "server"),
    Shipped("settings", "server", "server"),
    *(
        Shipped("settings", f"monitoring.{name}", "server")
        for name in (
            "prometheus_enabled",
            "prometheus_port",
            "otlp_endpoint",
            "tracing",
            "log_format",
            "log_level",
            "access_log",
        )
    ),
)

PLUGIN_EXTRAS: dict[tuple[str, str], str] = {(p.family, p.name): p.extra for p in SHIPPED}
"""(family, plugin name) -> extra."""

CODEC_ID_EXTRAS: dict[int, str] = {p.codec_id: p.extra for p in SHIPPED if p.codec_id is not None}
"""Codec id -> the extra that reads frames written with it."""


LINKS_EXTRA: str = next(p.extra for p in SHIPPED if p.family == "links")
"""The extra that installs tag, event and dependency invalidation: the refusal of a call
that needs it names it."""


SERVING_EXTRA = "server"
"""Its settings (where to listen, tokens, export, logs) shape only serving: without it they
are ignored with a warning, so a config.yaml serves the Python API too."""


def install_hint(extra: str) -> str:
    return f"install caching-agent[{extra}]"
