"""Cache policies: the TTL, strategy and compression a write takes from its key.

A write takes each of these from the first policy whose ``match`` globs match its key,
unless the call names it; ``ttl_presets`` names are accepted wherever a TTL is.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from attrs import define

from cache_core.errors import ConfigError, InvalidValueError, UnknownNameError
from cache_core.globs import byte_view, compile_glob
from cache_core.templates import Template

if TYPE_CHECKING:
    from cache_core.config import Config


@define(frozen=True, slots=True)
class Policy:
    name: str
    ttl: float | None
    strategy: str | None
    compress: bool
    sliding: bool = False


class PolicyTable:
    def __init__(self, config: Config) -> None:
        self._presets = dict(config.ttl_presets)
        self._max_ttl = config.limits.max_ttl
        self.policies: list[Policy] = []
        groups = []
        for index, (name, section) in enumerate(config.cache_policies.items()):
            ttl = None if section.ttl is None else self.ttl_seconds(section.ttl)
            if section.sliding and ttl is None:
                raise ConfigError(
                    f"cache_policies.{name}.sliding: a read extends the entry by the policy's "
                    "ttl, and it has none"
                )
            self.policies.append(
                Policy(name, ttl, section.strategy, section.compress, section.sliding)
            )
            if section.match:
                alternatives = "|".join(compile_glob(g).pattern for g in section.match)
                groups.append(f"(?P<p{index}>{alternatives})")
        # One regex for all policies: the first group that matches is the first policy.
        self._matcher = re.compile("|".join(groups), re.DOTALL) if groups else None
        self.globs = {name: list(section.match) for name, section in config.cache_policies.items()}
        self.sliding = any(policy.sliding for policy in self.policies)
        """Whether any policy slides (reads then go through cache_core.sliding)."""
        self._key_patterns = [Template(t) for t in config.key_patterns.values()]

    def pattern_of(self, key: str) -> str:
        """A label for ``key`` that names its kind, not its ids (for metrics and traces):
        the first ``key_patterns`` template it matches, else its first segment + ``:*``."""
        for template in self._key_patterns:
            if template.ids(key) is not None:
                return template.text
        head, sep, _ = key.partition(":")
        return f"{head}:*" if sep else "*"

    def match(self, key: str) -> Policy | None:
        if self._matcher is None:
            return None
        found = self._matcher.fullmatch(byte_view(key))
        if found is None:
            return None
        return self.policies[int(found.lastgroup[1:])] if found.lastgroup else None

    def ttl_seconds(self, ttl: float | str) -> float:
        """Seconds for ``ttl``: a positive number up to ``limits.max_ttl``, or a
        ``ttl_presets`` name."""
        if isinstance(ttl, str):
            try:
                return float(self._presets[ttl])
            except KeyError:
                known = ", ".join(sorted(self._presets)) or "none defined"
                raise UnknownNameError(f"unknown ttl preset {ttl!r} (known: {known})") from None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise InvalidValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        # A TTL the engine cannot take (1e308 overflows PX) must be refused here, at the
        # edge: past it, it fails a write as if L2 had, or poisons a write-back flush.
        if ttl > self._max_ttl or not math.isfinite(ttl):  # compared first: 10**400 is an int
            raise InvalidValueError(
                f"ttl is {ttl!r} seconds; the limit is limits.max_ttl ({self._max_ttl:g})"
            )
        return float(ttl)
