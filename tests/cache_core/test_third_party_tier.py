"""The third-party L2 tier of tests/third_party/sqlite_tier.py as its author meets it: a
config section of its own (typos named by path, its environment override), the index
``invalidation.backend: auto`` picks for it, and leases every instance on its file sees.
The contract suite (test_contract.py), the codecs (cache_plugins_compression) and
invalidation over HTTP (cache_server/test_server_invalidate.py) run on it too."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cache_core import CachingAgent, ConfigError

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}


def sqlite_config(**sections: Any) -> dict[str, Any]:
    """On the SQLite tier; compression off, gzip being a plugin package's."""
    tiers = {"l1": {"max_size_mb": 4}, "l2": {"type": "sqlite"}}
    return {"cache_tiers": tiers, "compression": {"enable": False}, **sections}


def keys_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(key for (key,) in db.execute("SELECT key FROM entries"))


async def test_its_own_section_says_where_it_stores(sqlite_tier: ModuleType, tmp_path: Path):
    path = tmp_path / "own.sqlite"
    cfg = sqlite_config(sqlite={"path": str(path)})
    async with CachingAgent.from_config(cfg, plugins=[sqlite_tier], env=NO_PLUGINS) as agent:
        await agent.set("user:1", {"name": "Ada"})
        assert agent.l2 is not None
        assert agent.l2.describe() == {"backend": f"sqlite {path}"}
    assert keys_in(path) == ["user:1"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"pth": "x.sqlite"}, r"^sqlite: unknown field pth$"),
        ({"path": ["x.sqlite"]}, r"^sqlite\.path: "),
        ("x.sqlite", r"^sqlite: "),
    ],
    ids=["typo", "not-text", "not-a-mapping"],
)
def test_a_mistake_in_its_section_names_the_path(
    sqlite_tier: ModuleType, section: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        CachingAgent.from_config(
            sqlite_config(sqlite=section), plugins=[sqlite_tier], env=NO_PLUGINS
        )


def test_its_section_is_unknown_without_the_plugin() -> None:
    # The section is the plugin's, not core's: with the plugin absent, no one claims it.
    cfg = {"cache_tiers": {"l1": {"max_size_mb": 4}}, "sqlite": {"path": "x.sqlite"}}
    with pytest.raises(ConfigError, match=r"unknown field sqlite"):
        CachingAgent.from_config(cfg, env=NO_PLUGINS)


async def test_sqlite_path_in_the_environment_overrides_the_section(
    sqlite_tier: ModuleType, tmp_path: Path
) -> None:
    written, chosen = tmp_path / "written.sqlite", tmp_path / "env.sqlite"
    cfg = sqlite_config(sqlite={"path": str(written)})
    env = {**NO_PLUGINS, "SQLITE_PATH": str(chosen)}
    async with CachingAgent.from_config(cfg, plugins=[sqlite_tier], env=env) as agent:
        await agent.set("k", 1)
    assert keys_in(chosen) == ["k"]
    assert not written.exists()


async def test_auto_picks_the_local_index_and_nothing_warns(
    sqlite_tier: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every installed plugin loads, the Redis index among them: it cannot live in this
    # tier, so auto must not pick it ("'redis' needs cache_tiers.l2.type: redis").
    cfg = sqlite_config(sqlite={"path": str(tmp_path / "l2.sqlite")})
    with caplog.at_level(logging.WARNING):
        async with CachingAgent.from_config(cfg, plugins=[sqlite_tier], env={}) as agent:
            assert "redis" in agent.registry.names("invalidator")
            assert agent.describe()["invalidation"] == "local"
            await agent.set("a", 1, tags=["t"])
            await agent.set("b", 2, dependencies=["a"])
            assert await agent.invalidate_by_tags(["t"]) == 2
            assert await agent.get_many(["a", "b"]) == {"a": None, "b": None}
    # attach says no other process shares the file: no "index not shared" line.
    assert "invalidation_index_not_shared" not in [r.getMessage() for r in caplog.records]
    assert keys_in(tmp_path / "l2.sqlite") == []


async def test_a_lease_is_seen_by_every_instance_on_the_file(
    sqlite_tier: ModuleType, tmp_path: Path
) -> None:
    cfg = sqlite_config(sqlite={"path": str(tmp_path / "l2.sqlite")})
    async with (
        CachingAgent.from_config(cfg, plugins=[sqlite_tier], env=NO_PLUGINS) as a,
        CachingAgent.from_config(cfg, plugins=[sqlite_tier], env=NO_PLUGINS) as b,
    ):
        assert a.l2 is not None and b.l2 is not None
        token = await a.l2.try_lock("load:k", 0.3)
        assert token is not None
        assert await b.l2.try_lock("load:k", 60) is None
        await b.l2.unlock("load:k", "not-the-token")  # does not release a's lease
        assert await b.l2.try_lock("load:k", 60) is None
        await asyncio.sleep(0.4)  # a's lease runs out: not stolen, expired
        second = await b.l2.try_lock("load:k", 60)
        assert second is not None and second != token
        await a.l2.unlock("load:k", token)  # a stale holder cannot release b's lease
        assert await a.l2.try_lock("load:k", 60) is None
        await b.l2.unlock("load:k", second)
        assert await a.l2.try_lock("load:k", 60) is not None
