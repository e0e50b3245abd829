"""The ``python`` loader: values computed by a function of yours, named ``module:function``.

::

    loaders:
      python:
        function: "myapp.cache_sources:load_profile"
        match: ["user:{user_id}:profile"]

The function is called as ``function(key, ids)`` (``ids``: what the matching template's
placeholders captured) and returns a JSON-able value, or None / raises
:class:`~cache_core.loaders.NotFound` when there is none. A coroutine function is awaited;
a plain function runs in a worker thread, so a blocking one does not stall the server.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Mapping
from functools import reduce
from typing import Any, ClassVar

from attrs import define, field


def import_function(spec: str) -> Callable[..., Any]:
    """``module:function`` (the function may be a dotted attribute path) as a callable."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"function: expected 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
        target = reduce(getattr, attr.split("."), module)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"function: cannot import {spec!r}: {exc}") from None
    if not callable(target):
        raise ValueError(f"function: {spec!r} is not callable")
    return target


class PythonLoader:
    PLUGIN_NAME: ClassVar[str] = "python"

    @define(frozen=True)
    class Options:
        function: str
        match: list[str] = field(factory=list)

    def __init__(self, options: PythonLoader.Options, context: object = None) -> None:
        self.match = list(options.match)
        self._function = import_function(options.function)
        self._is_async = inspect.iscoroutinefunction(self._function)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load(self, key: str, ids: Mapping[str, str]) -> Any:
        if self._is_async:
            return await self._function(key, dict(ids))
        result = await asyncio.to_thread(self._function, key, dict(ids))
        if inspect.isawaitable(result):
            result = await result
        return result
