"""The async client: the agent's method names, over the HTTP API.

One aiohttp session per client, opened at the first call in the running event loop (so a
client can be built anywhere, a module's top level included) and kept until
:meth:`AsyncCacheClient.close`: its pooled connections are the point of keeping a client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
from yarl import URL

from cache_client.errors import (
    ConnectionFailedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    error_from,
    error_from_answer,
)
from cache_client.models import Hit
from cache_client.paths import key_path
from cache_client.retry import RetryPolicy
from cache_client.settings import Pool, Timeouts
from cache_core.errors import CacheError, InvalidKeyError, InvalidValueError, TierUnavailableError
from cache_core.warmup import WarmUpReport

__all__ = ["DEFAULT_URL", "AsyncCacheClient"]

log = logging.getLogger("cache_client")

DEFAULT_URL = "http://127.0.0.1:8015"
_VERSION = "0.1.0"
_JSON_BODY = {"Content-Type": "application/json"}
# aiohttp's own limits on an answer's header lines, written out: the server's headers are
# a handful of short ones.
_MAX_LINE = 8190
_READ_BUFFER = 2**16

Check = Callable[[dict[str, Any]], None]


def _names(what: str, names: Sequence[str]) -> list[str]:
    # A lone string is a sequence of characters: taken as names, it would be one per letter.
    if isinstance(names, str):
        raise TypeError(f"{what} must be a sequence of strings, not a string")
    return list(names)


def _key(key: object) -> str:
    # The path cannot carry an empty key (``/cache/`` is another route): refused here, in
    # the words the agent uses, rather than answered with a 404.
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key must be a non-empty string")
    return key


class AsyncCacheClient:
    """The HTTP API with the in-process agent's names: ``get``, ``set``, ``get_many``, ...

    ``token`` is sent as ``Authorization: Bearer <token>``; a token with a namespace on
    the server sees and names its keys without the namespace, as it set them. Use as
    ``async with AsyncCacheClient(url) as cache:`` or call :meth:`close`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        pool: Pool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        base = URL(url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"url must be http:// or https:// with a host, got {url!r}")
        if base.query_string or base.fragment:
            raise ValueError(f"url must have no query or fragment, got {url!r}")
        # A path of its own is kept (a server behind a proxy under /cache-api/).
        self.url = str(base).rstrip("/")
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.retry = retry if retry is not None else RetryPolicy()
        self.pool = pool if pool is not None else Pool()
        self._headers = {"Accept": "application/json", "User-Agent": f"cache-client/{_VERSION}"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl_context = ssl_context
        self._rng = rng if rng is not None else random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._session = aiohttp.ClientSession(
                connector=self.pool.connector(self._ssl_context),
                connector_owner=True,
                timeout=self.timeouts.aiohttp(),
                headers=self._headers,
                raise_for_status=False,
                trust_env=False,  # HTTP(S)_PROXY ignored: the service is called directly
                auto_decompress=True,
                max_line_size=_MAX_LINE,
                max_field_size=_MAX_LINE,
                read_bufsize=_READ_BUFFER,
            )
        return self._session

    async def close(self) -> None:
        """Close the pooled connections; the client takes no more calls."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- requests -------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, payload: Any = None, check: Check | None = None
    ) -> dict[str, Any]:
        """The answer's JSON object, after the retries the policy allows; ``check`` may
        raise on a 200 answer (a batch-get's per-key errors), and that error is retried
        like an error answer."""
        body = None
        if payload is not None:
            try:
                body = orjson.dumps(payload)
            except (TypeError, orjson.JSONEncodeError) as exc:
                raise InvalidValueError(f"value is not JSON-serialisable: {exc}") from None
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                answer = await self._attempt(method, path, body)
                if check is not None:
                    check(answer)
            except CacheError as error:
                wait = self.retry.next_delay(attempt, time.monotonic() - started, error, self._rng)
                if wait is None:
                    if attempt > 1:
                        error.add_note(f"{method} {path}: gave up after {attempt} attempts")
                    raise
                log.info(
                    "cache_client_retry",
                    extra={"attempt": attempt, "code": error.code, "delay": round(wait, 3)},
                )
                await asyncio.sleep(wait)
                attempt += 1
            else:
                return answer

    async def _attempt(self, method: str, path: str, body: bytes | None) -> dict[str, Any]:
        session = self._open()
        target = URL(self.url + path, encoded=True)  # the path is encoded once, by key_path
        try:
            async with session.request(
                method, target, data=body, headers=_JSON_BODY if body is not None else None
            ) as response:
                status = response.status
                raw = await response.read()
        # aiohttp's timeouts are TimeoutErrors, some of them connection errors too: first.
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"{method} {self.url}{path}: no answer within the timeouts ({self.timeouts})"
            ) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionFailedError(f"{method} {self.url}{path}: {exc}") from exc
        except aiohttp.ClientError as exc:  # an answer that is not HTTP
            raise TransportError(f"{method} {self.url}{path}: {exc}") from exc
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = None
        if status >= 400:
            raise error_from_answer(status, data)
        if not isinstance(data, dict):
            raise ServerError(
                "http_error", f"{method} {path}: HTTP {status} answered no JSON object", status
            )
        return data

    # -- reads ----------------------------------------------------------------------------

    async def lookup(self, key: str) -> Hit | None:
        """The value of ``key`` and the tier that answered, or None on a miss."""
        answer = await self._call("GET", key_path(_key(key)))
        return Hit(answer["value"], answer["tier"]) if answer["hit"] else None

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` on a miss."""
        hit = await self.lookup(key)
        return default if hit is None else hit.value

    async def get_many(
        self, keys: Sequence[str], failures: dict[str, CacheError] | None = None
    ) -> dict[str, Any]:
        """Each key's value (None for a miss), in one request.

        When L2 is away the server answers what its L1 holds and an error for each other
        key. Without ``failures``, as the agent's ``get_many``, that is a
        :class:`TierUnavailableError` (retried like a 503); with it, each such key is None
        in the answer and its error is put in ``failures``. An entry L2 holds but cannot
        read is None either way (its ``corrupt_entry`` in ``failures`` when given)."""
        errors: dict[str, CacheError] = {}

        def check(answer: dict[str, Any]) -> None:
            errors.clear()
            for key, error in answer.get("errors", {}).items():
                errors[key] = error_from(error["code"], error["message"])
            if failures is None:
                for error in errors.values():
                    if isinstance(error, TierUnavailableError):
                        raise error

        answer = await self._call(
            "POST", "/cache/batch-get", {"keys": _names("keys", keys)}, check=check
        )
        if failures is not None:
            failures.update(errors)
        results: dict[str, Any] = answer["results"]
        return results

    # -- writes ---------------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
        dependencies: Sequence[str] = (),
    ) -> str:
        """Store ``value`` under ``key``; returns the name of the strategy that wrote it.
        ``ttl`` is seconds or a ``ttl_presets`` name; ``strategy`` a name the server has
        (a :class:`~cache_core.CacheStrategy` is one)."""
        payload: dict[str, Any] = {"key": _key(key), "value": value}
        if ttl is not None:
            payload["ttl"] = ttl
        if strategy is not None:
            payload["strategy"] = strategy
        if tags:
            payload["tags"] = _names("tags", tags)
        if dependencies:
            payload["dependencies"] = _names("dependencies", dependencies)
        answer = await self._call("POST", "/cache", payload)
        return str(answer["strategy"])

    async def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | str | None = None,
        strategy: str | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Store every item in one request (all validated before anything is written);
        returns the count."""
        payload: dict[str, Any] = {"items": dict(items)}
        if ttl is not None:
            payload["ttl"] = ttl
        if strategy is not None:
            payload["strategy"] = strategy
        if tags:
            payload["tags"] = _names("tags", tags)
        answer = await self._call("POST", "/cache/batch-set", payload)
        return int(answer["count"])

    # -- deletes and invalidation ---------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (and its dependents); True if ``key`` was cached."""
        answer = await self._call("DELETE", key_path(_key(key)))
        return bool(answer["deleted"])

    async def invalidate(
        self,
        *,
        pattern: str | None = None,
        tags: Sequence[str] = (),
        event: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> int:
        """Any combination of a glob, tags and an event; each removed key counted once."""
        payload: dict[str, Any] = {}
        if pattern is not None:
            payload["pattern"] = pattern
        if tags:
            payload["tags"] = _names("tags", tags)
        if event is not None:
            payload["event"] = event
        if context:
            payload["context"] = dict(context)
        answer = await self._call("POST", "/invalidate", payload)
        return int(answer["invalidated_count"])

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a Redis glob (``user:*:profile``); returns how many."""
        return await self.invalidate(pattern=pattern)

    async def invalidate_by_tags(self, tags: Sequence[str]) -> int:
        """Remove every key carrying ANY of ``tags``; returns how many."""
        names = _names("tags", tags)
        if not names:  # the server needs one of the three; the agent removes nothing
            return 0
        return await self.invalidate(tags=names)

    async def invalidate_by_event(
        self, event: str, context: Mapping[str, Any] | None = None
    ) -> int:
        """Remove what ``event`` reaches, placeholders filled from ``context``."""
        return await self.invalidate(event=event, context=context)

    # -- warm-up, stats, health -----------------------------------------------------------

    async def warm_up_report(
        self, keys: Sequence[str], compute_strategy: str = "parallel"
    ) -> WarmUpReport:
        """Warm ``keys`` (from L2 or a loader); each key not cached after it is in
        ``failures`` with its error (``NoLoaderError``, ``NotLoadedError``, ...)."""
        payload = {"keys": _names("keys", keys), "compute_strategy": compute_strategy}
        answer = await self._call("POST", "/warm-up", payload)
        failures = {
            key: error_from(error["code"], error["message"])
            for key, error in answer.get("failures", {}).items()
        }
        return WarmUpReport(
            warmed=int(answer["warmed_count"]),
            requested=int(answer["requested"]),
            failures=failures,
        )

    async def warm_up(self, keys: Sequence[str], compute_strategy: str = "parallel") -> int:
        """Warm ``keys``; how many are cached after the call."""
        return (await self.warm_up_report(keys, compute_strategy)).warmed

    async def fetch_stats(self) -> dict[str, Any]:
        """``GET /stats``: the agent's :meth:`~cache_core.CachingAgent.fetch_stats` (L2's
        keys counted now). An admin token's call: a namespaced one gets ForbiddenError."""
        return await self._call("GET", "/stats")

    async def health(self) -> dict[str, Any]:
        """``GET /health``: status ``ok`` or ``degraded``, with reasons; needs no token."""
        return await self._call("GET", "/health")
