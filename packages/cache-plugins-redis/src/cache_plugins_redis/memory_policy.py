"""How L2 uses memory: the embedded engine's limit and eviction policy, the check of a
server of your own, and what a full engine's refusal of a write means.

The embedded engine runs with ``--maxmemory`` (``cache_tiers.l2.max_memory_mb``) and a
``volatile-*`` policy, which evicts only keys that carry a TTL. Every cache entry carries
one (a write without a TTL gets ``limits.max_ttl`` while a policy evicts), and the
invalidation indexes carry none while the engine evicts (cache_plugins_redis.index), so
the engine may evict an entry but never the tag, dependency or subscription index that
reaches it. Under ``allkeys-*`` it could drop a tag's set and keep the tag's entries,
which invalidating the tag would then no longer find: stale reads, silently. Load locks
are leases (they carry a TTL), so they can be evicted: that costs a duplicate load, never
a wrong answer.

Once nothing evictable is left (every entry gone, the rest indexes and other clients'
keys without a TTL), the engine refuses writes with OOM: that is :class:`L2FullError`, a
503 saying the engine is full, which leaves the circuit breaker alone (the engine still
answers: reads and deletes work). A server of your own is never reconfigured (no CONFIG
SET): its ``maxmemory`` and ``maxmemory-policy`` are read at start and, when they cannot
serve a cache, said once in the log and on /health.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from redis.exceptions import OutOfMemoryError

from cache_core.errors import ConfigError, TierUnavailableError

log = logging.getLogger("cache_plugins_redis.memory")

T = TypeVar("T")

MIB = 1024 * 1024

POLICIES = {
    "lru": "volatile-lru",
    "lfu": "volatile-lfu",
    "random": "volatile-random",
    "ttl": "volatile-ttl",
    "noeviction": "noeviction",
}
"""``cache_tiers.l2.eviction_policy`` -> the embedded engine's ``maxmemory-policy``."""
DEFAULT_MAX_MEMORY_MB = 512.0
"""The embedded engine's default limit: five times L1's default (100 MB), small beside the
memory of a machine that runs the service and its engine."""
MIN_MAX_MEMORY_MB = 4.0
"""The engine takes about 1 MiB before it holds a key: below this a few writes fill it."""
MAX_MAX_MEMORY_MB = 4.0 * 1024 * 1024
"""4 TiB: past any machine this runs on (a larger figure would be no limit at all, and
past 2**64 bytes not even a number the engine or /health's JSON can carry)."""
MAXMEMORY_SAMPLES = 10
"""Keys the engine samples for each eviction (its default is 5): 10 comes close to true
LRU/LFU order for a little more CPU per eviction."""
FIX = "on the server: maxmemory <bytes> and maxmemory-policy volatile-lru"


class L2FullError(TierUnavailableError):
    """L2 refused a write: at its memory limit with nothing it may evict."""


class MemoryPolicy:
    """``eviction_policy`` and ``max_memory_mb`` checked, and what the tier learns of the
    server's memory settings at start."""

    def __init__(self, eviction_policy: str, max_memory_mb: float) -> None:
        if eviction_policy not in POLICIES:
            hint = ""
            if isinstance(eviction_policy, str) and eviction_policy.startswith("allkeys-"):
                hint = " (allkeys policies could evict the invalidation indexes)"
            raise ConfigError(
                "cache_tiers.l2.eviction_policy: expected one of "
                f"{', '.join(POLICIES)}, got {eviction_policy!r}{hint}"
            )
        if not (
            math.isfinite(max_memory_mb) and MIN_MAX_MEMORY_MB <= max_memory_mb <= MAX_MAX_MEMORY_MB
        ):
            raise ConfigError(
                "cache_tiers.l2.max_memory_mb: expected a number of MiB from "
                f"{MIN_MAX_MEMORY_MB:g} to {MAX_MAX_MEMORY_MB:g}, got {max_memory_mb!r}"
            )
        self.name = eviction_policy
        self.engine_policy = POLICIES[eviction_policy]
        self.max_bytes = int(max_memory_mb * MIB)
        self.notes: list[str] = []
        """What an operator should change on the server (shown on /health)."""
        self.volatile_eviction = True
        """Whether the server may evict keys that carry a TTL, so keys that must stay
        (the invalidation indexes) carry none. True until known otherwise."""
        self.embedded = False
        self._described: dict[str, Any] = {"checked": False}

    @property
    def evicts(self) -> bool:
        return self.name != "noeviction"

    def default_ttl(self, ttl: float | None, max_ttl: float) -> float | None:
        """The tier's default TTL: ``ttl``, or ``max_ttl`` for "no expiry" while a policy
        evicts, since a volatile policy never evicts an entry without a TTL."""
        return max_ttl if ttl is None and self.evicts else ttl

    def engine_args(self) -> list[str]:
        """The embedded engine's memory settings, as its command line takes them."""
        return [
            "--maxmemory", str(self.max_bytes),
            "--maxmemory-policy", self.engine_policy,
            "--maxmemory-samples", str(MAXMEMORY_SAMPLES),
        ]  # fmt: skip

    def health_notes(self) -> list[str]:
        """What the operator should change on the server (RemoteTier's optional notes)."""
        return list(self.notes)

    async def started(
        self,
        embedded: bool,
        client: Any,
        step: Callable[[Awaitable[Any]], Awaitable[Any]],
        where: str,
    ) -> None:
        """The tier is connected: to our own engine, which runs with :meth:`engine_args`
        (nothing to check), or to a server of its own (:meth:`check_server`)."""
        if not embedded:
            await self.check_server(client, step, where)
            return
        self.embedded = True
        self.volatile_eviction = self.evicts
        self._described = {
            "checked": True,
            "maxmemory": self.max_bytes,
            "maxmemory_policy": self.engine_policy,
        }

    async def check_server(
        self, client: Any, step: Callable[[Awaitable[Any]], Awaitable[Any]], where: str
    ) -> None:
        """Read the server's ``maxmemory`` and ``maxmemory-policy`` (each round trip bounded
        by ``step``); log and note once what cannot serve a cache. Never fails: managed
        servers often refuse or rename CONFIG. Never CONFIG SET: the server is not ours."""
        try:
            found = {
                **await step(client.config_get("maxmemory")),
                **await step(client.config_get("maxmemory-policy")),
            }
            maxmemory = int(found["maxmemory"])
            policy = str(found["maxmemory-policy"])
        except Exception as exc:
            # Unknown policy: keep the indexes safe from a volatile one.
            log.info(
                "l2_memory_unchecked",
                extra={"backend": where, "error": f"{type(exc).__name__}: {exc}"},
            )
            self._described = {"checked": False, "error": str(exc)}
            return
        self.volatile_eviction = maxmemory > 0 and policy.startswith("volatile-")
        self._described = {"checked": True, "maxmemory": maxmemory, "maxmemory_policy": policy}
        problems = []
        if maxmemory == 0:
            problems.append("maxmemory 0 (no limit: it grows until the host runs out)")
        if policy == "noeviction" and self.name != "noeviction":
            problems.append("maxmemory-policy noeviction (once full, every write fails)")
        if not problems:
            return
        note = f"L2 server {where} cannot serve a cache: {' and '.join(problems)}; set {FIX}"
        self.notes = [note]
        log.warning(
            "l2_memory_unsuited",
            extra={"backend": where, "maxmemory": maxmemory, "maxmemory_policy": policy,
                   "fix": FIX, "detail": note},
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return dict(self._described)

    @contextlib.contextmanager
    def refusals(self) -> Iterator[None]:
        """An OOM refusal raised inside, as :class:`L2FullError` saying what to change."""
        try:
            yield
        except OutOfMemoryError as exc:
            raise L2FullError(self._full(exc)) from exc

    def _full(self, exc: OutOfMemoryError) -> str:
        if not self.embedded:
            return (
                f"L2 is full: the server refused a write ({exc}); raise its maxmemory or "
                "let its maxmemory-policy evict (volatile-lru)"
            )
        if not self.evicts:
            what = "cache_tiers.l2.eviction_policy is noeviction"
        else:
            what = (
                f"nothing it may evict is left ({self.engine_policy} evicts only entries; "
                "the invalidation indexes and keys without a TTL stay)"
            )
        return (
            f"L2 is full: the embedded engine is at cache_tiers.l2.max_memory_mb "
            f"({self.max_bytes / MIB:g} MiB) and {what}; raise max_memory_mb or invalidate keys"
        )


__all__ = ["POLICIES", "L2FullError", "MemoryPolicy"]
