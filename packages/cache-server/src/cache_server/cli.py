"""The ``caching-agent`` command: ``serve`` and ``check-config``.

A wrong config prints one line naming the field and exits 2; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from aiohttp import web

from cache_core import CacheError, CachingAgent, ConfigError
from cache_server import logs
from cache_server.allocator import tune_allocator
from cache_server.app import create_app
from cache_server.keys import AGENT
from cache_server.server import serve_app
from cache_server.settings import LOG_LEVELS, AgentSettings, ExportSettings
from cache_server.workers import (
    SHUTDOWN_TIMEOUT,
    announce_ready,
    become_worker,
    check_port_free,
    refusal,
    supervise,
)

DEFAULT_CONFIG = "config.yaml"
EXIT_CONFIG = 2
EXIT_START = 1
MAX_WORKERS = 64
"""A typo guard (each worker is a process with its own L1 and L2 connection pool)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caching-agent", description="Multi-tier cache service (L1 memory + Redis L2)."
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the releases installed and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    serve.add_argument("--host", help="address to listen on (default: agent.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: agent.port)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the port, each with its own L1, kept coherent through L2 "
        "(default: 1)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="least severe event logged; debug logs every lookup (default: monitoring.log_level)",
    )
    # Set by the parent of --workers N on the workers it starts; not for people.
    serve.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    check = sub.add_parser("check-config", help="validate a config and show what it assembles")
    check.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    init = sub.add_parser(
        "init-config", help="write the sample config (the product description's, commented)"
    )
    init.add_argument("path", nargs="?", default=DEFAULT_CONFIG, help="where to write it")
    init.add_argument("--force", action="store_true", help="replace a file that exists")
    return parser


PACKAGES = (
    "cache-core",
    "cache-server",
    "cache-plugins-redis",
    "cache-plugins-compression",
    "cache-plugins-invalidation",
)


class _Version(argparse.Action):
    """``--version``: the line as it is (argparse's own action wraps it)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(version_line())
        parser.exit()


def version_line() -> str:
    """``caching-agent X`` (the server's release) and the release of each package installed."""
    installed = []
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            installed.append(f"{name} {package_version(name)}")
    return f"caching-agent {package_version('cache-server')} ({', '.join(installed)})"


def init_config(path: str, force: bool) -> int:
    target = Path(path)
    if target.exists() and not force:
        return _fail(f"{target}: exists; pass --force to replace it")
    sample = resources.files("cache_server").joinpath("sample-config.yaml").read_text("utf-8")
    try:
        target.write_text(sample, encoding="utf-8")
    except OSError as exc:
        return _fail(f"{target}: cannot write: {exc.strerror or exc}")
    print(f"wrote {target}: check it with caching-agent check-config --config {target}")
    return 0


def _config_source(path: str | None) -> str | None:
    if path is not None:
        return path
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None


def _summary(agent: CachingAgent) -> list[str]:
    info: dict[str, Any] = agent.describe()
    tiers = info["tiers"]
    l2 = tiers["l2"] or "none (running with L1 alone)"
    lines = [
        f"plugins: {', '.join(info['plugins'])}",
        f"tiers: l1={tiers['l1']}, l2={l2}",
        *_l2_target(agent),
        f"strategies: {', '.join(info['strategies'])} (default {info['default_strategy']})",
        f"compression: {info['compression']} (codecs: {', '.join(info['codecs']) or 'none'})",
        f"invalidation index: {info['invalidation']}",
    ]
    if info["loaders"]:
        lines.append(f"loaders: {', '.join(info['loaders'])}")
    for name, policy in info["policies"].items():
        match = ", ".join(policy["match"]) or "(no keys)"
        lines.append(
            f"policy {name}: match {match}; ttl {policy['ttl']}; "
            f"strategy {policy['strategy'] or 'default'}; compress {policy['compress']}"
            + ("; sliding" if policy.get("sliding") else "")
        )
    applied = agent.config.env_sources
    overrides = ", ".join(f"{var} -> {field}" for field, var in sorted(applied.items()))
    lines.append(f"environment overrides: {overrides or 'none'}")
    return lines


def _l2_target(agent: CachingAgent) -> list[str]:
    """Where L2 is, as its tier describes it (passwords redacted), when it says."""
    if agent.l2 is None:
        return []
    backend = agent.l2.describe().get("backend")
    return [f"l2 target: {backend}"] if backend else []


def _fail(message: str) -> int:
    print(f"caching-agent: {message}", file=sys.stderr)
    return EXIT_CONFIG


def check_config(path: str | None) -> int:
    source = _config_source(path)
    try:
        agent = CachingAgent.from_config(source)
    except ConfigError as exc:
        return _fail(str(exc))
    print(f"config: {source or 'built-in defaults'}: ok")
    for line in _summary(agent):
        print(line)
    return 0


def serve(
    path: str | None,
    host: str | None,
    port: int | None,
    workers: int = 1,
    log_level: str | None = None,
) -> int:
    tune_allocator()  # before any value is allocated (see cache_server.allocator)
    source = _config_source(path)
    try:
        app = create_app(source)
    except ConfigError as exc:
        return _fail(str(exc))
    agent = app[AGENT]
    export = agent.config.section(ExportSettings)
    log_level = log_level or export.log_level
    logs.configure(export.log_format, log_level)
    why = refusal(agent, workers)
    if why is not None:
        return _fail(why)
    listen = agent.config.section(AgentSettings)
    host = host or listen.host
    port = port or listen.port
    print(f"config: {source or 'built-in defaults'}")
    for line in _summary(agent):
        print(line)
    sys.stdout.flush()
    listening = f"caching-agent listening on http://{host}:{port}"
    if workers == 1:
        return _run(app, host, port, lambda: print(listening, flush=True), reuse_port=False)
    if port == 0:  # each worker would pick a port of its own
        return _fail(f"--workers {workers} needs a fixed port, not 0")
    try:
        check_port_free(host, port)
    except OSError as exc:
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    # The resolved level: a worker logs as its parent does, whatever set the level.
    worker_args = ["--host", host, "--port", str(port), "--log-level", log_level]
    if source is not None:
        worker_args += ["--config", str(source)]
    listening += f" ({workers} workers)"
    try:
        return asyncio.run(supervise(agent, worker_args, workers, listening))
    except CacheError as exc:  # the engine the workers share would not start
        print(f"caching-agent: {exc}", file=sys.stderr)
        return EXIT_START


def serve_worker(
    path: str | None,
    host: str,
    port: int,
    parent: int,
    ready_fd: int,
    log_level: str | None = None,
) -> int:
    """One of ``serve --workers N``'s processes: its parent checked the config and said
    where to listen; this one tells it when it does."""
    tune_allocator()
    if not become_worker(parent):
        return EXIT_START
    try:
        app = create_app(_config_source(path))
    except ConfigError as exc:
        return _fail(str(exc))
    monitoring = app[AGENT].config.section(ExportSettings)
    logs.configure(monitoring.log_format, log_level or monitoring.log_level)
    return _run(app, host, port, lambda: announce_ready(ready_fd), reuse_port=True)


def _run(
    app: web.Application, host: str, port: int, ready: Callable[[], None], *, reuse_port: bool
) -> int:
    try:
        asyncio.run(
            serve_app(
                app,
                host,
                port,
                ready=ready,
                reuse_port=reuse_port,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
        )
    except OSError as exc:
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except CacheError as exc:  # raised while starting: the engine, L2, a plugin
        print(f"caching-agent: {exc}", file=sys.stderr)
        return EXIT_START
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Until the config is read (plugins log while the agent is assembled).
    logs.configure("auto", getattr(args, "log_level", None) or "info")
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "init-config":
        return init_config(args.path, args.force)
    if args.port is not None and not 0 < args.port < 65536:
        return _fail(f"--port: must be a TCP port (1-65535), got {args.port}")
    if args.worker_of is not None and args.ready_fd is not None:
        return serve_worker(
            args.config, args.host, args.port, args.worker_of, args.ready_fd, args.log_level
        )
    if not 0 < args.workers <= MAX_WORKERS:
        return _fail(f"--workers: must be 1-{MAX_WORKERS}, got {args.workers}")
    return serve(args.config, args.host, args.port, args.workers, args.log_level)


if __name__ == "__main__":
    sys.exit(main())
