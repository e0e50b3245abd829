"""Fixtures that run the real ``caching-agent`` command as a subprocess.

Every process runs with its cwd in a temporary directory (so ./config.yaml is only there
when a test puts it there), with the seed's override variables removed from its
environment, and is killed at teardown whatever happened. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "caching-agent listening on"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 20.0

_OVERRIDES = ("REDIS_", "CACHE_", "CACHING_AGENT_")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OVERRIDES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port(low: int | None = None, high: int | None = None) -> int:
    """A TCP port free on 127.0.0.1: any (bound to port 0), or one in [low, high]."""
    if low is None or high is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    candidates = list(range(low, high + 1))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


class Server:
    """One ``caching-agent serve`` process; its output is collected by reader threads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.cwd = cwd
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        self.port: int | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cache_server.cli", *args],
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if READY_LINE in line:
                self._ready.set()

    @property
    def output(self) -> str:
        return "\n".join(["--- stdout", *self.stdout, "--- stderr", *self.stderr])

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return
            if self.proc.poll() is not None:
                self._join()
                pytest.fail(f"server exited with {self.proc.returncode}\n{self.output}")
        pytest.fail(f"server not ready within {timeout} s\n{self.output}")

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code (pytest.fail if it does not exit in time)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running {timeout} s after SIGTERM\n{self.output}")
        self._join()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        self._join()

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Spawner:
    """Starts servers and CLI runs; kills every server it started at teardown."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.servers: list[Server] = []

    def serve(
        self,
        config: Path | str | None,
        *,
        port: int | None = None,
        extra: list[str] | None = None,
        wait: bool = True,
    ) -> Server:
        port = free_port() if port is None else port
        args = ["serve"]
        if config is not None:
            args += ["--config", str(config)]
        args += ["--port", str(port), "--host", "127.0.0.1", *(extra or [])]
        server = Server(args, self.cwd)
        server.port = port
        self.servers.append(server)
        if wait:
            server.wait_ready()
        return server

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the command to completion; ``env`` adds variables to the cleaned environment."""
        return subprocess.run(
            [sys.executable, "-m", "cache_server.cli", *args],
            cwd=self.cwd,
            env={**clean_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def close(self) -> None:
        for server in self.servers:
            server.kill()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def spawner(workdir: Path) -> Iterator[Spawner]:
    spawner = Spawner(workdir)
    try:
        yield spawner
    finally:
        spawner.close()


SERVE_CONFIG = """\
agent:
  port: 8015
cache_tiers:
  l1:
    type: memory
    max_size_mb: 8
    ttl: 300
cache_policies:
  analytics_data:
    match: ["analytics:*"]
    ttl: 600
    strategy: write_back
invalidation:
  event_triggers:
    user_profile_update: ["user:{user_id}:*"]
ttl_presets:
  short: 1800
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole module, on an L1-only config in its own directory."""
    cwd = tmp_path_factory.mktemp("served")
    config = cwd / "serve.yaml"
    config.write_text(SERVE_CONFIG, encoding="utf-8")
    spawner = Spawner(cwd)
    try:
        yield spawner.serve(config)
    finally:
        spawner.close()


@pytest.fixture(scope="module")
def module_spawner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawner]:
    """A :class:`Spawner` whose servers live for the whole module, in a directory of its
    own: one server on a config of the module's, shared by its tests."""
    spawner = Spawner(tmp_path_factory.mktemp("module"))
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def find_port() -> Any:
    """``find_port()`` any free port; ``find_port(low, high)`` one in that range."""
    return free_port


@pytest.fixture(scope="session")
def uv() -> str:
    found = shutil.which("uv")
    assert found is not None, "uv builds the wheels (CI installs it first): not on PATH"
    return found


@pytest.fixture(scope="session")
def wheels(uv: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's seven wheels, built from this tree with ``uv build``, in one folder."""
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "-q", "-o", str(out)],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    assert len(list(out.glob("*.whl"))) == 8, sorted(out.iterdir())
    return out
