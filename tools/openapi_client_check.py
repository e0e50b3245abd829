"""A client generated from the served OpenAPI document calls every operation
(`nox -s openapi_client`), as a user of openapi-python-client would.

1. Serve `caching-agent serve` on a free loopback port with a bearer token (L1 only; the
   invalidation plugin for tags and events).
2. Fetch /openapi.json from it and generate a client package with openapi-python-client
   into a temporary directory; import it.
3. Call every operation of the document through the client's typed functions, with the
   token, each answer parsed into the generated model of its 200 response and checked
   (a write read back, a tag invalidation removing what it tagged, ...). An operation of
   the document this script does not call is a failure: a new endpoint must be added here.

Any mismatch exits 1 naming the operation. Every step has a time bound.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TOKEN = "openapi-client-check-0123456789"
CONFIG = """\
cache_tiers:
  l1: {max_size_mb: 4}
compression: {enable: false}
server:
  auth_token: TOKEN
invalidation:
  event_triggers:
    user_profile_update: ["user:{user_id}:*"]
""".replace("TOKEN", TOKEN)
READY_TIMEOUT = 30.0
"""Seconds from start until /health answers."""
GENERATE_TIMEOUT = 120.0
CALL_TIMEOUT = 10.0
"""Seconds for any one call of the generated client."""
PACKAGE = "caching_agent_client"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(workdir: Path) -> Iterator[str]:
    (workdir / "config.yaml").write_text(CONFIG)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CACHE_"))}
    command = ["caching-agent", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=workdir, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                fail(f"the server did not start: {proc.communicate()[1][-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fail(message: str) -> None:
    print(f"openapi client check: {message}", file=sys.stderr)
    sys.exit(1)


def generate(url: str, workdir: Path) -> Any:
    """The client package generated from the document ``url`` serves, imported."""
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=5) as resp:
        document = json.load(resp)
    (workdir / "openapi.json").write_text(json.dumps(document))
    (workdir / "generator.yaml").write_text(f"package_name_override: {PACKAGE}\n")
    result = subprocess.run(
        [
            "openapi-python-client",
            "generate",
            "--path",
            str(workdir / "openapi.json"),
            "--config",
            str(workdir / "generator.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(workdir / PACKAGE),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT,
    )
    # A schema the generator cannot turn into a model is a warning, not an error: it
    # would leave that operation untyped, so any warning fails the check.
    if result.returncode != 0 or "Warning" in result.stdout + result.stderr:
        fail(f"openapi-python-client failed or warned:\n{result.stdout}{result.stderr}")
    sys.path.insert(0, str(workdir))
    return document


def operations(document: dict[str, Any]) -> set[str]:
    return {op["operationId"] for methods in document["paths"].values() for op in methods.values()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp)) as url:
        document = generate(url, Path(tmp))
        client_module = importlib.import_module(PACKAGE)
        api = importlib.import_module(f"{PACKAGE}.api.default")
        models = importlib.import_module(f"{PACKAGE}.models")
        client = client_module.AuthenticatedClient(
            base_url=url, token=TOKEN, timeout=CALL_TIMEOUT, raise_on_unexpected_status=True
        )
        called: set[str] = set()

        def call(operation: str, *args: Any, **kwargs: Any) -> Any:
            """The 200 answer of ``operation``, parsed into its generated model."""
            module = importlib.import_module(f"{api.__name__}.{snake(operation)}")
            response = module.sync_detailed(*args, client=client, **kwargs)
            if response.status_code != 200:
                fail(f"{operation}: {response.status_code} {response.content[:300]!r}")
            expected = getattr(models, f"{operation[0].upper()}{operation[1:]}Response200")
            if not isinstance(response.parsed, expected):
                fail(f"{operation}: answer parsed as {type(response.parsed).__name__}")
            called.add(operation)
            return response.parsed

        def check(operation: str, ok: bool, what: Callable[[], str]) -> None:
            if not ok:
                fail(f"{operation}: {what()}")

        written = call(
            "setValue",
            body=models.SetValueBody.from_dict(
                {"key": "user:1:profile", "value": {"name": "Ada"}, "ttl": 60, "tags": ["t1"]}
            ),
        )
        check("setValue", written.success and written.key == "user:1:profile", str)
        read = call("getValue", "user:1:profile")
        check("getValue", read.hit and read.value.to_dict() == {"name": "Ada"}, lambda: str(read))
        stored = call(
            "batchSet",
            body=models.BatchSetBody.from_dict({"items": {"a": 1, "b": [2]}, "tags": ["t2"]}),
        )
        check("batchSet", stored.count == 2, lambda: str(stored))
        many = call("batchGet", body=models.BatchGetBody.from_dict({"keys": ["a", "b", "zz"]}))
        results = many.results.to_dict()
        check("batchGet", results == {"a": 1, "b": [2], "zz": None}, lambda: str(results))
        check("batchGet", (many.hits, many.misses) == (2, 1), lambda: str(many))
        gone = call("invalidate", body=models.InvalidateBody.from_dict({"tags": ["t2"]}))
        check("invalidate", gone.invalidated_count == 2, lambda: str(gone))
        event = call(
            "invalidate",
            body=models.InvalidateBody.from_dict(
                {"event": "user_profile_update", "context": {"user_id": "1"}}
            ),
        )
        check("invalidate", event.invalidated_count == 1, lambda: str(event))
        call("setValue", body=models.SetValueBody.from_dict({"key": "w", "value": "x"}))
        warmed = call("warmUp", body=models.WarmUpBody.from_dict({"keys": ["w", "nothing"]}))
        check("warmUp", (warmed.warmed_count, warmed.requested) == (1, 2), lambda: str(warmed))
        check("warmUp", list(warmed.failures.to_dict()) == ["nothing"], lambda: str(warmed))
        deleted = call("deleteValue", "w")
        check("deleteValue", deleted.deleted is True, lambda: str(deleted))
        stats = call("stats")
        check("stats", stats.sets == 4 and stats.deletes == 1, lambda: str(stats.to_dict()))
        health = call("health")
        check("health", health.status.value == "ok", lambda: str(health))
        # The token is what lets the calls through: without it the same client is refused.
        anonymous = client_module.Client(base_url=url, timeout=CALL_TIMEOUT)
        stats_module = importlib.import_module(f"{api.__name__}.stats")
        refused = stats_module.sync_detailed(client=anonymous)
        check("stats", refused.status_code == 401, lambda: f"{refused.status_code} untokened")
        missing = operations(document) - called
        if missing:
            fail(f"operations of the document not called here: {sorted(missing)}")
        print(f"openapi client check: {len(called)} operations called with the generated client")


def snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation)


if __name__ == "__main__":
    main()
