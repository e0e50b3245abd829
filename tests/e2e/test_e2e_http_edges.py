"""The real command's answers to malformed HTTP, written by hand on raw sockets to
127.0.0.1: aiohttp's own protocol errors leave as the API's JSON error, and a body that
trickles in does not hold its connection."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cache_server.server import LINGERING_TIME

pytestmark = pytest.mark.e2e

BODY_TIMEOUT = 1.0
LINGERING = LINGERING_TIME
CONFIG = f"""\
cache_tiers:
  l1: {{max_size_mb: 4}}
limits:
  max_request_bytes: 65536
server:
  body_timeout: {BODY_TIMEOUT}
"""
SET = orjson.dumps({"key": "edge:1", "value": 1})
GET_EDGE = b"GET /cache/edge:1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def exchange(
    port: int, raw: bytes, *, wait: float = 10.0, trickle: float = 0.0
) -> tuple[bytes, float]:
    """Send ``raw`` (a byte every ``trickle`` seconds past its head, when given); every
    byte answered until the server closes, and the seconds that took."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        start = time.monotonic()
        if trickle:
            head, sep, body = raw.partition(b"\r\n\r\n")
            sock.sendall(head + sep)
            sock.setblocking(False)
            answer = b""
            for byte in body:
                time.sleep(trickle)
                try:
                    sock.sendall(bytes([byte]))
                    answer += sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:  # closed on us: what was answered is in answer
                    break
            sock.setblocking(True)
            sock.settimeout(wait)
        else:
            sock.sendall(raw)
            answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer, time.monotonic() - start


def json_error(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), answer[:300]
    payload = orjson.loads(body)
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message"}, payload
    return int(lines[0].split()[1]), payload["error"]


@pytest.fixture
def served(spawner: Any, workdir: Path) -> Any:
    (workdir / "edges.yaml").write_text(CONFIG, encoding="utf-8")
    return spawner.serve(workdir / "edges.yaml")


@pytest.fixture
def port(served: Any) -> int:
    assert served.port is not None
    return int(served.port)


POST = b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
MALFORMED = {
    "bad chunk size": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "content-length with transfer-encoding": (
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "header too large": b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "invalid method": b"G@T /health HTTP/1.1\r\nHost: t\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "bad header name": b"GET /health HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
}


def test_protocol_errors_are_answered_as_json(port: int, served: Any) -> None:
    for name, raw in MALFORMED.items():
        answer, _ = exchange(port, raw)
        status, error = json_error(answer)
        assert status == 400, (name, answer[:300])
        assert error["code"] == "malformed_request", (name, error)
        assert error["message"].startswith("malformed HTTP request"), (name, error)
        assert "aaaa" not in error["message"], "the bytes sent are not echoed"
    # The server still answers, and nothing was written.
    assert b'"hit":false' in exchange(port, GET_EDGE)[0]
    # Anyone can send these at will: a line each in the log, never a traceback.
    assert "Traceback" not in served.output
    assert served.output.count("malformed_request") >= len(MALFORMED) - 1


def test_a_trickled_body_is_a_408_and_its_connection_closes(port: int) -> None:
    raw = POST + b"Content-Length: %d\r\n\r\n" % len(SET) + SET
    # A byte every 0.3 s: about 6 s for the whole body, never a gap near the timeout.
    answer, took = exchange(port, raw, wait=30, trickle=0.3)
    status, error = json_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")
    assert took < BODY_TIMEOUT + LINGERING + 3
    assert b'"hit":false' in exchange(port, GET_EDGE)[0]


def test_a_body_that_never_comes_is_let_go(port: int) -> None:
    # The case: Content-Length 100000 then 1 byte (over the limit: 413 at once), and
    # the same under the limit (408 at the timeout). Either way the server closes.
    for length, status in ((100000, 413), (60000, 408)):
        raw = POST + b"Content-Length: %d\r\n\r\n{" % length
        answer, took = exchange(port, raw, wait=30)
        got, error = json_error(answer)
        assert got == status, error
        assert took < BODY_TIMEOUT + LINGERING + 3, (length, took)


def test_expect_continue_is_refused_from_the_head_alone(port: int) -> None:
    """Before, the server said "100 Continue" to a body it was going to refuse."""
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999\r\nExpect: 100-continue\r\n\r\n"
    )
    answer, _ = exchange(port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer
    status, error = json_error(answer)
    assert (status, error["code"]) == (413, "request_too_large")
    # A body it will take: "100 Continue", then the answer proper.
    body = b'{"key": "expect:1", "value": 1}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body)
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


@pytest.mark.parametrize(
    "raw",
    [
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"CONNECT 127.0.0.1:6379 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ],
)
def test_what_no_route_can_try_is_answered_as_json(port: int, raw: bytes) -> None:
    answer, _ = exchange(port, raw)
    status, error = json_error(answer)
    assert status == 404
    assert error["code"] == "not_found"


def test_an_expect_refusal_closes_its_connection(port: int) -> None:
    """The body never comes after a refusal: kept open, the connection would read the next
    request as that body."""
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 22\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):  # ends: the server closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 415"), answer[:200]
    assert b"connection: close" in answer.lower()
