"""The ``caching-agent`` command: ``serve`` and ``check-config``.

A wrong config prints one line naming the field and exits 2; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from cache_core import CacheError, CachingAgent, ConfigError
from cache_server import logs
from cache_server.app import create_app
from cache_server.keys import AGENT

DEFAULT_CONFIG = "config.yaml"
EXIT_CONFIG = 2
EXIT_START = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caching-agent", description="Multi-tier cache service (L1 memory + Redis L2)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    serve.add_argument("--host", help="address to listen on (default: agent.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: agent.port)")
    check = sub.add_parser("check-config", help="validate a config and show what it assembles")
    check.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    return parser


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
        )
    return lines


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


def serve(path: str | None, host: str | None, port: int | None) -> int:
    source = _config_source(path)
    try:
        app = create_app(source)
    except ConfigError as exc:
        return _fail(str(exc))
    agent = app[AGENT]
    logs.configure(agent.config.monitoring.log_format)
    host = host or agent.config.agent.host
    port = port or agent.config.agent.port
    print(f"config: {source or 'built-in defaults'}")
    for line in _summary(agent):
        print(line)
    sys.stdout.flush()

    def announce(_message: str) -> None:
        print(f"caching-agent listening on http://{host}:{port}", flush=True)

    try:
        web.run_app(app, host=host, port=port, print=announce, access_log=None)
    except OSError as exc:
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except CacheError as exc:  # raised while starting: the engine, L2, a plugin
        print(f"caching-agent: {exc}", file=sys.stderr)
        return EXIT_START
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure("auto")
    if args.command == "check-config":
        return check_config(args.config)
    if args.port is not None and not 0 < args.port < 65536:
        return _fail(f"--port: must be a TCP port (1-65535), got {args.port}")
    return serve(args.config, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
