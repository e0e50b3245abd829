"""``serve --workers N``: N processes serving one port, each with its own agent and L1.

The kernel spreads connections over the workers (SO_REUSEPORT), and L2's change notices
keep their L1 copies coherent, as for any instances sharing one L2. The parent serves
nothing: it checks the config, starts the engine the workers share once when a plugin
offers one (the ``cache_shared_engine`` hook; the Redis plugin does for ``redis.url:
embedded``), starts the workers with that engine's ``worker_env()`` in their environment,
then watches them. SIGINT or SIGTERM stops every worker (each flushes its write-back
buffer), then the engine; a worker that exits on its own makes the parent stop the others
and exit non-zero.

Workers are this same command (``serve`` with hidden ``--worker-of``/``--ready-fd``) run
as subprocesses rather than multiprocessing children: a worker is then exactly the
one-process server, with nothing pickled, no ``__main__`` re-import and no resource
tracker process, and its exit code is a plain process exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from cache_core import CacheError, CachingAgent
from cache_core.shared_engine import SharedEngine
from cache_server.settings import ExportSettings

WORKER_START_TIMEOUT = 60.0
"""Seconds from spawning the workers to all of them listening: a worker's start connects
to L2 (bounded by redis.connect_timeout and its retries) and runs loading.warm_on_start."""
WORKER_STOP_TIMEOUT = 30.0
"""Seconds a worker has after SIGTERM before it is killed: above the server's shutdown
timeout for in-flight requests, plus the write-back flush."""
SHUTDOWN_TIMEOUT = 15.0
"""Seconds in-flight requests get to finish when a server stops (every L2 or loader call
in them has a bound of its own, so a request still running by then is stuck)."""

_PR_SET_PDEATHSIG = 1


def refusal(agent: CachingAgent, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve ``agent``'s config, or None."""
    if workers == 1:
        return None
    if not sys.platform.startswith("linux"):
        return f"--workers {workers} needs Linux (the kernel spreading one port's connections)"
    if agent.l2 is None:
        return (
            f"--workers {workers} needs an L2 tier (cache_tiers.l2) to share: with L1 alone "
            "each worker would keep a cache of its own and answer differently"
        )
    if not agent.shares_l2:
        return (
            f"--workers {workers}: L2 {agent.l2.PLUGIN_NAME!r} does not report other "
            "instances' changes, so the workers' L1 copies would go stale"
        )
    if agent.index is not None and not agent.index.shared:  # None: nothing is indexed
        return (
            f"--workers {workers} needs the tag and dependency indexes in L2 "
            "(invalidation.backend: redis, from caching-agent[redis]): with local "
            "indexes a tag set through one worker is unknown to the others"
        )
    if agent.config.section(ExportSettings).prometheus_port is not None:
        return (
            f"--workers {workers}: monitoring.prometheus_port cannot be served by several "
            "workers (each keeps its own metrics); unset it or run one worker"
        )
    return None


def check_port_free(host: str, port: int) -> None:
    """Raise OSError when something listens on ``host:port`` already.

    The workers bind with SO_REUSEPORT, which would silently share the port with another
    server started the same way (same user); a bind without it fails instead."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # As the server binds: TIME_WAIT leftovers of an earlier run are no conflict.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)


def become_worker(parent: int) -> bool:
    """In a worker, before serving: die with the parent. False when it is gone already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Checked after prctl: a parent that died before it would never send the signal.
    return os.getppid() == parent


def announce_ready(fd: int) -> None:
    """Tell the parent this worker listens (one short line: atomic on a pipe)."""
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def shared_engine(agent: CachingAgent) -> SharedEngine | None:
    """The engine the workers share, unstarted, as a plugin offers it, or None."""
    engine: object = agent.plugin_manager.hook.cache_shared_engine(agent=agent)
    if engine is None:
        return None
    if not isinstance(engine, SharedEngine):
        # Named by its class: pluggy's answer does not say which plugin gave it.
        kind = type(engine)
        raise CacheError(
            f"cache_shared_engine returned {kind.__module__}.{kind.__qualname__}, which "
            "lacks start, stop or worker_env (cache_core.shared_engine.SharedEngine)"
        )
    return engine


def _say(message: str) -> None:
    print(f"caching-agent: {message}", file=sys.stderr, flush=True)


async def _read_ready(reader: asyncio.StreamReader, count: int) -> list[int]:
    pids: list[int] = []
    while len(pids) < count:
        line = await reader.readline()
        if not line:
            raise EOFError("every worker closed the ready pipe")
        pids.append(int(line))
    return pids


async def supervise(
    agent: CachingAgent, worker_args: Sequence[str], workers: int, listening: str
) -> int:
    """Run ``workers`` workers (``serve`` with ``worker_args``) until a signal or until one
    exits; the exit code. ``listening`` is printed once all of them listen."""
    engine = shared_engine(agent)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    env = dict(os.environ)
    procs: list[asyncio.subprocess.Process] = []
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
    )
    code = 0
    try:
        if engine is not None:
            await engine.start()  # a CacheError says why in one line; the caller prints it
            env.update(engine.worker_env())
        for _ in range(workers):
            if stopping.is_set():
                break
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "cache_server.cli",
                    "serve",
                    *worker_args,
                    "--worker-of",
                    str(os.getpid()),
                    "--ready-fd",
                    str(write_fd),
                    pass_fds=(write_fd,),
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    # Its own process group: a Ctrl-C on the terminal reaches the parent
                    # alone, which stops each worker once (a second signal would cut a
                    # worker's shutdown, and its write-back flush, short).
                    start_new_session=True,
                )
            )
        # Only the workers hold the write end now: the pipe ends when they all have gone.
        os.close(write_fd)
        write_fd = -1
        code = await _watch(procs, reader, stopping, listening)
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        transport.close()
        code = max(code, await _stop(procs))
        if engine is not None:
            await engine.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return code


async def _watch(
    procs: list[asyncio.subprocess.Process],
    reader: asyncio.StreamReader,
    stopping: asyncio.Event,
    listening: str,
) -> int:
    """Until a signal (0) or a worker's exit (non-zero); prints ``listening`` once every
    worker listens."""
    if not procs:  # stopped while starting the engine
        return 0
    exits = {asyncio.create_task(p.wait()): p for p in procs}
    stop = asyncio.create_task(stopping.wait())
    ready = asyncio.create_task(_read_ready(reader, len(procs)))
    try:
        done, _ = await asyncio.wait(
            {ready, stop, *exits}, timeout=WORKER_START_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        if not done:
            _say(f"the workers did not all listen within {WORKER_START_TIMEOUT:g} s; stopping")
            return 1
        if ready in done:
            if ready.exception() is None:
                print(listening, flush=True)
            # Else the pipe ended early: every worker is gone or going, and says why below.
            done, _ = await asyncio.wait({stop, *exits}, return_when="FIRST_COMPLETED")
        if stop in done:
            return 0
        for waited, proc in exits.items():
            if waited in done:
                returncode = waited.result()
                _say(f"worker {proc.pid} exited with code {returncode}; stopping the others")
                return returncode if returncode > 0 else 1
        return 1
    finally:
        tasks: list[asyncio.Task[Any]] = [ready, stop, *exits]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stop(procs: list[asyncio.subprocess.Process]) -> int:
    """SIGTERM to every worker still running, SIGKILL past WORKER_STOP_TIMEOUT; 1 when one
    did not stop cleanly, else 0."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    waits = [asyncio.create_task(p.wait()) for p in procs]
    _, late = await asyncio.wait(waits, timeout=WORKER_STOP_TIMEOUT) if waits else (set(), set())
    for proc in procs:
        if proc.returncode is None:
            _say(f"worker {proc.pid} still running {WORKER_STOP_TIMEOUT:g} s after SIGTERM; killed")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    if late:
        await asyncio.gather(*late)
    return 0 if all(p.returncode == 0 for p in procs) else 1
