"""The ``http`` loader: values fetched from another service with a GET.

::

    loaders:
      http:
        url: "http://profiles:8000/users/{user_id}"
        match: ["user:{user_id}:profile"]
        timeout: 2
        max_concurrency: 16

``{placeholders}`` in ``url`` are filled from what the matching template captured (each
value percent-encoded), ``{key}`` with the whole key. A 200 answer's JSON body is the value,
404 means there is none (cached negatively), anything else is a loader failure.
Connections are pooled and bounded by ``max_concurrency``; each GET by ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from attrs import define, field

from cache_core import NotFound
from cache_core.templates import PLACEHOLDER


class HttpLoader:
    PLUGIN_NAME: ClassVar[str] = "http"

    @define(frozen=True)
    class Options:
        url: str
        match: list[str] = field(factory=list)
        timeout: float = 2.0
        max_concurrency: int = 16
        headers: dict[str, str] = field(factory=dict)

    def __init__(self, options: HttpLoader.Options, context: object = None) -> None:
        if not options.url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected http:// or https://, got {options.url!r}")
        if options.timeout <= 0 or options.max_concurrency <= 0:
            raise ValueError("timeout and max_concurrency must be greater than 0")
        needed = set(PLACEHOLDER.findall(options.url)) - {"key"}
        for template in options.match:
            missing = needed - set(PLACEHOLDER.findall(template))
            if missing:
                raise ValueError(
                    f"url needs {', '.join(sorted(missing))}, which match template "
                    f"{template!r} does not capture"
                )
        if needed and not options.match:
            raise ValueError("url has placeholders: give match templates that capture them")
        self.match = list(options.match)
        self._options = options
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(options.max_concurrency)

    async def start(self) -> None:
        opts = self._options
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=opts.timeout, connect=opts.timeout),
            connector=aiohttp.TCPConnector(limit=opts.max_concurrency, ttl_dns_cache=60),
            headers={"Accept": "application/json", **opts.headers},
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, key: str, ids: Mapping[str, str]) -> str:
        values = {**ids, "key": key}
        return PLACEHOLDER.sub(lambda m: quote(str(values[m.group(1)]), safe=""), self._options.url)

    async def load(self, key: str, ids: Mapping[str, str]) -> Any:
        if self._session is None:
            raise RuntimeError("the http loader is not started")
        url = self.url_for(key, ids)
        try:
            async with self._slots, self._session.get(url) as resp:
                if resp.status == 404:
                    raise NotFound(key)
                if resp.status != 200:
                    raise RuntimeError(f"GET {url} answered {resp.status}")
                return await resp.json(content_type=None)
        except TimeoutError:
            # Named here: the caller's message would otherwise name loading.timeout.
            raise TimeoutError(
                f"GET {url} took longer than loaders.http.timeout ({self._options.timeout} s)"
            ) from None
