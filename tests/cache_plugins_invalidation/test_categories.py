"""Category rules with the in-process index: a key of a source category leaving the cache
(deleted, overwritten, invalidated) takes the dependent categories' keys with the same ids,
and a rule naming an unknown category fails at start naming it."""

from __future__ import annotations

import pytest

import cache_plugins_invalidation.hooks
from cache_core import CachingAgent, ConfigError

CATEGORIES = {
    "user_profile": "user:{user_id}:profile",
    "personalized_content": "user:{user_id}:learning_path*",
}
RULES = {"dependency_rules": {"user_profile": ["personalized_content"]}, "categories": CATEGORIES}
KEYS = ["user:123:profile", "user:123:learning_path:1", "user:456:learning_path:1"]


async def test_a_source_key_leaving_takes_its_dependents_of_the_same_id(
    make_agent, base_config
) -> None:
    agent: CachingAgent = await make_agent(base_config(invalidation=RULES))
    await agent.set_many(dict.fromkeys(KEYS, 1))
    assert await agent.delete("user:123:profile") is True
    assert await agent.get_many(KEYS) == {
        "user:123:profile": None,
        "user:123:learning_path:1": None,
        "user:456:learning_path:1": 1,
    }
    await agent.set("user:456:profile", {"name": "B"})  # a write of a source key too
    assert await agent.get("user:456:learning_path:1") is None
    await agent.set("user:456:learning_path:2", 2)
    assert await agent.invalidate_pattern("user:456:prof*") == 2
    assert agent.get_stats()["invalidated_by_kind"]["pattern"] == 2


def test_a_rule_naming_an_unknown_category_fails_at_start(base_config, no_plugins_env) -> None:
    invalidation = {"dependency_rules": {"user_profile": ["nope"]}, "categories": CATEGORIES}
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(
            base_config(invalidation=invalidation),
            plugins=[cache_plugins_invalidation.hooks],
            env=no_plugins_env,
        )
    assert str(info.value).startswith(
        "invalidation.dependency_rules.user_profile: unknown category 'nope'"
    )
