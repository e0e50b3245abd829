"""Redis AUTH with an ACL user confined to the cache's prefix, and clear start errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_core import CachingAgent, TierUnavailableError


@pytest.fixture
def acl_user(engine: Any, prefix: str) -> Iterator[tuple[str, str]]:
    name, password = f"app{prefix[1:-1]}", "s3cret-passw0rd"
    engine.client.execute_command(
        "ACL", "SETUSER", name, "on", f">{password}", f"~{prefix}*", "&*", "+@all"
    )
    yield name, password
    engine.client.execute_command("ACL", "DELUSER", name)


def acl_config(engine: Any, prefix: str, user: str, password: str) -> dict[str, Any]:
    return {
        "redis": {
            "url": engine.url,
            "username": user,
            "password": password,
            "key_prefix": prefix,
            "retry_attempts": 0,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
        "invalidation": {"backend": "local"},
    }


async def test_an_acl_user_confined_to_the_prefix_can_run_the_cache(
    engine: Any, prefix: str, acl_user: tuple[str, str]
) -> None:
    config = acl_config(engine, prefix, *acl_user)
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set("k", {"v": 1})
        agent.l1.clear()
        assert await agent.get("k") == {"v": 1}
        assert await agent.invalidate_pattern("*") == 1
        assert agent.l2 is not None and agent.l2.describe()["coherent"] is True  # pub/sub ok


async def test_a_wrong_password_fails_at_start_naming_the_server(
    engine: Any, prefix: str, acl_user: tuple[str, str]
) -> None:
    config = acl_config(engine, prefix, acl_user[0], "wrong-password")
    agent = CachingAgent.from_config(config, env={})
    with pytest.raises(TierUnavailableError, match=r"cannot use L2 at redis://127\.0\.0\.1"):
        await agent.start()


def test_serve_reports_an_unreachable_l2_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "redis:\n  url: redis://127.0.0.1:1/0\n  connect_timeout: 0.5\n  retry_attempts: 0\n"
        "cache_tiers:\n  l1: {}\n  l2: {type: redis}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cache_server.cli",
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "18999",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("caching-agent: cannot use L2 at redis://127.0.0.1:1/0")
