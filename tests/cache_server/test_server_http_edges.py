"""HTTP edges of a request body: its media type, its encoding, its size and how long it
takes to arrive. Each refusal is a 4xx JSON error that changes nothing.

Malformed HTTP is written by hand on a raw connection to the test server (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]
CheckError = Callable[[ClientResponse], Awaitable[dict[str, Any]]]

MAX_REQUEST = 16 * 1024  # conftest LIMITS["max_request_bytes"]
BODY_TIMEOUT = 1.0
ANSWER_WITHIN = 5.0
"""Generous bound on how long an answer that needs no body may take."""

SET = orjson.dumps({"key": "edge:1", "value": {"v": 1}})
POSTS = [
    ("/cache", {"key": "edge:1", "value": 1}),
    ("/cache/batch-get", {"keys": ["edge:1"]}),
    ("/cache/batch-set", {"items": {"edge:1": 1}}),
    ("/invalidate", {"pattern": "edge:*"}),
    ("/warm-up", {"keys": ["edge:1"]}),
]


@pytest.fixture
async def edge_client(make_client: MakeClient, config_factory: Any) -> Client:
    return await make_client(config_factory(server={"body_timeout": BODY_TIMEOUT}))


async def stored(client: Client, key: str = "edge:1") -> bool:
    resp = await client.get(f"/cache/{key}")
    assert resp.status == 200
    return bool((await resp.json())["hit"])


async def raw_exchange(
    client: Client,
    head: bytes,
    body_parts: list[tuple[float, bytes]],
    timeout: float,
    *,
    until_closed: bool = False,
) -> tuple[bytes, float]:
    """Send ``head``, then each body part after its delay; the response (or, with
    ``until_closed``, every byte until the server closes) and the seconds it took."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    start = time.monotonic()
    try:
        writer.write(head)
        await writer.drain()

        async def feed() -> None:
            for delay, part in body_parts:
                await asyncio.sleep(delay)
                writer.write(part)
                await writer.drain()

        feeding = asyncio.create_task(feed())
        try:
            async with asyncio.timeout(timeout):
                answer = await (reader.read() if until_closed else read_response(reader))
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
        return answer, time.monotonic() - start
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def status_and_error(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith("application/json"), answer
    payload = orjson.loads(body)
    assert set(payload) == {"error"}, payload
    assert set(payload["error"]) == {"code", "message"}, payload
    return status, payload["error"]


# -- item 13: a body must be JSON, so that no web page can write with a simple request ----


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/json-seq",
        "application/json; charset=latin-1",
    ],
)
@pytest.mark.parametrize(("path", "payload"), POSTS, ids=[p for p, _ in POSTS])
async def test_a_body_that_is_not_json_is_refused_with_415(
    edge_client: Client, check_error: CheckError, content_type: str, path: str, payload: Any
) -> None:
    resp = await edge_client.post(
        path, data=orjson.dumps(payload), headers={"Content-Type": content_type}
    )
    assert resp.status == 415
    assert (await check_error(resp))["code"] == "unsupported_media_type"
    assert not await stored(edge_client)


async def test_a_body_without_a_content_type_is_refused_with_415(
    edge_client: Client, check_error: CheckError
) -> None:
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(SET)
    )
    answer, _ = await raw_exchange(edge_client, head + SET, [], ANSWER_WITHIN)
    status, error = status_and_error(answer)
    assert (status, error["code"]) == (415, "unsupported_media_type")
    assert not await stored(edge_client)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"],
)
async def test_json_bodies_are_accepted_with_or_without_the_utf8_charset(
    edge_client: Client, content_type: str
) -> None:
    resp = await edge_client.post("/cache", data=SET, headers={"Content-Type": content_type})
    assert resp.status == 200, await resp.text()
    assert await stored(edge_client)


# -- item 11: a Content-Encoding the body does not have ---------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP"])
async def test_a_body_not_encoded_as_it_says_is_a_400(
    edge_client: Client, check_error: CheckError, encoding: str
) -> None:
    resp = await edge_client.post(
        "/cache",
        data=SET,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert resp.status == 400
    assert (await check_error(resp))["code"] == "invalid_body"
    assert not await stored(edge_client)


@pytest.mark.parametrize("encoding", ["compress", "x-custom", "gzip, deflate"])
async def test_a_content_encoding_the_server_does_not_decode_is_a_415(
    edge_client: Client, check_error: CheckError, encoding: str
) -> None:
    # Else the coded bytes would be read as if they were the JSON.
    resp = await edge_client.post(
        "/cache",
        data=SET,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert resp.status == 415
    assert (await check_error(resp))["code"] == "unsupported_media_type"
    assert not await stored(edge_client)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes)],
)
async def test_a_compressed_body_is_still_read(
    edge_client: Client, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    resp = await edge_client.post(
        "/cache",
        data=compress(SET),
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert resp.status == 200, await resp.text()
    assert await stored(edge_client)


# -- item 12: a body too large or too slow ----------------------------------------------


async def test_a_declared_length_above_the_limit_is_a_413_before_the_body_is_read(
    edge_client: Client,
) -> None:
    # The head alone, no body: an answer can only come from the declared length.
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (MAX_REQUEST + 1)
    )
    answer, _ = await raw_exchange(edge_client, head, [], ANSWER_WITHIN + BODY_TIMEOUT)
    status, error = status_and_error(answer)
    assert (status, error["code"]) == (413, "request_too_large")
    assert str(MAX_REQUEST) in error["message"]


async def test_a_body_at_the_limit_is_read(edge_client: Client) -> None:
    body = SET[:-1] + b" " * (MAX_REQUEST - len(SET)) + b"}"
    assert len(body) == MAX_REQUEST
    resp = await edge_client.post("/cache", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()


async def test_a_body_that_stops_arriving_is_a_408_and_the_connection_closes(
    edge_client: Client,
) -> None:
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000\r\n\r\n"
    )
    answer, took = await raw_exchange(edge_client, head, [(0, b"{")], 60, until_closed=True)
    status, error = status_and_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")
    # Answered at the timeout, closed at most the lingering time later (aiohttp's 10 s here).
    assert BODY_TIMEOUT <= took < BODY_TIMEOUT + 15
    assert not await stored(edge_client)


async def test_the_body_timeout_bounds_the_whole_body_not_each_chunk(
    edge_client: Client,
) -> None:
    # A byte every 0.2 s never leaves a gap of BODY_TIMEOUT, yet the whole body is late.
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(SET)
    )
    parts = [(0.2, bytes([byte])) for byte in SET]  # about 4 s in all
    assert 0.2 * len(parts) > 3 * BODY_TIMEOUT
    answer, took = await raw_exchange(edge_client, head, parts, 60)
    status, error = status_and_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")
    assert took < 0.2 * len(parts) + 1
    assert not await stored(edge_client)


async def test_a_slow_chunked_body_is_a_408_too(edge_client: Client) -> None:
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer, _ = await raw_exchange(edge_client, head, [(0, b"1\r\n{\r\n")], 60)
    status, error = status_and_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")


async def test_a_bad_chunk_mid_body_is_answered_within_the_body_timeout(
    edge_client: Client,
) -> None:
    # aiohttp drops a body whose chunk framing breaks after it was handed on, without
    # telling its reader: the body timeout is what answers it (408), not a hang.
    head = (
        b"POST /cache HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
    )
    answer, took = await raw_exchange(edge_client, head, [(0.2, b"zz\r\n")], 60)
    status, error = status_and_error(answer)
    assert 400 <= status < 500, error
    assert took < BODY_TIMEOUT + ANSWER_WITHIN
    assert not await stored(edge_client)


def test_body_timeout_must_be_positive(config_factory: Any) -> None:
    from cache_core import ConfigError
    from cache_server import create_app

    with pytest.raises(ConfigError, match=r"server\.body_timeout"):
        create_app(config_factory(server={"body_timeout": 0}), env={})


async def test_the_document_lists_the_new_refusals(edge_client: Client) -> None:
    document = await (await edge_client.get("/openapi.json")).json()
    for path, _ in POSTS:
        answers = document["paths"][path]["post"]["responses"]
        assert {"408", "413", "415"} <= set(answers), path
        assert "1 s" in answers["408"]["description"]  # server.body_timeout, filled in
        assert str(MAX_REQUEST) in answers["413"]["description"]
    assert "403" in document["paths"]["/stats"]["get"]["responses"]
