"""Dependency rules between categories of keys: ``user_profile -> personalized_content``.

A category is a key template under ``invalidation.categories``, whose ``{placeholders}``
capture the id (``user_profile: "user:{user_id}:profile"``), or else a cache policy of the
same name (its ``match`` globs, no id: the whole category). When a key of a source
category leaves the cache (deleted, overwritten or invalidated), each dependent
category's template is filled with the ids the key gave, and the keys matching the
resulting glob are invalidated too: ``user:123:profile`` reaches
``user:123:learning_path*`` but never ``user:456:...``.

A placeholder captures one key segment (no ``:``); a template's other characters are a
Redis glob.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cache_core.errors import ConfigError, UnknownNameError
from cache_core.globs import byte_view, compile_glob, from_byte_view
from cache_core.invalidation import fill

if TYPE_CHECKING:
    from cache_core.config import Config

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Template:
    """A key template: a Redis glob whose ``{placeholders}`` each capture one key segment."""

    __slots__ = ("regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[str] = []
        pos = 0
        for found in _PLACEHOLDER.finditer(text):
            if found.start() > pos:
                parts.append(compile_glob(text[pos : found.start()]).pattern)
            parts.append(f"(?P<{found.group(1)}>[^:]+)")
            pos = found.end()
        if text[pos:]:
            parts.append(compile_glob(text[pos:]).pattern)
        self.regex = re.compile("".join(parts), re.DOTALL)

    def ids(self, key: str) -> dict[str, str] | None:
        """What the placeholders capture from ``key``, or None if it does not match."""
        found = self.regex.fullmatch(byte_view(key))
        if found is None:
            return None
        return {name: from_byte_view(value) for name, value in found.groupdict().items()}


class CategoryRules:
    """The configured rules, compiled once; :meth:`targets` maps keys to globs to drop."""

    def __init__(self, config: Config) -> None:
        templates: dict[str, list[str]] = {
            name: [template] for name, template in config.invalidation.categories.items()
        }
        for name, policy in config.cache_policies.items():
            templates.setdefault(name, list(policy.match))
        self._rules: list[tuple[Template, list[str]]] = []
        for source, dependents in config.invalidation.dependency_rules.items():
            path = f"invalidation.dependency_rules.{source}"
            for name in (source, *dependents):
                if not templates.get(name):
                    raise ConfigError(
                        f"{path}: unknown category {name!r}; define it under "
                        "invalidation.categories (a key template) or as a cache policy"
                    )
            targets = [t for name in dependents for t in templates[name]]
            for template in templates[source]:
                self._rules.append((Template(template), targets))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def targets(self, keys: set[str]) -> set[str]:
        """Globs of the keys that depend, by category, on ``keys``."""
        found: set[str] = set()
        for key in keys:
            for template_, templates in self._rules:
                ids = template_.ids(key)
                if ids is None:
                    continue
                for template in templates:
                    try:
                        found.add(fill(template, ids, "dependency rule"))
                    except UnknownNameError:
                        continue  # the dependent needs an id this key does not give
        return found
