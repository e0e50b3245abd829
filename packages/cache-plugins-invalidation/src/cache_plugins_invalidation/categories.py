"""Dependency rules between categories of keys: ``user_profile -> personalized_content``.

A category is a key template under ``invalidation.categories``, whose ``{placeholders}``
capture the id (``user_profile: "user:{user_id}:profile"``), or else a cache policy of the
same name (its ``match`` globs, no id: the whole category). When a key of a source
category leaves the cache (deleted, overwritten or invalidated), the keys of each
dependent category with the same ids are invalidated too: ``user:123:profile`` reaches
``user:123:learning_path*`` but never ``user:456:...``. It works by tags: a key written
into a dependent category carries a tag naming its category and ids.

A placeholder captures one key segment (no ``:``); a template's other characters are a
Redis glob.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cache_core.errors import ConfigError
from cache_core.templates import Template
from cache_plugins_invalidation.settings import InvalidationSettings

if TYPE_CHECKING:
    from cache_core.config import Config

CATEGORY_TAG = "\x1ecat:"
"""Starts the tags this plugin puts on keys of dependent categories; no caller's tag can hold
the control character, so they never collide."""
SOURCE_TAG = "\x1esrc:"
"""Starts the tag a key of a source category carries beside each of its tags (``T``:
``SOURCE_TAG + T``): what invalidating ``T`` must walk to find the categories it reaches,
where the index invalidates ``T`` itself without a walk (tag versions)."""


def category_tag(category: str, ids: dict[str, str]) -> str:
    """The tag that keys of ``category`` with these ``ids`` carry."""
    return CATEGORY_TAG + category + "".join(f"\x1f{k}={ids[k]}" for k in sorted(ids))


class CategoryRules:
    """The configured rules, compiled once.

    A key written into a dependent category is tagged with its category and ids
    (:meth:`tags_for`); a key of a source category leaving the cache invalidates those tags
    (:meth:`targets`): an index lookup, never a scan of the keyspace.
    """

    def __init__(self, config: Config) -> None:
        settings = config.section(InvalidationSettings)
        texts: dict[str, list[str]] = {
            name: [template] for name, template in settings.categories.items()
        }
        for name, policy in config.cache_policies.items():
            texts.setdefault(name, list(policy.match))
        self._sources: list[tuple[Template, list[str]]] = []
        dependent_names: set[str] = set()
        for source, dependents in settings.dependency_rules.items():
            path = f"invalidation.dependency_rules.{source}"
            for name in (source, *dependents):
                if not texts.get(name):
                    raise ConfigError(
                        f"{path}: unknown category {name!r}; define it under "
                        "invalidation.categories (a key template) or as a cache policy"
                    )
            dependent_names.update(dependents)
            for text in texts[source]:
                self._sources.append((Template(text), list(dependents)))
        self._templates = {name: [Template(t) for t in texts[name]] for name in dependent_names}

    def __bool__(self) -> bool:
        return bool(self._sources)

    def tags_for(self, key: str) -> list[str]:
        """The category tags a written ``key`` carries (one per dependent category it is in)."""
        tags = []
        for name, templates in self._templates.items():
            for template in templates:
                ids = template.ids(key)
                if ids is not None:
                    tags.append(category_tag(name, ids))
                    break
        return tags

    def targets(self, keys: set[str]) -> set[str]:
        """Category tags of the keys that depend on ``keys``."""
        found: set[str] = set()
        for key in keys:
            for source, dependents in self._sources:
                ids = source.ids(key)
                if ids is None:
                    continue
                for name in dependents:
                    for template in self._templates[name]:
                        needed = template.placeholders
                        if needed <= ids.keys():  # else the key does not give that id
                            found.add(category_tag(name, {k: ids[k] for k in needed}))
        return found
