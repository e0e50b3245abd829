"""Caching as decorators of async functions (cashews' ``@cache``, aiocache's ``@cached``,
JetCache's ``@Cached``): ``@agent.cached(key="user:{user_id}:recs", ...)`` answers from the
cache and computes on a miss once for all concurrent callers (the agent's
``get_or_compute``); ``@agent.invalidates(key=..., tags=...)`` removes what a function
that changes data made stale, once it has returned.

Key, tag and pattern templates name the function's parameters (``{user_id}``, or an
attribute or item of one, ``{user.id}``, ``{ids[0]}``, as ``str.format`` reads them), and
are checked against its signature when it is decorated: a misspelt name fails at import,
not on the first call. Values go through JSON, so a cached ``tuple`` comes back a list.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import string
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from cache_core.agent import CachingAgent

P = ParamSpec("P")
R = TypeVar("R")


class Decorator(Protocol):
    """What ``agent.cached(...)`` returns: generic per function, so a type checker sees the
    decorated function's own parameters and result."""

    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Callable[P, Coroutine[Any, Any, R]]: ...


_ROOT = re.compile(r"[.\[]")


class ArgumentTemplate:
    """A template filled from a call's arguments (``user:{user_id}:recs``)."""

    __slots__ = ("_rendered", "static", "text")

    def __init__(self, text: str, signature: inspect.Signature, what: str) -> None:
        if not isinstance(text, str) or not text:
            raise TypeError(f"{what} template must be a non-empty string, got {text!r}")
        names = []
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TypeError(f"{what} template {text!r}: {exc}") from None
        for _, field, _, _ in fields:
            if field is None:
                continue
            root = _ROOT.split(field, maxsplit=1)[0]
            if not root or root.isdigit():
                raise TypeError(
                    f"{what} template {text!r}: name the parameter ({{user_id}}), not a position"
                )
            if root not in signature.parameters:
                raise TypeError(
                    f"{what} template {text!r} names {root!r}, which is not a parameter "
                    f"of the function (it takes {', '.join(signature.parameters) or 'none'})"
                )
            names.append(root)
        self.text = text
        self.static = not names
        """Filled from nothing: no binding needed."""
        self._rendered = text.format_map({}) if self.static else text  # {{ }} read once

    def render(self, arguments: dict[str, Any]) -> str:
        return self._rendered if self.static else self.text.format_map(arguments)


class _Templates:
    """A function's templates, bound to each call's arguments once for all of them."""

    def __init__(self, fn: Callable[..., Any], decorator: str) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@{decorator} decorates async functions; {fn!r} is not one")
        self.signature = inspect.signature(fn)

    def make(self, text: str, what: str) -> ArgumentTemplate:
        return ArgumentTemplate(text, self.signature, what)

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments


def cached(
    agent: CachingAgent,
    key: str,
    *,
    ttl: float | str | None = None,
    strategy: str | None = None,
    tags: Sequence[str] = (),
    dependencies: Sequence[str] = (),
    unless: Callable[[Any], bool] | None = None,
) -> Decorator:
    """See :meth:`cache_core.agent.CachingAgent.cached`."""
    tags, dependencies = _names(tags, "tags"), _names(dependencies, "dependencies")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        templates = _Templates(fn, "cached")
        key_template = templates.make(key, "key")
        tag_templates = [templates.make(tag, "tag") for tag in tags]
        dependency_templates = [templates.make(d, "dependency") for d in dependencies]
        static = key_template.static and all(
            t.static for t in (*tag_templates, *dependency_templates)
        )

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            arguments = {} if static else templates.arguments(args, kwargs)
            value: R = await agent.get_or_compute(
                key_template.render(arguments),
                lambda: fn(*args, **kwargs),
                ttl=ttl,
                strategy=strategy,
                tags=[t.render(arguments) for t in tag_templates],
                dependencies=[t.render(arguments) for t in dependency_templates],
                unless=unless,
            )
            return value

        return wrapper

    return decorate


def invalidates(
    agent: CachingAgent,
    key: str | Sequence[str] = (),
    *,
    tags: Sequence[str] = (),
    pattern: str | None = None,
) -> Decorator:
    """See :meth:`cache_core.agent.CachingAgent.invalidates`."""
    keys = [key] if isinstance(key, str) else _names(key, "key")
    tags = _names(tags, "tags")
    if not (keys or tags or pattern):
        raise TypeError("@invalidates needs a key, tags or a pattern to remove")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        templates = _Templates(fn, "invalidates")
        key_templates = [templates.make(k, "key") for k in keys]
        tag_templates = [templates.make(tag, "tag") for tag in tags]
        pattern_template = None if pattern is None else templates.make(pattern, "pattern")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            arguments = templates.arguments(args, kwargs)  # before the call may change them
            result = await fn(*args, **kwargs)
            # Only once the change is made: a failed one left the cached data current.
            removals: list[Awaitable[Any]] = [
                agent.delete(t.render(arguments)) for t in key_templates
            ]
            if tag_templates or pattern_template is not None:
                removals.append(
                    agent.invalidate(
                        tags=[t.render(arguments) for t in tag_templates],
                        pattern=None
                        if pattern_template is None
                        else pattern_template.render(arguments),
                    )
                )
            await asyncio.gather(*removals)
            return result

        return wrapper

    return decorate


def _names(given: Sequence[str], what: str) -> list[str]:
    if isinstance(given, str):  # tags="a" would be read as the tags a
        raise TypeError(f"{what} must be a list of templates, got the string {given!r}")
    return list(given)
