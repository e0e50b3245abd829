"""The plugin as core assembles it: its Links is what the agent calls and its registrations
are ``agent.invalidation_manager``; two plugins registering tag, event and dependency
invalidation are refused at start, naming both."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

import cache_plugins_invalidation.hooks
from cache_core import CachingAgent, ConfigError, hookimpl
from cache_core.links import Links
from cache_plugins_invalidation.links import InvalidationLinks
from cache_plugins_invalidation.local_index import LocalIndex


async def test_the_plugin_is_what_core_calls(make_agent) -> None:
    agent: CachingAgent = await make_agent()
    links: Links | None = agent.links
    assert isinstance(links, InvalidationLinks)
    checked: Links = links  # mypy checks InvalidationLinks against the protocol here
    assert isinstance(checked, Links)
    assert isinstance(agent.index, LocalIndex)
    assert agent.invalidation_manager is links.registrations


class OtherLinks(InvalidationLinks):
    PLUGIN_NAME: ClassVar[str] = "other"


class OtherPlugin:
    @hookimpl
    def cache_register_links(self) -> list[type[Any]]:
        return [OtherLinks]


def test_two_links_plugins_are_refused_naming_both(base_config, no_plugins_env) -> None:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(
            base_config(),
            plugins=[cache_plugins_invalidation.hooks, OtherPlugin()],
            env=no_plugins_env,
        )
    assert str(info.value).startswith("invalidation: invalidation, other each register ")
