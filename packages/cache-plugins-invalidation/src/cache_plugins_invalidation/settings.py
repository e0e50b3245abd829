"""This plugin's fields of ``invalidation`` (cache_core.settings): the events, dependency
rules and categories it reads. Core keeps ``methods`` and ``backend`` (which index)."""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import define, field


@define(frozen=True)
class InvalidationSettings:
    SECTION: ClassVar[str] = "invalidation"

    event_triggers: dict[str, list[str]] = field(factory=dict)
    """Event -> targets (key globs, keys, ``tag:NAME``); the seed's list of names is the
    same with no configured targets."""
    dependency_rules: dict[str, list[str]] = field(factory=dict)
    categories: dict[str, str] = field(factory=dict)
    """Key templates of the categories that dependency_rules name (``{id}`` placeholders)."""

    @classmethod
    def prepare(cls, section: dict[str, Any]) -> None:
        # The seed lists event names; the mapping form adds what each event invalidates.
        if isinstance(section.get("event_triggers"), list):
            names = section["event_triggers"]
            section["event_triggers"] = {name: [] for name in names}
