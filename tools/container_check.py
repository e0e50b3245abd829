"""The Docker image and docker-compose.yml, built and run as a user would (`nox -s container`).

1. The base: ``CONTAINER_BASE`` if set; else, where ``../shared/tools/container-base``
   exists (machines that reach no image registry), the local Debian+Python image it builds,
   with the podman invocation it prints; else the Dockerfile's own default.
2. ``podman build`` the image; its config: a non-root user, port 8015, the /data volume,
   a HEALTHCHECK, an exec-form CMD that the CLI's own parser reads as ``serve``.
3. Run it (host network, a free loopback port, a fresh volume): POST /cache, GET
   /cache/{key} and GET /health answer as README shows, the HEALTHCHECK passes, the server
   is PID 1 and not root; SIGTERM: exit code 0 within STOP_BOUND seconds, the embedded
   engine saved and stopped. Again on the same volume: the entry is still there (from L2).
4. docker-compose.yml: as the product description has it (redis:7-alpine, build ., port
   8015, REDIS_HOST=redis), REDIS_HOST turns `redis.url: embedded` off in the shipped
   config; then run it with podman-compose on a copy that only swaps what this machine
   needs: the host network, with `redis` mapped to 127.0.0.1 and free ports (so REDIS_PORT
   is added), the image step 2 built from the same `build: .`, and, without an image
   registry, a local Redis 7 image from Debian's redis-server for redis:7-alpine. The agent
   answers, its L2 is that Redis, the entry is in it, and it stops cleanly on SIGTERM.

Any mismatch exits 1 saying what differs. Every step has a time bound.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from cache_core.config import load_config, read_config_file
from cache_plugins_redis.engine import EmbeddedEngine
from cache_plugins_redis.settings import RedisSettings
from cache_server.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
BASE_TOOL = ROOT.parent / "shared" / "tools" / "container-base"
IMAGE = "localhost/caching-agent:latest"
REDIS_STAND_IN = "localhost/caching-agent-check-redis:bookworm"
BUILD_TIMEOUT = 900.0
"""Seconds for one image build (the first one downloads every locked package)."""
STEP_TIMEOUT = 60.0
"""Seconds for any other container command."""
READY_TIMEOUT = 60.0
"""Seconds from `run` until /health answers."""
STOP_BOUND = 10.0
"""Seconds from SIGTERM to exit: nothing is in flight, so a clean stop takes well under 1."""
HTTP_TIMEOUT = 5.0
ENTRY = {"key": "user:123:profile", "value": {"name": "Alice"}, "ttl": 3600, "tags": ["profile"]}
DESCRIPTION_COMPOSE = {
    "redis": {"image": "redis:7-alpine", "ports": ["6379:6379"]},
    "caching-agent": {"build": ".", "ports": ["8015:8015"], "depends_on": ["redis"]},
}


class Mismatch(Exception):
    """What the check found differs from what it expects."""


def expect(ok: object, what: str) -> None:
    if not ok:
        raise Mismatch(what)


def say(message: str) -> None:
    print(f"container-check: {message}", flush=True)


class Podman:
    """podman as this machine needs it (the base tool's wrapper), with bounded calls."""

    def __init__(self, global_args: list[str], env: dict[str, str]) -> None:
        self.argv = ["podman", *global_args]
        self.env = {**os.environ, **env}

    def run(
        self, *args: str, timeout: float = STEP_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [*self.argv, *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Mismatch(f"`podman {shlex.join(args)}` took over {timeout:.0f} s") from None
        if check and done.returncode != 0:
            raise Mismatch(
                f"`podman {shlex.join(args)}` exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        return done

    def wrapper(self, directory: Path) -> Path:
        """An executable that is this podman, for tools that take a podman path."""
        path = directory / "podman"
        exports = "".join(
            f"export {k}={shlex.quote(v)}\n" for k, v in self.env.items() if k == "CONTAINERS_CONF"
        )
        path.write_text(f'#!/bin/sh\n{exports}exec {shlex.join(self.argv)} "$@"\n')
        path.chmod(0o755)
        return path


def base_and_podman() -> tuple[str | None, bool, Podman]:
    """(BASE build argument or None for the Dockerfile's default, whether images must be
    built locally because no registry is reachable, podman)."""
    override = os.environ.get("CONTAINER_BASE") or None
    if not BASE_TOOL.is_file():
        if shutil.which("podman") is None:
            raise Mismatch("podman is not installed (and there is no container-base tool)")
        return override, False, Podman([], {})
    say(f"building the local base with {BASE_TOOL} (2-4 minutes the first time)")
    try:
        done = subprocess.run(
            ["bash", str(BASE_TOOL)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Mismatch(f"{BASE_TOOL} took over {BUILD_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise Mismatch(f"{BASE_TOOL} exited {done.returncode}:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    # Its last line is the wrapper: name() { CONTAINERS_CONF=PATH podman ARGS "$@"; }
    wrapper = re.search(r"\{\s*(?:CONTAINERS_CONF=(\S+)\s+)?podman\s+(.*?)\s*\"\$@\"", lines[-1])
    built = re.match(r"(?:built (\S+)|(\S+) already exists)$", lines[-2] if len(lines) > 1 else "")
    expect(wrapper and built, f"cannot read {BASE_TOOL}'s output:\n{done.stdout}")
    assert wrapper is not None and built is not None
    env = {"CONTAINERS_CONF": wrapper.group(1)} if wrapper.group(1) else {}
    return (
        override or built.group(1) or built.group(2),
        True,
        Podman(shlex.split(wrapper.group(2)), env),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_ready(podman: Podman, container: str, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            status, body = http("GET", f"http://127.0.0.1:{port}/health")
            if status == 200:
                health: dict[str, Any] = body
                return health
        state = podman.run("inspect", "--format", "{{.State.Running}}", container).stdout
        if state.strip() != "true":
            logs = podman.run("logs", container, check=False)
            raise Mismatch(f"{container} exited while starting:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.2)
    raise Mismatch(f"{container}: /health did not answer within {READY_TIMEOUT:.0f} s")


def stop_with_sigterm(podman: Podman, container: str) -> float:
    """SIGTERM ``container``; the seconds it took to exit, after checking it exited 0."""
    started = time.monotonic()
    podman.run("kill", "--signal", "TERM", container)
    try:
        code = podman.run("wait", container, timeout=STOP_BOUND).stdout.strip()
    except Mismatch:
        raise Mismatch(f"{container} did not exit within {STOP_BOUND:.0f} s of SIGTERM") from None
    took = time.monotonic() - started
    if code != "0":
        logs = podman.run("logs", container, check=False)
        raise Mismatch(
            f"{container} exited {code} on SIGTERM, not 0:\n{logs.stdout[-3000:]}{logs.stderr}"
        )
    return took


def check_set_get(port: int, tier: str) -> None:
    url = f"http://127.0.0.1:{port}"
    status, body = http("POST", f"{url}/cache", ENTRY)
    want = {"success": True, "key": ENTRY["key"], "strategy": "write_through"}
    expect(status == 200 and body == want, f"POST /cache answered {status} {body}, not {want}")
    check_get(port, tier)


def check_get(port: int, tier: str) -> None:
    status, body = http("GET", f"http://127.0.0.1:{port}/cache/{ENTRY['key']}")
    want = {"key": ENTRY["key"], "value": ENTRY["value"], "hit": True, "tier": tier}
    expect(
        status == 200 and body == want, f"GET /cache/{{key}} answered {status} {body}, not {want}"
    )


def check_image_config(podman: Podman) -> tuple[list[str], list[str]]:
    """The image's CMD and HEALTHCHECK command, after checking what the Dockerfile promises
    of the image."""
    info = json.loads(podman.run("image", "inspect", IMAGE).stdout)[0]
    config = info["Config"]
    user = str(config.get("User", ""))
    expect(user and user.partition(":")[0] not in ("", "0", "root"), f"image runs as {user!r}")
    expect("8015/tcp" in config.get("ExposedPorts", {}), "image does not EXPOSE 8015")
    expect("/data" in config.get("Volumes", {}), "image has no /data volume")
    health = info.get("Healthcheck") or config.get("Healthcheck") or {}
    test = health.get("Test", [])
    expect(test[:1] == ["CMD"] and "/health" in " ".join(test), f"HEALTHCHECK is {test}")
    cmd: list[str] = config.get("Cmd") or []
    expect(cmd[:1] == ["caching-agent"], f"CMD is not the exec form of caching-agent: {cmd}")
    expect(not config.get("Entrypoint"), f"unexpected ENTRYPOINT {config.get('Entrypoint')}")
    check_cli_argv(cmd, "the image's CMD")
    return cmd, test[1:]


def check_cli_argv(argv: list[str], what: str) -> None:
    parser = _parser()
    parser.exit_on_error = False
    try:
        args = parser.parse_args(argv[1:])
    except (SystemExit, Exception) as exc:
        raise Mismatch(f"{what} {argv} is not a valid caching-agent command: {exc}") from None
    expect(args.command == "serve", f"{what} {argv} does not serve")


def check_run(podman: Podman, cmd: list[str], health_cmd: list[str], tag: str) -> None:
    port = free_port()
    volume, name = f"{tag}-data", f"{tag}-agent"
    health_url = f"http://127.0.0.1:{port}/health"
    run = [
        "run", "-d", "--name", name, "--network", "host", "-v", f"{volume}:/data",
        # Only what the host network needs: this port, and the healthcheck told of it.
        "-e", f"HEALTH_URL={health_url}", "--health-interval", "disable",
        IMAGE, *cmd, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    try:
        podman.run(*run)
        health = wait_ready(podman, name, port)
        say(f"serving on 127.0.0.1:{port}: {json.dumps(health)}")
        expect(health.get("status") == "ok", f"/health status is not ok: {health}")
        backend = str(health["tiers"]["l2"]["backend"])
        expect(
            backend.startswith("embedded engine at /data/"),
            f"L2 is not the embedded engine under /data: {backend}",
        )
        expect(health.get("pid") == 1, f"the server is not PID 1 (exec form): {health}")
        check_set_get(port, "l1")
        uid = podman.run("exec", name, "id", "-u").stdout.strip()
        expect(uid not in ("", "0"), f"the server runs as uid {uid}")
        podman.run("exec", name, *health_cmd)  # the HEALTHCHECK's own command
        took = stop_with_sigterm(podman, name)
        say(f"SIGTERM: exit 0 in {took:.2f} s")
        done = podman.run("logs", name)
        logs = done.stdout + done.stderr  # the JSON log lines are on stderr
        expect("embedded_engine_stopped" in logs, f"no embedded_engine_stopped in the log:\n{logs}")
        engine_log = podman.run(
            "run", "--rm", "--network", "none", "-v", f"{volume}:/data", "--entrypoint", "cat",
            IMAGE, "/data/.caching-agent/engine/engine.log",
        ).stdout  # fmt: skip
        tail = engine_log[engine_log.rfind("Received SIGTERM") :]
        expect(
            "DB saved on disk" in tail and "ready to exit" in tail,
            f"the engine did not save and exit on its SIGTERM:\n{engine_log[-2000:]}",
        )
        podman.run("rm", name)

        # The same volume again: the entry survived in the engine's files.
        podman.run(*run)
        wait_ready(podman, name, port)
        check_get(port, "l2")
        took = stop_with_sigterm(podman, name)
        say(
            f"restart on the same volume: the entry is back from L2; SIGTERM: exit 0 "
            f"in {took:.2f} s"
        )
    finally:
        podman.run("rm", "-f", name, check=False)
        podman.run("volume", "rm", "-f", volume, check=False)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def check_compose_file() -> dict[str, Any]:
    """docker-compose.yml, after checking it is the product description's."""
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = spec.get("services", {})
    expect(set(services) == set(DESCRIPTION_COMPOSE), f"services are {sorted(services)}")
    for name, want in DESCRIPTION_COMPOSE.items():
        for field, value in want.items():
            got = services[name].get(field)
            expect(got == value, f"docker-compose.yml {name}.{field} is {got!r}, not {value!r}")
    env = environment(services["caching-agent"])
    expect(env.get("REDIS_HOST") == "redis", f"caching-agent's environment is {env}")
    command = services["caching-agent"].get("command")
    if command is not None:
        check_cli_argv(
            shlex.split(command) if isinstance(command, str) else command, "compose's command"
        )
    # What that environment makes of the shipped config: Redis at `redis`, no engine.
    config = load_config(read_config_file(ROOT / "config.yaml"), env=env).section(RedisSettings)
    expect(
        config.url is None and config.host == "redis",
        f"with {env} the shipped config's redis is url={config.url!r} host={config.host!r}",
    )
    expect(
        EmbeddedEngine.for_settings(config) is None,
        f"with {env} the agent would still start its embedded engine",
    )
    return dict(spec)


def compose_for_here(
    spec: dict[str, Any], base: str | None, redis_image: str, cmd: list[str], tag: str
) -> tuple[dict[str, Any], int, int]:
    """``spec`` with only what this machine needs changed; with its agent and Redis ports."""
    derived = copy.deepcopy(spec)
    redis, agent = derived["services"]["redis"], derived["services"]["caching-agent"]
    agent_port, redis_port = free_port(), free_port()
    redis_cmd = redis.get("command") or ["redis-server"]
    redis_cmd = shlex.split(redis_cmd) if isinstance(redis_cmd, str) else list(redis_cmd)
    redis.update(
        image=redis_image,
        container_name=f"{tag}-redis",
        network_mode="host",
        command=[*redis_cmd, "--port", str(redis_port), "--bind", "127.0.0.1"],
    )
    redis.pop("ports", None)  # the host network publishes nothing
    build: dict[str, Any] = {"context": str(ROOT)}
    if base is not None:
        build["args"] = {"BASE": base}
    env = environment(agent)
    env.update(REDIS_PORT=str(redis_port), HEALTH_URL=f"http://127.0.0.1:{agent_port}/health")
    agent_cmd = agent.get("command") or cmd
    agent_cmd = shlex.split(agent_cmd) if isinstance(agent_cmd, str) else list(agent_cmd)
    agent.update(
        # The image step 2 built from this `build`: up uses it rather than building it again
        # under a name of its own.
        image=IMAGE,
        build=build,
        container_name=f"{tag}-agent",
        network_mode="host",
        # On the host network `redis` is this machine; REDIS_HOST=redis stays as written.
        extra_hosts=["redis:127.0.0.1"],
        environment=env,
        command=[*agent_cmd, "--host", "127.0.0.1", "--port", str(agent_port)],
    )
    agent.pop("ports", None)
    return derived, agent_port, redis_port


def build_redis_stand_in(podman: Podman, base: str, workdir: Path) -> None:
    """A Redis 7 server image from Debian's package, for redis:7-alpine where no image
    registry is reachable."""
    context = workdir / "redis"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {base}\n"
        "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server"
        " >/dev/null && rm -rf /var/lib/apt/lists/*\n"
        'CMD ["redis-server"]\n'
    )
    podman.run("build", "-t", REDIS_STAND_IN, str(context), timeout=BUILD_TIMEOUT)
    version = podman.run("run", "--rm", "--network", "none", REDIS_STAND_IN, "redis-server", "-v")
    expect(" v=7." in version.stdout, f"the stand-in is not Redis 7: {version.stdout}")


def check_compose_run(
    podman: Podman, spec: dict[str, Any], base: str | None, local: bool, cmd: list[str], tag: str
) -> None:
    compose = shutil.which("podman-compose")
    if compose is None:
        raise Mismatch("podman-compose is not installed (the nox session installs it)")
    with tempfile.TemporaryDirectory(prefix="caching-agent-compose-") as tmp:
        workdir = Path(tmp)
        redis_image = str(spec["services"]["redis"]["image"])
        if local:
            assert base is not None
            build_redis_stand_in(podman, base, workdir)
            redis_image = REDIS_STAND_IN
        derived, agent_port, redis_port = compose_for_here(spec, base, redis_image, cmd, tag)
        file = workdir / "docker-compose.yml"
        file.write_text(yaml.safe_dump(derived, sort_keys=False))
        argv = [compose, "--podman-path", str(podman.wrapper(workdir)), "--in-pod", "false"]
        argv += ["--podman-build-args", "--format docker", "-p", tag, "-f", str(file)]

        def compose_run(*args: str, timeout: float = STEP_TIMEOUT) -> None:
            try:
                done = subprocess.run(
                    [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired:
                raise Mismatch(
                    f"podman-compose {shlex.join(args)} took over {timeout:.0f}s"
                ) from None
            expect(
                done.returncode == 0,
                f"podman-compose {shlex.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}{done.stderr[-3000:]}",
            )

        agent, redis = f"{tag}-agent", f"{tag}-redis"
        try:
            compose_run("up", "-d", timeout=BUILD_TIMEOUT)
            health = wait_ready(podman, agent, agent_port)
            say(f"compose: serving on 127.0.0.1:{agent_port}: {json.dumps(health)}")
            backend = str(health["tiers"]["l2"]["backend"])
            expect(
                backend == f"redis://redis:{redis_port}/0",
                f"compose: L2 is {backend}, not the redis service",
            )
            # The file's Redis command gives it a limit and a policy a cache can live with.
            expect(not health.get("warnings"), f"compose: /health warns: {health.get('warnings')}")
            check_set_get(agent_port, "l1")
            found = podman.run(
                "exec", redis, "redis-cli", "-p", str(redis_port), "--scan", "--pattern",
                f"*{ENTRY['key']}*",
            ).stdout.splitlines()  # fmt: skip
            expect(found, "compose: the entry is not in the redis service")
            took = stop_with_sigterm(podman, agent)
            say(
                f"compose: the entry is in the redis service as {found}; SIGTERM: exit 0 "
                f"in {took:.2f} s"
            )
        finally:
            # -v: the agent's /data is an anonymous volume here, which down leaves behind.
            podman.run("rm", "-f", "-v", agent, redis, check=False)
            with contextlib.suppress(Mismatch):
                compose_run("down", "-v", "-t", "5", timeout=STEP_TIMEOUT)


def main() -> int:
    started = time.monotonic()
    tag = f"ca-check-{os.getpid()}"
    try:
        spec = check_compose_file()
        say("docker-compose.yml is the description's; REDIS_HOST=redis turns the engine off")
        base, local, podman = base_and_podman()
        build = ["build", "--format", "docker", "-t", IMAGE]
        if base is not None:
            build += ["--build-arg", f"BASE={base}"]
        say(f"podman {shlex.join(build)} {ROOT}")
        build_started = time.monotonic()
        before = podman.run("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
        podman.run(*build, str(ROOT), timeout=BUILD_TIMEOUT)
        after = podman.run("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout
        if before.returncode == 0 and before.stdout != after:
            # The image this one replaced, left untagged: not kept around run after run.
            podman.run("rmi", before.stdout.strip(), check=False)
        say(f"built {IMAGE} in {time.monotonic() - build_started:.0f} s")
        cmd, health_cmd = check_image_config(podman)
        say(f"image: non-root, EXPOSE 8015, VOLUME /data, HEALTHCHECK, CMD {cmd}")
        check_run(podman, cmd, health_cmd, tag)
        check_compose_run(podman, spec, base, local, cmd, tag)
    except Mismatch as exc:
        print(f"container-check: FAILED: {exc}", file=sys.stderr)
        return 1
    say(f"all checks passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
