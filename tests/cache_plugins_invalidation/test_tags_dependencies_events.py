"""Tags, dependencies and events through the agent, with L1 alone: what tags reach, the
cascade to dependents (declared and registered, transitively, cycle-safe), events with
their placeholders and subscriptions. Moved from tests/cache_core/test_agent.py with the
code they test."""

from __future__ import annotations

from typing import Any

import pytest

from cache_core import (
    CachingAgent,
    InvalidKeyError,
    InvalidValueError,
    MissingContextError,
    UnknownEventError,
    UnknownNameError,
)
from cache_plugins_invalidation import EventTrigger


@pytest.fixture
async def agent(small_agent: CachingAgent) -> CachingAgent:
    return small_agent


# -- tags ----------------------------------------------------------------------------------


async def test_invalidate_by_tags_removes_keys_carrying_any_tag(agent: CachingAgent) -> None:
    await agent.set("a", 1, tags=["t1"])
    await agent.set("b", 1, tags=["t1", "t2"])
    await agent.set("c", 1, tags=["t2"])
    await agent.set("d", 1)
    assert await agent.invalidate_by_tags(["t1"]) == 2
    assert await agent.get_many(["a", "b", "c", "d"]) == {"a": None, "b": None, "c": 1, "d": 1}
    assert await agent.invalidate_by_tags(["t2", "t1"]) == 1
    assert await agent.invalidate_by_tags(["t1"]) == 0
    assert await agent.get("d") == 1


async def test_overwriting_a_key_replaces_its_tags(agent: CachingAgent) -> None:
    await agent.set("a", 1, tags=["old"])
    await agent.set("a", 2, tags=["new"])
    assert await agent.invalidate_by_tags(["old"]) == 0
    assert await agent.get("a") == 2
    assert await agent.invalidate_by_tags(["new"]) == 1


async def test_a_deleted_key_leaves_its_tags(agent: CachingAgent) -> None:
    await agent.set("a", 1, tags=["t"])
    await agent.delete("a")
    await agent.set("a", 2)
    assert await agent.invalidate_by_tags(["t"]) == 0
    assert await agent.get("a") == 2


# -- dependencies --------------------------------------------------------------------------


async def test_deleting_a_key_cascades_to_dependents_transitively(agent: CachingAgent) -> None:
    await agent.set("a", 1)
    await agent.set("b", 1, dependencies=["a"])
    await agent.set("c", 1, dependencies=["b"])
    await agent.set("d", 1, dependencies=["c", "x"])
    await agent.set("other", 1)
    assert await agent.delete("a") is True
    assert await agent.get_many(["a", "b", "c", "d", "other"]) == {
        "a": None,
        "b": None,
        "c": None,
        "d": None,
        "other": 1,
    }


async def test_dependency_cycles_terminate(agent: CachingAgent) -> None:
    await agent.set("x", 1)
    await agent.set("y", 1, dependencies=["x"])
    await agent.set("z", 1, dependencies=["y"])
    await agent.invalidation_manager.register_dependency("x", "z")  # x -> z -> y -> x
    assert await agent.delete("y") is True
    assert len(agent.l1) == 0


async def test_register_dependency_cascades(agent: CachingAgent) -> None:
    await agent.set("content:rec:123", ["r1"])
    await agent.set("user:123:profile", {"name": "A"})
    await agent.invalidation_manager.register_dependency("content:rec:123", "user:123:profile")
    assert await agent.invalidate_pattern("*user:123:profile*") == 2
    assert await agent.get("content:rec:123") is None


async def test_register_dependency_validates_keys(agent: CachingAgent) -> None:
    with pytest.raises(InvalidKeyError):
        await agent.invalidation_manager.register_dependency("", "a")
    with pytest.raises(InvalidKeyError):
        await agent.invalidation_manager.register_dependency("a", "b\n")


async def test_a_registered_dependency_survives_writing_the_dependent(
    agent: CachingAgent,
) -> None:
    await agent.invalidation_manager.register_dependency("content:rec:1", "user:1:profile")
    await agent.set("user:1:profile", {"name": "A"})
    await agent.set("content:rec:1", ["r1"])
    await agent.delete("user:1:profile")
    assert await agent.get("content:rec:1") is None


async def test_overwriting_a_key_invalidates_its_dependents(agent: CachingAgent) -> None:
    await agent.set("a", 1)
    await agent.set("b", 1, dependencies=["a"])
    await agent.set("c", 1, dependencies=["b"])
    await agent.set("a", 2)
    assert await agent.get_many(["a", "b", "c"]) == {"a": 2, "b": None, "c": None}


async def test_pattern_invalidation_cascades_to_dependents(agent: CachingAgent) -> None:
    await agent.set("user:1:profile", 1)
    await agent.set("rec:1", 1, dependencies=["user:1:profile"])
    await agent.set("rec:2", 1, dependencies=["user:2:profile"])
    assert await agent.invalidate_pattern("user:*:profile") == 2
    assert await agent.get_many(["rec:1", "rec:2"]) == {"rec:1": None, "rec:2": 1}


# -- events --------------------------------------------------------------------------------


async def test_invalidate_by_event_fills_placeholders(agent: CachingAgent) -> None:
    await agent.set_many({"user:1:profile": 1, "user:1:mastery": 1, "user:2:profile": 2})
    assert await agent.invalidate_by_event("user_profile_update", {"user_id": 1}) == 2
    assert await agent.get_many(["user:1:profile", "user:1:mastery", "user:2:profile"]) == {
        "user:1:profile": None,
        "user:1:mastery": None,
        "user:2:profile": 2,
    }
    assert await agent.invalidate_by_event(EventTrigger.USER_PROFILE_UPDATE, {"user_id": 2}) == 1


async def test_event_targets_can_be_tags(agent: CachingAgent) -> None:
    await agent.set("content:7", 1)
    await agent.set("listing:new", 1, tags=["content"])
    await agent.set("content:8", 1)
    assert await agent.invalidate_by_event("content_modification", {"content_id": 7}) == 2
    assert await agent.get_many(["content:7", "listing:new", "content:8"]) == {
        "content:7": None,
        "listing:new": None,
        "content:8": 1,
    }


async def test_context_values_are_data_not_globs(agent: CachingAgent) -> None:
    await agent.set_many({"user:1:profile": 1, "user:*:profile": 2})
    assert await agent.invalidate_by_event("user_profile_update", {"user_id": "*"}) == 1
    assert await agent.get("user:1:profile") == 1
    assert await agent.get("user:*:profile") is None


async def test_a_missing_context_field_matches_any_segment(agent: CachingAgent) -> None:
    await agent.set_many({"user:1:profile": 1, "user:2:mastery": 2, "content:7": 3})
    assert await agent.invalidate_by_event(EventTrigger.USER_PROFILE_UPDATE) == 2
    assert await agent.get("content:7") == 3


async def test_a_tag_target_needs_its_context_field(make_agent, base_config) -> None:
    agent = await make_agent(
        base_config(invalidation={"event_triggers": {"course_update": ["tag:course:{id}"]}})
    )
    await agent.set("k", 1, tags=["course:1"])
    with pytest.raises(MissingContextError, match="'id'"):
        await agent.invalidate(pattern="*", event="course_update")
    assert await agent.get("k") == 1
    assert await agent.invalidate_by_event("course_update", {"id": 1}) == 1


async def test_unknown_event_names_the_known_ones(agent: CachingAgent) -> None:
    await agent.set("k", 1)
    with pytest.raises(UnknownEventError) as info:
        await agent.invalidate_by_event("nope")
    assert str(info.value) == (
        "unknown event 'nope' (known: content_modification, mastery_update, user_profile_update)"
    )
    with pytest.raises(UnknownNameError):
        await agent.invalidate(pattern="k", event="nope")
    assert await agent.get("k") == 1


async def test_list_form_event_triggers_are_known_events(make_agent, base_config) -> None:
    agent = await make_agent(base_config(invalidation={"event_triggers": ["user_profile_update"]}))
    await agent.set("user:1:profile", 1)
    assert await agent.invalidate_by_event("user_profile_update") == 0
    await agent.invalidation_manager.register_event_subscription(
        EventTrigger.USER_PROFILE_UPDATE, "user:1:profile"
    )
    assert await agent.invalidate_by_event(EventTrigger.USER_PROFILE_UPDATE) == 1


async def test_runtime_event_subscription(agent: CachingAgent) -> None:
    await agent.set_many({"session:1": 1, "session:2": 2, "tagged": 3, "keep": 4})
    await agent.set("tagged", 3, tags=["sessions"])
    manager = agent.invalidation_manager
    await manager.register_event_subscription("logout", "session:*")
    await manager.register_event_subscription("logout", "tag:sessions")
    await manager.register_event_subscription("logout", "session:*")  # once is enough
    with pytest.raises(UnknownEventError) as info:
        await agent.invalidate_by_event("nope")
    assert "logout" in str(info.value)
    assert await agent.invalidate_by_event("logout") == 3
    assert await agent.get("keep") == 4


async def test_a_subscription_adds_to_a_configured_event(agent: CachingAgent) -> None:
    await agent.set_many({"user:1:profile": 1, "feed:1": 1})
    await agent.invalidation_manager.register_event_subscription(
        "user_profile_update", "feed:{user_id}"
    )
    assert await agent.invalidate_by_event("user_profile_update", {"user_id": 1}) == 2


async def test_invalid_subscriptions_are_refused(agent: CachingAgent) -> None:
    manager = agent.invalidation_manager
    with pytest.raises(InvalidValueError):
        await manager.register_event_subscription("", "k")
    with pytest.raises(InvalidKeyError):
        await manager.register_event_subscription("e", "tag:")
    with pytest.raises(InvalidKeyError):
        await manager.register_event_subscription("e", "bad\nkey")
    with pytest.raises(UnknownNameError):
        await agent.invalidate_by_event("e")  # nothing was subscribed


async def test_invalidate_combines_pattern_tags_and_event_counting_each_key_once(
    agent: CachingAgent,
) -> None:
    await agent.set("user:1:profile", 1, tags=["profile"])  # pattern, tag and event
    await agent.set("user:2:profile", 1)  # pattern only
    await agent.set("card:1", 1, tags=["profile"])  # tag only
    await agent.set("user:1:mastery", 1)  # event only
    await agent.set("keep", 1, tags=["other"])
    removed = await agent.invalidate(
        pattern="user:*:profile",
        tags=["profile"],
        event="user_profile_update",
        context={"user_id": 1},
    )
    assert removed == 4
    assert agent.stats.invalidated == 4
    assert len(agent.l1) == 1
    assert await agent.get("keep") == 1
    assert await agent.invalidate() == 0


# -- counted and checked -------------------------------------------------------------------


async def test_the_delete_kind_counts_the_deleted_key_and_its_dependents(
    agent: CachingAgent,
) -> None:
    await agent.set("src", 1)
    await agent.set("dep", 2, dependencies=["src"])
    assert await agent.delete("src") is True
    assert await agent.delete("never-cached") is False
    assert agent.get_stats()["invalidated_by_kind"]["delete"] == 2  # keys removed


@pytest.mark.parametrize("context", [[("user_id", 1)], {1: 2}, "user_id=1"])
async def test_a_context_that_is_not_a_mapping_of_names_is_refused(
    agent: CachingAgent, context: Any
) -> None:
    await agent.set("user:1:profile", 1)
    with pytest.raises(InvalidValueError, match="context"):
        await agent.invalidate_by_event("user_profile_update", context)
    assert await agent.get("user:1:profile") == 1
