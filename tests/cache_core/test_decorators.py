"""@agent.cached and @agent.invalidates: keys from the arguments, checked when decorated,
one computation for concurrent callers, ``unless``, tags, and removal after a change, on
two instances sharing a real engine."""

from __future__ import annotations

import asyncio
from typing import Any, assert_type

import pytest

from cache_core import CachingAgent, InvalidKeyError

L1_ONLY = {"cache_tiers": {"l1": {"max_size_mb": 4}}, "compression": {"enable": False}}


def l2_config(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
    }


async def test_a_cached_function_computes_once_per_key_for_concurrent_callers() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:
        calls: list[tuple[str, int]] = []

        @agent.cached(key="user:{user_id}:recs:{limit}", ttl=60)
        async def recommendations(user_id: str, limit: int = 3) -> list[str]:
            calls.append((user_id, limit))
            await asyncio.sleep(0.02)  # every concurrent caller arrives meanwhile
            return [f"{user_id}-{i}" for i in range(limit)]

        results = await asyncio.gather(*(recommendations("ada") for _ in range(50)))
        assert results == [["ada-0", "ada-1", "ada-2"]] * 50
        assert calls == [("ada", 3)]
        assert await agent.get("user:ada:recs:3") == ["ada-0", "ada-1", "ada-2"]
        assert await recommendations("ada", limit=2) == ["ada-0", "ada-1"]  # its own key
        assert await recommendations(user_id="ada", limit=3) == ["ada-0", "ada-1", "ada-2"]
        assert calls == [("ada", 3), ("ada", 2)]
        assert recommendations.__name__ == "recommendations"  # wraps keeps the name


async def test_unless_returns_the_result_without_storing_it() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:
        calls = 0

        @agent.cached(key="profile:{uid}", unless=lambda value: value is None)
        async def profile(uid: int) -> dict[str, Any] | None:
            nonlocal calls
            calls += 1
            return None if uid == 0 else {"uid": uid}

        assert await profile(0) is None
        assert await profile(0) is None
        assert calls == 2  # a None was never cached
        assert await agent.get("profile:0", "absent") == "absent"
        assert await profile(1) == {"uid": 1}
        assert await profile(1) == {"uid": 1}
        assert calls == 3


async def test_templates_are_checked_against_the_signature_when_decorated() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:

        async def fn(user_id: str) -> int:
            return 1

        with pytest.raises(TypeError, match="'uid', which is not a parameter"):
            agent.cached(key="user:{uid}")(fn)
        with pytest.raises(TypeError, match="not a position"):
            agent.cached(key="user:{0}")(fn)
        with pytest.raises(TypeError, match="not a position"):
            agent.cached(key="user:{}")(fn)
        with pytest.raises(TypeError, match="tag template"):
            agent.cached(key="user:{user_id}", tags=["t:{other}"])(fn)
        with pytest.raises(TypeError, match="async functions"):
            agent.cached(key="k")(lambda: 1)  # type: ignore[arg-type, return-value]
        with pytest.raises(TypeError, match="list of templates"):
            agent.cached(key="k", tags="user")  # a string is not a list of tags
        with pytest.raises(TypeError, match="Single '}'"):
            agent.cached(key="user:{user_id}}")(fn)
        with pytest.raises(TypeError, match="needs a key, tags or a pattern"):
            agent.invalidates()


async def test_attributes_and_items_of_arguments_and_methods() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:

        class Catalog:
            def __init__(self, shop: str) -> None:
                self.shop = shop
                self.calls = 0

            @agent.cached(key="shop:{self.shop}:item:{ids[0]}")
            async def first(self, ids: list[int]) -> int:
                self.calls += 1
                return ids[0] * 10

        catalog = Catalog("north")
        assert await catalog.first([4, 5]) == 40
        assert await catalog.first([4, 6]) == 40  # same key: the first id
        assert catalog.calls == 1
        assert await agent.get("shop:north:item:4") == 40


async def test_a_key_the_agent_refuses_is_refused_at_the_call() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:

        @agent.cached(key="user:{name}")
        async def greet(name: str) -> str:
            return f"hi {name}"

        with pytest.raises(InvalidKeyError):
            await greet("x" * 10_000)


async def test_invalidates_removes_keys_and_tags_once_the_change_is_made(
    engine: Any, prefix: str
) -> None:
    config = l2_config(engine, prefix)
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        computed: list[str] = []
        profiles = {"ada": "v1"}

        def decorate(agent: CachingAgent) -> Any:
            @agent.cached(key="user:{uid}:profile", tags=["user:{uid}"])
            async def profile(uid: str) -> str:
                computed.append(uid)
                return profiles[uid]

            @agent.cached(key="user:{uid}:badge", tags=["user:{uid}"])
            async def badge(uid: str) -> str:
                return profiles[uid].upper()

            @agent.invalidates(key="user:{uid}:profile")
            async def rename(uid: str, value: str) -> None:
                profiles[uid] = value

            @agent.invalidates(tags=["user:{uid}"])
            async def reset(uid: str, value: str, fail: bool = False) -> None:
                if fail:
                    raise RuntimeError("the change failed")
                profiles[uid] = value

            return profile, badge, rename, reset

        profile_a, badge_a, rename_a, reset_a = decorate(a)
        profile_b, _, _, _ = decorate(b)
        assert await profile_a("ada") == "v1"
        assert await profile_b("ada") == "v1"  # B reads what A stored in L2
        assert computed == ["ada"]
        assert await badge_a("ada") == "V1"
        await rename_a("ada", "v2")
        assert await profile_a("ada") == "v2"
        assert computed == ["ada", "ada"]
        assert await badge_a("ada") == "V1"  # rename named the profile key alone
        with pytest.raises(RuntimeError):
            await reset_a("ada", "v3", fail=True)
        assert await badge_a("ada") == "V1"  # a failed change removes nothing
        await reset_a("ada", "v3")
        assert await badge_a("ada") == "V3"
        # B drops its copies on A's notices, within the documented 50 ms.
        for _ in range(100):
            if await profile_b("ada") == "v3":
                break
            await asyncio.sleep(0.01)
        assert await profile_b("ada") == "v3"


async def test_the_decorated_function_keeps_its_signature_for_type_checkers() -> None:
    # Checked by mypy (nox -s typecheck runs over tests/): assert_type fails it if the
    # result type is lost, and the ignore is an unused one (an error) if the parameters are.
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:

        @agent.cached(key="n:{n}")
        async def double(n: int) -> int:
            return n * 2

        assert assert_type(await double(2), int) == 4
        with pytest.raises(InvalidKeyError):  # it still runs: the agent refuses so long a key
            await double("2" * 5000)  # type: ignore[arg-type]


async def test_a_template_without_fields_reads_its_braces_as_format_does() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:

        @agent.cached(key="cfg:{{v2}}")
        async def config() -> int:
            return 2

        assert await config() == 2
        assert await agent.get("cfg:{v2}") == 2  # the key str.format gives, as with fields
