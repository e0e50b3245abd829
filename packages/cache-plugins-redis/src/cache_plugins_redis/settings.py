"""The ``redis`` section of config.yaml: where L2 lives and how the tier reaches it.

Owned by this plugin (cache_core.settings): core never reads it. ``REDIS_URL``,
``REDIS_HOST``, ``REDIS_PORT`` and ``REDIS_PASSWORD`` override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import define, field

from cache_core.errors import ConfigError


@define(frozen=True)
class RedisNode:
    host: str
    port: int = 6379


@define(frozen=True)
class SentinelSettings:
    master_name: str
    nodes: list[RedisNode]
    password: str | None = None


@define(frozen=True)
class RedisSettings:
    """Where L2 lives. ``url`` wins over host/port; ``embedded`` starts a private engine."""

    SECTION: ClassVar[str] = "redis"
    ENV: ClassVar[Mapping[str, str]] = {
        "REDIS_URL": "url",
        "REDIS_HOST": "host",
        "REDIS_PORT": "port",
        "REDIS_PASSWORD": "password",
    }

    url: str | None = None
    host: str = "localhost"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    max_connections: int = 50
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    health_check_interval: float = 15.0
    retry_attempts: int = 3
    key_prefix: str = "ca:"
    cluster_mode: bool = False
    nodes: list[RedisNode] = field(factory=list)
    sentinel: SentinelSettings | None = None
    data_dir: str = ".caching-agent/engine"
    """Where the embedded engine (``url: embedded``) keeps its data, so it survives restarts."""
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    client_tracking: str = "auto"
    """The engine's client-side caching (``CLIENT TRACKING ... BCAST``) on the coherence
    subscription, so that another client's change, a flush, an expiry or an eviction drops
    L1 copies too: ``auto`` where the engine takes it (notices alone where it refuses:
    servers before 6, an ACL without CLIENT), ``on`` (L1 is not served without it), ``off``.
    Never in Cluster, where tracking is per node (``on`` is refused there)."""

    @classmethod
    def env_applied(cls, section: dict[str, Any], variables: frozenset[str]) -> None:
        # Naming a host means that server, not the url (e.g. `embedded`) in the file.
        if variables & {"REDIS_HOST", "REDIS_PORT"} and "REDIS_URL" not in variables:
            section["url"] = None

    def check(self) -> None:
        if self.client_tracking not in ("auto", "on", "off"):
            raise ConfigError(
                f"redis.client_tracking: expected auto, on or off, got {self.client_tracking!r}"
            )
        if self.client_tracking == "on" and self.cluster_mode:
            raise ConfigError(
                "redis.client_tracking: on is not supported with cluster_mode "
                "(tracking is per node): use auto or off"
            )
        if self.max_connections <= 0:
            raise ConfigError(
                f"redis.max_connections: must be greater than 0, got {self.max_connections}"
            )
        if self.socket_timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigError(
                "redis.socket_timeout and redis.connect_timeout: must be greater than 0"
            )
