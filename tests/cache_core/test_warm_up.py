"""Warm-up reports each key it could not cache, whatever went wrong for that key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import define, field

import cache_core
from cache_core import NotFound

# -- warm-up ------------------------------------------------------------------------------


class BigLoader:
    """Loads ``user:*``; ``user:big`` is larger than limits.max_value_bytes."""

    PLUGIN_NAME: ClassVar[str] = "big_loader"

    @define(frozen=True)
    class Options:
        match: list[str] = field(factory=lambda: ["user:*"])

    def __init__(self, options: BigLoader.Options, context: object = None) -> None:
        self.match = list(options.match)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load(self, key: str, ids: Mapping[str, str] | None = None) -> Any:
        if key == "user:big":
            return "x" * 500
        if key == "user:ok":
            return 1
        raise NotFound(key)


class BigLoaderPlugin:
    @cache_core.hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        return [BigLoader]


async def test_a_loaded_value_too_large_is_that_keys_failure_not_the_whole_warm_up(
    make_agent, base_config
) -> None:
    """Warm-up reports each key it could not cache in failures; a loader's value over
    limits.max_value_bytes raises InvalidValueError out of warm_up_report instead (a 400
    invalid_value over HTTP for a valid request, after other keys were warmed)."""
    agent = await make_agent(
        base_config(loaders={"big_loader": {}}, limits={"max_value_bytes": 100}),
        plugins=(BigLoaderPlugin(),),
    )
    report = await agent.warm_up_report(["user:ok", "user:big"], "sequential")
    assert report.warmed == 1
    assert set(report.failures) == {"user:big"}
