"""``monitoring.log_level`` and ``serve --log-level``: at debug the real process logs every
lookup (``cache_hit`` with the key's pattern and tier, ``cache_miss`` with its pattern),
in both log formats; above it, none."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = aiohttp.ClientTimeout(total=10)
PATTERN = "user:{user_id}:{resource}"
READS = 40  # new connections over two workers: all on one has odds of 2**-39


def write_config(workdir: Path, **monitoring: str) -> Path:
    lines = [f"  {name}: {value}" for name, value in monitoring.items()]
    path = workdir / "logging.yaml"
    path.write_text(
        "cache_tiers:\n"
        "  l1: {type: memory, max_size_mb: 8}\n"
        "key_patterns:\n"
        f'  user: "{PATTERN}"\n'
        "monitoring:\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    return path


async def hit_and_miss(url: str) -> None:
    """One write, one GET that hits L1, one GET that misses."""
    async with aiohttp.ClientSession(base_url=url, timeout=TIMEOUT) as http:
        async with http.post("/cache", json={"key": "user:7:profile", "value": 1}) as resp:
            assert resp.status == 200
        async with http.get("/cache/user:7:profile") as resp:
            assert (await resp.json())["tier"] == "l1"
        async with http.get("/cache/user:8:profile") as resp:
            assert (await resp.json())["hit"] is False


def json_events(stderr: list[str], *names: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr:
        if line.startswith("{"):
            record = json.loads(line)
            if record["event"] in names:
                found.append(record)
    return found


async def test_log_level_flag_debug_logs_hits_and_misses_as_json(
    spawner: Any, workdir: Path
) -> None:
    # The flag wins over the config's level (error would hide even warnings).
    config = write_config(workdir, log_format="json", log_level="error")
    server = spawner.serve(config, extra=["--log-level", "debug"])
    await hit_and_miss(server.url)
    assert server.terminate() == 0
    hit, miss = json_events(server.stderr, "cache_hit", "cache_miss")
    assert (hit["event"], hit["level"], hit["key_pattern"], hit["tier"]) == (
        "cache_hit",
        "debug",
        PATTERN,
        "l1",
    )
    assert (miss["event"], miss["level"], miss["key_pattern"]) == ("cache_miss", "debug", PATTERN)
    assert hit["request_id"] != miss["request_id"]
    assert "user:7" not in json.dumps(hit)  # the pattern, never the key's ids


async def test_config_log_level_debug_logs_hits_and_misses_as_text(
    spawner: Any, workdir: Path
) -> None:
    config = write_config(workdir, log_format="text", log_level="debug")
    server = spawner.serve(config)
    await hit_and_miss(server.url)
    assert server.terminate() == 0
    hits = [line.split() for line in server.stderr if " debug cache_hit " in line]
    misses = [line.split() for line in server.stderr if " debug cache_miss " in line]
    assert len(hits) == 1, server.output
    assert len(misses) == 1, server.output
    assert {f"key_pattern={PATTERN}", "tier=l1"} <= set(hits[0])
    assert f"key_pattern={PATTERN}" in misses[0]


async def test_at_the_default_info_level_lookups_are_not_logged(
    spawner: Any, workdir: Path
) -> None:
    config = write_config(workdir, log_format="json")
    server = spawner.serve(config)
    await hit_and_miss(server.url)
    assert server.terminate() == 0
    assert json_events(server.stderr, "cache_hit", "cache_miss") == [], server.output
    assert json_events(server.stderr, "l1_only"), server.output  # info and above still are


async def test_log_level_flag_above_the_configs_hides_what_the_config_shows(
    spawner: Any, workdir: Path
) -> None:
    config = write_config(workdir, log_format="json", log_level="debug")
    server = spawner.serve(config, extra=["--log-level", "error"])
    await hit_and_miss(server.url)
    assert server.terminate() == 0
    assert json_events(server.stderr, "cache_hit", "cache_miss", "l1_only") == [], server.output


def test_a_bad_log_level_in_config_is_a_config_error_naming_it(spawner: Any, workdir: Path) -> None:
    config = write_config(workdir, log_level="verbose")
    for command in ("check-config", "serve"):
        result = spawner.cli(command, "--config", str(config))
        assert result.returncode == 2, result
        assert result.stderr.strip() == (
            "caching-agent: monitoring.log_level: expected debug, info, warning, error, "
            "got 'verbose'"
        )


def test_a_bad_log_level_flag_is_refused(spawner: Any, workdir: Path) -> None:
    result = spawner.cli("serve", "--log-level", "verbose")
    assert result.returncode == 2, result
    assert "--log-level" in result.stderr
    assert "Traceback" not in result.stderr


async def fresh_get(url: str) -> Any:
    """A GET over a connection of its own: the kernel picks the worker per connection."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session,
        session.get(url) as resp,
    ):
        assert resp.status == 200
        return await resp.json()


async def test_every_worker_logs_at_the_flags_level(spawner: Any, workdir: Path) -> None:
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    server = spawner.serve(None, extra=["--workers", "2", "--log-level", "debug"])
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(f"{server.url}/cache", json={"key": "user:7:profile", "value": 1}) as resp,
    ):
        assert resp.status == 200
    answers = await asyncio.gather(
        *(fresh_get(f"{server.url}/cache/user:7:profile") for _ in range(READS))
    )
    assert all(answer["hit"] for answer in answers)
    pids = {(await fresh_get(f"{server.url}/health"))["pid"] for _ in range(READS)}
    assert len(pids) == 2  # both workers served
    assert server.terminate() == 0
    # A worker left at info would drop its share of the READS hits.
    hits = json_events(server.stderr, "cache_hit")
    assert len(hits) == READS, server.output
    assert {hit["key_pattern"] for hit in hits} == {PATTERN}
