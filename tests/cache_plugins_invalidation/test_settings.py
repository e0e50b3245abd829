"""The invalidation plugin's fields of ``invalidation`` (event_triggers, dependency_rules,
categories) are its own settings; core keeps methods and backend, and without the plugin
refuses a config that sets them, naming the extra."""

from __future__ import annotations

from typing import Any

import pytest

import cache_plugins_invalidation.hooks
from cache_core import CachingAgent, ConfigError, PluginMissingError, load_config
from cache_plugins_invalidation.settings import InvalidationSettings

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}
BASE: dict[str, Any] = {"compression": {"enable": False}}


def settings(section: Any) -> InvalidationSettings:
    return load_config({"invalidation": section}, env={}).section(InvalidationSettings)


def test_the_seed_section() -> None:
    found = settings(
        {
            "methods": ["ttl", "event_based", "dependency_tracking"],
            "event_triggers": ["user_profile_update", "content_modification", "mastery_update"],
            "dependency_rules": {"user_profile": ["personalized_content", "recommendations"]},
        }
    )
    assert found.event_triggers == {
        "user_profile_update": [],
        "content_modification": [],
        "mastery_update": [],
    }
    assert found.dependency_rules["user_profile"] == ["personalized_content", "recommendations"]


def test_event_triggers_mapping_is_kept() -> None:
    triggers = {"user_profile_update": ["user:{user_id}:*", "tag:profile"]}
    assert settings({"event_triggers": triggers}).event_triggers == triggers


@pytest.mark.parametrize(
    ("triggers", "message"),
    [
        ("x", "invalidation.event_triggers: expected a mapping, got 'x'"),
        ({"a": "x"}, "invalidation.event_triggers.a: expected a list, got 'x'"),
    ],
)
def test_bad_event_triggers(triggers: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings({"event_triggers": triggers})
    assert str(info.value) == message


def test_a_typo_in_the_shared_section_is_refused_at_assembly() -> None:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(
            {**BASE, "invalidation": {"event_trigers": []}},
            plugins=[cache_plugins_invalidation.hooks],
            env=NO_PLUGINS,
        )
    assert str(info.value) == "invalidation: unknown field event_trigers"


@pytest.mark.parametrize("name", ["event_triggers", "dependency_rules", "categories"])
def test_without_the_plugin_its_settings_are_refused_naming_the_extra(name: str) -> None:
    with pytest.raises(PluginMissingError) as info:
        CachingAgent.from_config({**BASE, "invalidation": {name: {}}}, env=NO_PLUGINS)
    assert str(info.value) == (
        f"invalidation.{name}: read by a plugin that is not installed; "
        "install caching-agent[invalidation]"
    )
