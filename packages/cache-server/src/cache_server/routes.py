"""The eight endpoints of the seed, plus /health.

A GET that hits splices the stored JSON bytes into the response without decoding them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
from aiohttp import hdrs, web

from cache_core import CacheError, CachingAgent
from cache_server.auth import NAMESPACE
from cache_server.errors import RequestError
from cache_server.keys import AGENT, TELEMETRY
from cache_server.middleware import BODY, AtOnce
from cache_server.models import (
    BatchGetRequest,
    BatchSetRequest,
    InvalidateRequest,
    SetRequest,
    WarmUpRequest,
    parse_body,
)
from cache_server.openapi import openapi_document
from cache_server.settings import ExportSettings, ServerSettings
from cache_server.telemetry import PROMETHEUS_CONTENT_TYPE

log = logging.getLogger("cache_server.routes")
routes = web.RouteTableDef()

_JSON = "application/json"
_MISS_TAIL = b',"value":null,"hit":false,"tier":null}'
_HIT_TAILS = {tier: b',"hit":true,"tier":"%s"}' % tier.encode() for tier in ("l1", "l2", "loader")}


def _pattern(request: web.Request, key: str) -> str:
    return request.app[AGENT].policies.pattern_of(key)


def _json(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type=_JSON)


def l1_hits(agent: CachingAgent) -> AtOnce:
    """GET /cache/{key}'s first try: the answer when L1 has the key, else None (then
    get_value answers). A plain function, bound to the agent: on an L1 hit, a coroutine to
    create and await, or the agent to fetch from the app, costs about what the lookup does."""
    lookup_l1_tagged = agent.lookup_l1_tagged

    def l1_hit(request: web.Request) -> web.Response | None:
        headers = request.headers
        if hdrs.CACHE_CONTROL in headers and _no_cache(headers[hdrs.CACHE_CONTROL]):
            return None  # L1 skipped: get_value looks further
        key = request.match_info["key"]
        found = lookup_l1_tagged(request[NAMESPACE] + key)
        return None if found is None else _found(request, key, found[0], "l1", found[1], found[2])

    return l1_hit


@routes.get("/cache/{key:.+}")
async def get_value(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    agent = request.app[AGENT]
    control = request.headers.get(hdrs.CACHE_CONTROL)
    if control is not None and _no_cache(control):
        found = await agent.lookup_fresh(request[NAMESPACE] + key)
    else:
        found = await agent.lookup(request[NAMESPACE] + key)
    if found is None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("cache_miss", extra={"key_pattern": _pattern(request, key)})
        return web.Response(body=b'{"key":' + orjson.dumps(key) + _MISS_TAIL, content_type=_JSON)
    data, tier = found
    return _found(request, key, data, tier, *agent.entity_of(request[NAMESPACE] + key, data))


def _no_cache(control: str) -> bool:
    """Whether a request's Cache-Control asks for an answer past L1 (``no-cache``)."""
    return any(part.strip().partition("=")[0].lower() == "no-cache" for part in control.split(","))


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison of ``etag`` with an If-None-Match list (or ``*``)."""
    opaque = etag.removeprefix("W/")
    for given in if_none_match.split(","):
        candidate = given.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def _found(
    request: web.Request, key: str, data: bytes, tier: str, etag: str, ttl: float | None
) -> web.Response:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("cache_hit", extra={"key_pattern": _pattern(request, key), "tier": tier})
    # max-age: what L1 has left of it (a cap below L2's TTL); unknown, a cache revalidates.
    headers = {
        "ETag": etag,
        hdrs.CACHE_CONTROL: "no-cache" if ttl is None else f"max-age={int(ttl)}",
    }
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None and _matches(if_none_match, etag):
        return web.Response(status=304, headers=headers)
    tail = _HIT_TAILS.get(tier) or b',"hit":true,"tier":' + orjson.dumps(tier) + b"}"
    body = b"".join((b'{"key":', orjson.dumps(key), b',"value":', data, tail))
    return web.Response(body=body, content_type=_JSON, headers=headers)


@routes.post("/cache")
async def set_value(request: web.Request) -> web.Response:
    req = parse_body(request.pop(BODY), SetRequest)
    ns = request[NAMESPACE]
    key = req.key
    setting = request.app[AGENT].set(
        ns + key,
        req.value,
        ttl=req.ttl,
        strategy=req.strategy,
        tags=[ns + tag for tag in req.tags],
        dependencies=[ns + dep for dep in req.dependencies],
    )
    # The agent lets go of the decoded value once it is encoded; so must this frame, or a
    # multi-MiB value waits out the L2 round trip beside its bytes.
    del req
    strategy = await setting
    return _json({"success": True, "key": key, "strategy": strategy})


@routes.delete("/cache/{key:.+}")
async def delete_value(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    deleted = await request.app[AGENT].delete(request[NAMESPACE] + key)
    return _json({"success": True, "key": key, "deleted": deleted})


@routes.post("/cache/batch-get")
async def batch_get(request: web.Request) -> web.Response:
    req = parse_body(request.pop(BODY), BatchGetRequest)
    ns = request[NAMESPACE]
    failures: dict[str, CacheError] = {}
    found = await request.app[AGENT].lookup_many([ns + key for key in req.keys], failures)
    parts = []
    hits = 0
    debug = log.isEnabledFor(logging.DEBUG)
    for full_key, hit in found.items():
        key = full_key[len(ns) :]
        if debug:  # every lookup is logged at debug, a batch's too
            if hit is None:
                log.debug("cache_miss", extra={"key_pattern": _pattern(request, key)})
            else:
                log.debug(
                    "cache_hit", extra={"key_pattern": _pattern(request, key), "tier": hit[1]}
                )
        if hit is not None:
            hits += 1
        parts.append(orjson.dumps(key) + b":" + (b"null" if hit is None else hit[0]))
    body = b"".join(
        (
            b'{"results":{',
            b",".join(parts),
            b'},"hits":',
            str(hits).encode(),
            b',"misses":',
            str(len(found) - hits).encode(),
            _errors(failures, ns),
            b"}",
        )
    )
    return web.Response(body=body, content_type=_JSON)


def _errors(failures: dict[str, CacheError], ns: str) -> bytes:
    """``,"errors":{key: error}`` for keys that could not be answered, or nothing."""
    if not failures:
        return b""
    return b',"errors":' + orjson.dumps(_error_objects(failures, ns))


def _error_objects(failures: dict[str, CacheError], ns: str) -> dict[str, dict[str, str]]:
    """Each key's error as the API shows one: ``{"code", "message"}``."""
    return {
        key[len(ns) :]: {"code": exc.code, "message": str(exc)} for key, exc in failures.items()
    }


@routes.post("/cache/batch-set")
async def batch_set(request: web.Request) -> web.Response:
    req = parse_body(request.pop(BODY), BatchSetRequest)
    ns = request[NAMESPACE]
    count = await request.app[AGENT].set_many(
        {ns + key: value for key, value in req.items.items()},
        ttl=req.ttl,
        strategy=req.strategy,
        tags=[ns + tag for tag in req.tags],
    )
    return _json({"success": True, "count": count})


@routes.post("/invalidate")
async def invalidate(request: web.Request) -> web.Response:
    req = parse_body(request.pop(BODY), InvalidateRequest)
    if req.pattern is None and not req.tags and req.event is None:
        raise RequestError("invalid_request", "give at least one of pattern, tags, event")
    ns = request[NAMESPACE]
    count = await request.app[AGENT].invalidate(
        pattern=None if req.pattern is None else ns + req.pattern,
        tags=[ns + tag for tag in req.tags],
        event=req.event,
        context=req.context,
        scope=ns,
    )
    return _json({"success": True, "invalidated_count": count})


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    return _json(await request.app[AGENT].fetch_stats())


@routes.post("/warm-up")
async def warm_up(request: web.Request) -> web.Response:
    req = parse_body(request.pop(BODY), WarmUpRequest)
    ns = request[NAMESPACE]
    report = await request.app[AGENT].warm_up_report(
        [ns + key for key in req.keys], req.compute_strategy
    )
    return _json(
        {
            "success": report.success,
            "warmed_count": report.warmed,
            "requested": report.requested,
            "failures": _error_objects(report.failures, ns),
        }
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    telemetry = request.app[TELEMETRY]
    if (
        telemetry is None
        or not request.app[AGENT].config.section(ExportSettings).prometheus_enabled
    ):
        raise RequestError("not_found", "metrics are not enabled on this server", status=404)
    return web.Response(
        body=telemetry.prometheus_text(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE}
    )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    server = agent.config.section(ServerSettings)
    auth = server.auth_token is not None or bool(server.tokens)
    return _json(openapi_document(agent.config, list(agent.strategies), auth=auth))


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    # The pid tells which worker answered when `serve --workers N` shares the port.
    return _json({**request.app[AGENT].health(), "pid": os.getpid()})
