"""Events: configured triggers and runtime subscriptions, expanded into what they reach.

An event's targets are key globs, literal keys or ``tag:NAME``; each may hold
``{placeholders}`` filled from the event's context (``user:{user_id}:*``). They come from
``invalidation.event_triggers`` and from ``register_event_subscription`` (kept in the
index, so every instance sharing it sees them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cache_core.errors import InvalidValueError, MissingContextError, UnknownEventError
from cache_core.links import EventTargets
from cache_core.templates import PLACEHOLDER

if TYPE_CHECKING:
    from cache_core.invalidation import InvalidationIndex
    from cache_plugins_invalidation.registrations import InvalidationManager

TAG_PREFIX = "tag:"


class EventTrigger(StrEnum):
    """The seed's events; any name configured under ``invalidation.event_triggers`` works."""

    USER_PROFILE_UPDATE = "user_profile_update"
    CONTENT_MODIFICATION = "content_modification"
    MASTERY_UPDATE = "mastery_update"


class Events:
    """Expands an event into its targets, validated before anything is removed."""

    def __init__(
        self,
        triggers: Mapping[str, Sequence[str]],
        index: InvalidationIndex,
        registrations: InvalidationManager,
        *,
        check_pattern: Callable[[object], str],
        check_names: Callable[[Sequence[str], str], None],
    ) -> None:
        self.triggers = triggers
        self.index = index
        self.registrations = registrations
        self.check_pattern = check_pattern
        self.check_names = check_names

    async def targets(
        self, event: str, context: Mapping[str, Any] | None, scope: str = ""
    ) -> EventTargets:
        """The event's targets with placeholders filled, ``scope`` (a caller's namespace)
        put before each key glob and tag; raises before anything is removed."""
        configured = self.triggers
        if self.registrations.pending:
            await self.registrations.land()
        subscribed = await self.index.subscriptions(event)
        if event not in configured and not subscribed:
            known = sorted(set(configured) | set(await self.index.events()))
            raise UnknownEventError(
                f"unknown event {event!r} (known: {', '.join(known) or 'none'})"
            )
        templates = [*configured.get(event, []), *subscribed]
        context = checked_context(context, event, templates)
        tags: list[str] = []
        patterns: list[str] = []
        for target in templates:
            filled = fill(target, context, event)
            if filled.startswith(TAG_PREFIX):
                tag = scope + filled.removeprefix(TAG_PREFIX)
                self.check_names([tag], "tag")
                tags.append(tag)
            else:
                patterns.append(self.check_pattern(scope + filled))
        return EventTargets(tags=tags, patterns=patterns)


def checked_context(context: object, event: str, templates: Sequence[str]) -> Mapping[str, Any]:
    """``context`` as a mapping of field names every one of which some target uses: a
    field none uses (a typo) would otherwise leave its placeholder to match everything."""
    if context is None:
        return {}
    if not isinstance(context, Mapping) or not all(isinstance(k, str) for k in context):
        raise InvalidValueError("context must be a mapping of field names to values")
    fields = {name for template in templates for name in PLACEHOLDER.findall(template)}
    unused = sorted(set(context) - fields)
    if unused:
        raise InvalidValueError(
            f"context.{unused[0]}: no target of event {event!r} uses it "
            f"(its fields: {', '.join(sorted(fields)) or 'none'})"
        )
    return context


def fill(target: str, context: Mapping[str, Any], event: str) -> str:
    """``target`` with its placeholders replaced from ``context`` (glob characters escaped).

    An event without a field is a statement that something of that kind changed: in a
    key glob a missing placeholder matches any segment (``user:{user_id}:*`` is
    ``user:*:*``). A tag is matched by name only, so a tag target cannot widen that way:
    its fields are required."""
    is_tag = target.startswith(TAG_PREFIX)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in context:
            if is_tag:
                raise MissingContextError(
                    f"event {event!r} needs context field {name!r} for its target {target!r} "
                    "(a tag is matched by name, never by pattern)"
                )
            return "*"
        given = context[name]
        if isinstance(given, bool) or not isinstance(given, str | int | float):
            # Python's spelling of null or true is no key segment anyone wrote.
            raise InvalidValueError(
                f"context.{name}: expected a string or a number, got {type(given).__name__}"
            )
        text = str(given)
        # A context value is data, never a pattern: escape what a glob would read.
        return re.sub(r"([*?\[\]\\])", r"\\\1", text)

    return PLACEHOLDER.sub(value, target)


def widest(target: str) -> str:
    """``target`` as an event without context fills it: each placeholder a ``*``."""
    return PLACEHOLDER.sub("*", target)
