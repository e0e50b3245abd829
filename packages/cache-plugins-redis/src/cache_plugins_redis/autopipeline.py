"""Auto-pipelining of writes: pipelines executed in the same event-loop tick, by any
number of concurrent requests, go to the engine as one pipeline.

Each request still builds its own pipeline (a redis-py ``Pipeline``, so every command
method and reply parser is the library's); only ``execute`` differs: the commands join a
queue, and once every task made ready in this tick has run, one real pipeline sends the
whole queue in order and hands each request its slice of the replies. With 50 requests
writing at once that is one round trip and one trip through the client's machinery
instead of 50. A request's commands stay together and in order; requests are served in
the order they executed. A command error is raised to the request it belongs to (as a
lone pipeline would); a connection error to every request of the round.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

_Queued = tuple[list[Any], "asyncio.Future[list[Any]]", bool]


class CoalescingClient:
    """``client`` whose non-transactional pipelines coalesce; everything else is the
    client's own."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queue: list[_Queued] = []
        self._rounds: set[asyncio.Task[None]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if transaction:
            return self._client.pipeline(transaction=True, shard_hint=shard_hint)
        return _CoalescedPipeline(
            self, self._client.connection_pool, self._client.response_callbacks, False, shard_hint
        )

    async def submit(self, commands: list[Any], raise_on_error: bool) -> list[Any]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, waiter, raise_on_error))
        if len(self._queue) == 1:
            loop.call_soon(self._send)
        return await waiter

    def _send(self) -> None:
        queued, self._queue = self._queue, []
        # A task of its own: a request that gives up (a timeout) cancels its wait, not the
        # others' writes. When every request of the round gave up the round is cancelled
        # too, which drops its connection (redis-py never pools one with a reply unread).
        round_ = asyncio.create_task(self._execute(queued))
        self._rounds.add(round_)
        round_.add_done_callback(self._rounds.discard)
        waiters = [waiter for _, waiter, _ in queued]

        def abandon(waiter: asyncio.Future[list[Any]]) -> None:
            if waiter.cancelled() and not round_.done() and all(w.done() for w in waiters):
                round_.cancel()

        for waiter in waiters:
            waiter.add_done_callback(abandon)

    async def _execute(self, queued: list[_Queued]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for commands, _, _ in queued:
            pipe.command_stack.extend(commands)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, waiter, _ in queued:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for commands, waiter, raise_on_error in queued:
            part = replies[start : start + len(commands)]
            start += len(commands)
            if waiter.done():  # its request gave up
                continue
            error = next((r for r in part if isinstance(r, Exception)), None)
            if raise_on_error and error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(part)

    async def aclose(self) -> None:
        for round_ in list(self._rounds):
            round_.cancel()
        for _, waiter, _ in self._queue:
            waiter.cancel()
        self._queue.clear()
        await self._client.aclose()


class _CoalescedPipeline(Pipeline):
    def __init__(self, coalescer: CoalescingClient, *args: Any) -> None:
        super().__init__(*args)
        self._coalescer = coalescer

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self.command_stack = self.command_stack, []
        if not commands:
            return []
        return await self._coalescer.submit(commands, raise_on_error)


__all__ = ["CoalescingClient"]
