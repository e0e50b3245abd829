"""Sessions: tests (the whole suite: it also queues lint, typecheck, minimal, lowest,
openapi_client and prometheus), lint, typecheck, minimal (cache-core + cache-server only),
lowest (the suite on the lowest versions the packages declare), openapi_client (a generated
client against a live server), prometheus (every dashboard query and alert rule against a
real Prometheus), bench (measurements), container (the Docker image and compose file, run
for real; never queued by tests).

Each session installs from uv.lock into its own environment, so what passes here is what
the lock file gives a fresh machine.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

ROOT = Path(__file__).parent


def sync(session: nox.Session, *args: str) -> None:
    """Install the locked workspace into the session's environment."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )


def tests_impl(session: nox.Session, extras: list[str], paths: list[str]) -> None:
    sync(session, "--group", "test", *(f"--extra={extra}" for extra in extras))
    session.run("pytest", *(session.posargs or paths))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against every shipped plugin (and the testing extra, whose pytest
    plugin tests/cache_testing runs as users load it), then the sessions it queues."""
    tests_impl(session, ["all", "testing"], ["tests"])
    if not session.posargs:
        for name in ("lint", "typecheck", "minimal", "lowest", "openapi_client", "prometheus"):
            session.notify(name)


@nox.session
def lint(session: nox.Session) -> None:
    sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    sync(session, "--group", "typecheck", "--extra=all", "--extra=testing")
    session.run("mypy")


@nox.session
def minimal(session: nox.Session) -> None:
    """cache-core and cache-server alone: L1-only serving works, and a config that asks for
    a plugin that is not installed fails at start with one line naming the extra."""
    session.install(
        "-e", str(ROOT / "packages/cache-core"), "-e", str(ROOT / "packages/cache-server")
    )
    session.install("pytest", "pytest-aiohttp", "pytest-asyncio")
    session.run("pytest", "tests/minimal", env={"CACHING_AGENT_MINIMAL": "1", **os.environ})


MEMBERS = [
    "packages/cache-core",
    "packages/cache-server",
    "packages/cache-plugins-redis",
    "packages/cache-plugins-compression[zstd,lz4]",
    "packages/cache-plugins-invalidation",
    "packages/cache-client",
]


@nox.session
def lowest(session: nox.Session) -> None:
    """The suite on the lowest version of each dependency the packages declare (uv's
    ``lowest-direct`` resolution; what those pull in at its newest), so a floor in a
    pyproject.toml is a version that works. The test tools are the newest allowed. Not
    tests/e2e: the command's processes run the same code the in-process tests do, and
    `.ci/run` must stay under 20 minutes (with them it took 19 here)."""
    editable = [arg for member in MEMBERS for arg in ("-e", str(ROOT / member))]
    session.install("--resolution=lowest-direct", *editable, "-e", f"{ROOT}[all]")
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    session.install(*groups["test"])
    # After the test tools, which it would otherwise hold at its own floors: so its
    # fakeredis is the lowest it allows, and pytest the newest, as for the rest.
    session.install("--resolution=lowest-direct", "-e", str(ROOT / "packages/cache-testing"))
    session.run("pytest", *(session.posargs or ["tests", "--ignore=tests/e2e"]))


@nox.session
def prometheus(session: nox.Session) -> None:
    """A real Prometheus scraping a real service through a scripted burst of traffic: every
    query of dashboards/caching-agent.json and every rule of dashboards/alerts.yml must
    return data, and each alert fire when the agent raises its own (tools/prometheus_check.py).
    Skipped where no Prometheus is installed (Debian: `apt-get install prometheus`; .ci/run
    installs it); PROMETHEUS=/path/to/prometheus picks another binary."""
    if not os.environ.get("PROMETHEUS") and shutil.which("prometheus") is None:
        session.skip("no prometheus on PATH (Debian: apt-get install prometheus)")
    sync(session, "--extra=all")
    session.run("python", "tools/prometheus_check.py")


BENCHMARKS = {
    "l1": ["bench/l1.py"],
    "l2": ["bench/l2.py"],
    "http": ["bench/http_bench.py"],
    "memory": ["bench/memory.py"],
    "codecs": ["bench/codecs.py"],
    "staleness": ["bench/staleness.py", "1000"],
    "l1_metrics": ["bench/l1_metrics.py"],
    "hitratio": ["bench/hitratio.py"],
    "policy_cost": ["bench/policy_cost.py"],
}


@nox.session
def bench(session: nox.Session) -> None:
    """Measurements, never assertions: the project beside its peers in one run, ratios
    printed, bench/results.md and bench/plot-*.png written. ``-- NAME ...`` runs some."""
    sync(session, "--extra=all", "--group", "bench")
    for name in session.posargs or list(BENCHMARKS):
        if name not in BENCHMARKS:
            session.error(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        session.run("python", *BENCHMARKS[name])
    session.run("python", "bench/report.py")


@nox.session
def openapi_client(session: nox.Session) -> None:
    """A client generated with openapi-python-client from the document a live server
    serves calls every operation with a token (tools/openapi_client_check.py)."""
    sync(session, "--extra=server", "--extra=invalidation")
    session.install("openapi-python-client==0.29.1")
    session.run("python", "tools/openapi_client_check.py")


@nox.session(default=False)
def container(session: nox.Session) -> None:
    """The Dockerfile and docker-compose.yml built and run for real with podman (root):
    set/get/health, a clean stop on SIGTERM, compose with its Redis. Not part of `tests`.
    CONTAINER_BASE=IMAGE overrides the base (see tools/container_check.py)."""
    sync(session, "--extra=server", "--extra=redis", "--extra=embedded")
    session.install("podman-compose==1.6.0")
    session.run("python", "tools/container_check.py")
