"""cache-core without cache-plugins-invalidation: TTL, deletes and patterns work; every call
that needs tags, dependencies or events is refused with one line naming the extra, before
anything changes; a config that asks for them fails at start, naming the field."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import cache_plugins_invalidation.hooks
from cache_core import CachingAgent, NotInstalledError, PluginMissingError, hookimpl

EXTRA = "caching-agent[invalidation]"

REFUSED: list[tuple[str, Callable[[CachingAgent], Awaitable[Any]]]] = [
    ("set-tags", lambda a: a.set("new", 1, tags=["t"])),
    ("set-dependencies", lambda a: a.set("new", 1, dependencies=["k"])),
    ("set-many-tags", lambda a: a.set_many({"new": 1, "k": 2}, tags=["t"])),
    ("get-or-compute-tags", lambda a: a.get_or_compute("new", lambda: 1, tags=["t"])),
    ("get-or-compute-deps", lambda a: a.get_or_compute("new", lambda: 1, dependencies=["k"])),
    ("invalidate-by-tags", lambda a: a.invalidate_by_tags(["t"])),
    ("invalidate-by-event", lambda a: a.invalidate_by_event("user_profile_update")),
    ("invalidate-tags", lambda a: a.invalidate(pattern="k", tags=["t"])),
    ("invalidate-event", lambda a: a.invalidate(pattern="k", event="user_profile_update")),
    ("register-dependency", lambda a: a.invalidation_manager.register_dependency("new", "k")),
    (
        "register-subscription",
        lambda a: a.invalidation_manager.register_event_subscription("e", "k"),
    ),
]


async def counters(agent: CachingAgent) -> dict[str, Any]:
    stats = await agent.fetch_stats()
    return {k: stats[k] for k in ("sets", "deletes", "l1_entries", "invalidated")}


@pytest.mark.parametrize("call", [c[1] for c in REFUSED], ids=[c[0] for c in REFUSED])
async def test_core_alone_refuses_what_needs_the_plugin_naming_the_extra(
    make_agent, call: Callable[[CachingAgent], Awaitable[Any]]
) -> None:
    agent: CachingAgent = await make_agent()
    await agent.set("k", "old")
    before = await counters(agent)
    with pytest.raises(NotInstalledError) as info:
        await call(agent)
    message = str(info.value)
    assert EXTRA in message
    assert "\n" not in message
    assert info.value.code == "not_installed"
    assert await counters(agent) == before
    assert agent.l1.get("k") == b'"old"'
    assert "new" not in agent.l1


async def test_core_alone_deletes_and_invalidates_by_pattern(make_agent, clock) -> None:
    agent: CachingAgent = await make_agent()
    assert agent.index is None  # nothing to index: no tags, dependencies or subscriptions
    await agent.set_many({"user:1:profile": 1, "user:2:profile": 2, "user:1:settings": 3})
    assert await agent.delete("user:1:settings") is True
    assert await agent.invalidate_pattern("user:*:profile") == 2
    await agent.set("k", 1, ttl=5)
    assert await agent.invalidate(pattern="k") == 1  # a literal key, no tags or event
    await agent.set("short", 1, ttl=5)
    clock.advance(6)
    assert await agent.get("short") is None
    assert agent.describe()["invalidation"] == "none (TTL and patterns)"
    assert agent.get_stats()["invalidated_by_kind"]["pattern"] == 3


@pytest.mark.parametrize("backend", ["auto", "local"])
async def test_core_alone_needs_no_index_for_auto_or_local(
    make_agent, base_config, backend: str
) -> None:
    agent: CachingAgent = await make_agent(base_config(invalidation={"backend": backend}))
    assert agent.index is None
    await agent.set("k", 1)
    assert await agent.delete("k") is True


@pytest.mark.parametrize(
    ("invalidation", "field"),
    [
        ({"event_triggers": {"user_profile_update": ["user:{user_id}:*"]}}, "event_triggers"),
        ({"event_triggers": ["user_profile_update"]}, "event_triggers"),
        ({"dependency_rules": {"a": ["b"]}}, "dependency_rules"),
        ({"categories": {"a": "a:{id}"}}, "categories"),
    ],
)
def test_a_config_asking_for_invalidation_fails_at_start_naming_field_and_extra(
    base_config, no_plugins_env, invalidation: dict[str, Any], field: str
) -> None:
    with pytest.raises(PluginMissingError) as info:
        CachingAgent.from_config(base_config(invalidation=invalidation), env=no_plugins_env)
    message = str(info.value)
    assert message.startswith(f"invalidation.{field}: ")
    assert EXTRA in message
    assert "\n" not in message


def test_a_backend_that_indexes_fails_at_start_without_the_plugin(
    base_config, no_plugins_env
) -> None:
    class RedisLikeIndex:
        PLUGIN_NAME = "shared_somewhere"

    class IndexOnly:
        @hookimpl
        def cache_register_invalidators(self) -> list[type[Any]]:
            return [RedisLikeIndex]

    config = base_config(invalidation={"backend": "shared_somewhere"})
    with pytest.raises(PluginMissingError) as info:
        CachingAgent.from_config(config, plugins=[IndexOnly()], env=no_plugins_env)
    assert str(info.value).startswith("invalidation.backend: 'shared_somewhere' indexes ")
    assert EXTRA in str(info.value)


async def test_with_the_plugin_the_same_calls_work(make_agent, base_config) -> None:
    config = base_config(invalidation={"event_triggers": {"user_profile_update": ["u:*"]}})
    agent: CachingAgent = await make_agent(config, plugins=(cache_plugins_invalidation.hooks,))
    await agent.set("k", 1, tags=["t"])
    await agent.set("dep", 1, dependencies=["k"])
    await agent.set("u:1", 1)
    assert await agent.invalidate_by_tags(["t"]) == 2  # k, and dep through its dependency
    assert await agent.invalidate_by_event("user_profile_update") == 1
    assert agent.describe()["invalidation"] == "local"
