"""Runtime registrations called as the description writes them: without ``await``."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

import cache_plugins_invalidation.hooks
from cache_core import (
    CachingAgent,
    InvalidKeyError,
    InvalidValueError,
    TierUnavailableError,
)
from cache_plugins_invalidation import EventTrigger, InvalidationManager
from cache_plugins_invalidation.local_index import LocalIndex

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def no_never_awaited_warning() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in seen if "never awaited" in str(w.message)] == []


async def test_a_dependency_registered_without_await_cascades(make_agent) -> None:
    agent = await make_agent()
    await agent.set_many({"content:rec:123": 1, "user:123:profile": 2})
    agent.invalidation_manager.register_dependency("content:rec:123", "user:123:profile")
    assert await agent.invalidate_pattern("*user:123:profile*") == 2
    assert await agent.get("content:rec:123") is None
    no_never_awaited_warning()


async def test_a_subscription_registered_without_await_is_invalidated(
    make_agent, base_config
) -> None:
    triggers = {"user_profile_update": ["user:{user_id}:*"]}
    agent = await make_agent(base_config(invalidation={"event_triggers": triggers}))
    await agent.set_many({"user:123:profile": 1, "other": 2})
    agent.invalidation_manager.register_event_subscription(
        EventTrigger.USER_PROFILE_UPDATE, "other"
    )
    # no context: user:*:* and the subscription
    assert await agent.invalidate_by_event(EventTrigger.USER_PROFILE_UPDATE) == 2
    assert await agent.get_many(["user:123:profile", "other"]) == dict.fromkeys(
        ["user:123:profile", "other"]
    )
    no_never_awaited_warning()


async def test_a_registration_counts_for_the_next_write_at_once(make_agent) -> None:
    agent = await make_agent()
    await agent.set("dep", 1)
    agent.invalidation_manager.register_dependency("dep", "src")
    await agent.set("src", 2)  # writing the source invalidates what depends on it
    assert await agent.get("dep") is None


async def test_a_registration_is_awaitable_and_reports_when_done(make_agent) -> None:
    agent = await make_agent()
    registration = agent.invalidation_manager.register_dependency("a", "b")
    await registration
    assert registration.done
    assert agent.invalidation_manager.pending == 0


async def test_bad_input_raises_at_the_call_and_queues_nothing(make_agent) -> None:
    agent = await make_agent()
    manager = agent.invalidation_manager
    with pytest.raises(InvalidKeyError):
        manager.register_dependency("", "b")
    with pytest.raises(InvalidKeyError):
        manager.register_event_subscription("user_profile_update", "tag:")
    assert manager.pending == 0


async def test_registrations_made_before_start_apply_at_start(base_config, no_plugins_env) -> None:
    agent = CachingAgent.from_config(
        base_config(), plugins=[cache_plugins_invalidation.hooks], env=no_plugins_env
    )
    agent.invalidation_manager.register_dependency("dep", "src")
    async with agent:
        await agent.set("dep", 1)
        await agent.delete("src")
        assert await agent.get("dep") is None


class FlakyIndex(LocalIndex):
    """A local index that refuses the first ``refusals`` registrations (L2 away)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def add_dependency(self, key: str, dependency: str) -> None:
        if self.refusals:
            self.refusals -= 1
            raise TierUnavailableError("L2 away")
        await super().add_dependency(key, dependency)


def manager_on(index: LocalIndex) -> InvalidationManager:
    def check_names(names: object, what: str) -> None:
        return None

    return InvalidationManager(index, check_key=str, check_pattern=str, check_names=check_names)


async def test_a_registration_l2_cannot_take_now_stays_queued_in_order() -> None:
    index = FlakyIndex(refusals=1)
    manager = manager_on(index)
    await manager.start()
    first = manager.register_dependency("a", "b")
    second = manager.register_dependency("c", "d")
    with pytest.raises(TierUnavailableError):
        await first
    assert manager.pending == 2  # nothing lost, nothing reordered
    await second
    assert first.done and second.done
    assert await index.dependents(["b"]) == {"a"}
    assert await index.dependents(["d"]) == {"c"}


async def test_the_background_retries_a_refused_registration(monkeypatch: Any) -> None:
    monkeypatch.setattr("cache_plugins_invalidation.registrations.RETRY_AFTER", 0.01)
    index = FlakyIndex(refusals=3)
    manager = manager_on(index)
    await manager.start()
    registration = manager.register_dependency("a", "b")
    for _ in range(200):
        if registration.done:
            break
        await asyncio.sleep(0.01)
    assert registration.done
    assert await index.dependents(["b"]) == {"a"}
    await manager.close(1.0)


class RefusingIndex(LocalIndex):
    """A local index that refuses every subscription (what it can never store)."""

    async def subscribe(self, event: str, target: str) -> None:
        raise InvalidValueError("refused")


async def test_a_registration_the_index_refuses_is_dropped_and_its_awaiter_told() -> None:
    index = RefusingIndex()
    manager = manager_on(index)
    await manager.start()
    refused = manager.register_event_subscription("e", "x")
    behind = manager.register_dependency("a", "b")
    await behind  # not blocked by the refused one ahead of it
    assert manager.pending == 0
    with pytest.raises(InvalidValueError, match="refused"):
        await refused
    assert await index.dependents(["b"]) == {"a"}
    await manager.close(1.0)


async def test_a_registration_after_close_is_refused_at_the_call(make_agent) -> None:
    agent = await make_agent()
    await agent.close()
    with pytest.raises(RuntimeError, match="closed"):
        agent.invalidation_manager.register_dependency("a", "b")


async def test_the_queue_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr("cache_plugins_invalidation.registrations.MAX_PENDING", 3)
    manager = manager_on(LocalIndex())  # not started: nothing is applied
    for i in range(3):
        manager.register_dependency(f"k{i}", "src")
    with pytest.raises(InvalidValueError, match="3 registrations are queued"):
        manager.register_dependency("k3", "src")
    assert manager.pending == 3


async def test_close_applies_thousands_queued_just_before_it(make_agent) -> None:
    agent = await make_agent()
    for i in range(3000):
        agent.invalidation_manager.register_event_subscription("e", f"k{i}")
    await agent.close()
    assert agent.invalidation_manager.pending == 0
    assert len(await agent.index.subscriptions("e")) == 3000
