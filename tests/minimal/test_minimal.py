"""Run by `nox -s minimal`: only cache-core and cache-server are installed."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from cache_server import create_app

L1_ONLY = {"compression": {"enable": False}, "cache_tiers": {"l1": {"max_size_mb": 1}}}


@pytest.mark.parametrize(
    "package",
    ["cache-plugins-redis", "cache-plugins-compression", "cache-plugins-invalidation"],
)
def test_no_plugin_package_is_installed(package: str) -> None:
    with pytest.raises(PackageNotFoundError):
        distribution(package)


async def test_server_runs_l1_only(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(L1_ONLY, env={}))
    resp = await client.post("/cache", json={"key": "user:1:profile", "value": {"name": "Ada"}})
    assert resp.status == 200
    resp = await client.get("/cache/user:1:profile")
    assert await resp.json() == {
        "key": "user:1:profile",
        "value": {"name": "Ada"},
        "hit": True,
        "tier": "l1",
    }
    stats = await (await client.get("/stats")).json()
    assert stats["tiers"] == ["l1"]
    assert stats["l2_size_keys"] == 0


def check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "cache_server.cli", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


@pytest.mark.parametrize(
    ("algorithm", "extra"),
    [("zstd", "caching-agent[zstd]"), ("gzip", "caching-agent[compression]")],
)
def test_missing_codec_fails_at_start_naming_the_extra(
    tmp_path: Path, algorithm: str, extra: str
) -> None:
    result = check_config(tmp_path, f"compression:\n  algorithm: {algorithm}\n")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "compression.algorithm" in lines[0]
    assert extra in lines[0]


def test_missing_l2_tier_fails_naming_the_extra(tmp_path: Path) -> None:
    text = "compression:\n  enable: false\ncache_tiers:\n  l1: {}\n  l2:\n    type: redis\n"
    result = check_config(tmp_path, text)
    assert result.returncode == 2
    assert "caching-agent[redis]" in result.stderr.strip().splitlines()[0]


async def test_tags_are_refused_naming_the_extra(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(L1_ONLY, env={}))
    resp = await client.post("/cache", json={"key": "k", "value": 1, "tags": ["t"]})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "not_installed"
    assert "caching-agent[invalidation]" in error["message"]
    assert (await (await client.get("/cache/k")).json())["hit"] is False
    resp = await client.post("/invalidate", json={"pattern": "k*"})
    assert resp.status == 200  # patterns are core's


def test_event_triggers_fail_at_start_naming_the_extra(tmp_path: Path) -> None:
    text = "compression:\n  enable: false\ninvalidation:\n  event_triggers:\n    e: ['k:*']\n"
    result = check_config(tmp_path, text)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "invalidation.event_triggers" in lines[0]
    assert "caching-agent[invalidation]" in lines[0]


def test_no_config_at_all_checks_and_serves_without_compression(tmp_path: Path) -> None:
    """With only core and server installed, the defaults (compression on, gzip) must not
    ask for the codec plugin: there is none, and values are stored as they are."""
    result = check_config(tmp_path, "")
    assert result.returncode == 0, result.stderr
    assert "compression" in result.stdout and "off" in result.stdout


async def test_the_default_config_serves(aiohttp_client) -> None:
    client = await aiohttp_client(create_app({}, env={}))
    resp = await client.post("/cache", json={"key": "k", "value": {"a": 1}})
    assert resp.status == 200
    assert (await (await client.get("/cache/k")).json())["value"] == {"a": 1}
