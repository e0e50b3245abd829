"""Auto-pipelining: what concurrent requests ask of the engine in the same event-loop tick
goes to it together. Reads become one MGET (the tier's), pipelines one pipeline (here).

:class:`TickBatcher` is the mechanism: items submitted in one tick are handed together to
one call, once every task made ready in that tick has run, and each submitter gets its own
result back. The call runs as a task of its own, so a submitter that gives up (a timeout)
cancels only its wait; when every submitter of a round gave up the call is cancelled too,
which drops its connection (redis-py never pools one with a reply unread). A submitter
alone in its tick sends on its own task (no hop through another: two loop iterations
fewer for a lone request). (Sending a lone request at once, with no tick waited for, was
measured too: within the noise of the L2 bench, alone and with 50 tasks, and it splits
a tick's reads into two MGETs.)

:class:`CoalescingClient` applies it to pipelines: each request still builds its own
pipeline (a redis-py ``Pipeline``, so every command method and reply parser is the
library's); only ``execute`` differs: the commands join the round, one real pipeline sends
the round's commands in order, and each request gets its slice of the replies. A request's
commands stay together and in order; requests are served in the order they executed. A
command error is raised to the request it belongs to (as a lone pipeline would); a
connection error to every request of the round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

T = TypeVar("T")
R = TypeVar("R")


class TickBatcher(Generic[T, R]):
    """``await submit(item)``: ``run`` gets the items of one tick (at most ``limit`` a
    call) and returns one result an item; a result that is an exception is raised to its
    submitter alone, an exception from ``run`` to every submitter of the call."""

    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R | Exception]]], limit: int = 0
    ) -> None:
        self._run = run
        self._limit = limit
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._rounds: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, waiter))
        if len(self._queue) > 1:
            return await waiter  # the tick's first submitter sends it
        try:
            await asyncio.sleep(0)  # the tick: every task made ready in it submits meanwhile
        except BaseException:
            # Given up: its own item is not sent; the others of its tick go all the same.
            self._queue = [(queued, w) for queued, w in self._queue if w is not waiter]
            waiter.cancel()
            if self._queue:
                loop.call_soon(self._send)
            raise
        if len(self._queue) != 1 or self._queue[0][1] is not waiter:
            if self._queue:  # a round of several: a task of its own, one giving up is alone
                self._send()
            return await waiter  # (or the batcher was cancelled meanwhile: so is this)
        # Alone in its tick: sent on the submitter's own task, no hop through another.
        self._queue = []
        (result,) = await self._run([item])
        if isinstance(result, Exception):
            raise result
        return result

    def _send(self) -> None:
        queued, self._queue = self._queue, []
        step = self._limit or len(queued)
        for start in range(0, len(queued), max(step, 1)):
            self._start(queued[start : start + step])

    def _start(self, queued: list[tuple[T, asyncio.Future[R]]]) -> None:
        round_ = asyncio.create_task(self._execute(queued))
        self._rounds.add(round_)
        round_.add_done_callback(self._rounds.discard)
        waiters = [waiter for _, waiter in queued]

        def abandon(waiter: asyncio.Future[R]) -> None:
            if waiter.cancelled() and not round_.done() and all(w.done() for w in waiters):
                round_.cancel()

        for waiter in waiters:
            waiter.add_done_callback(abandon)

    async def _execute(self, queued: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in queued])
        except BaseException as exc:
            for _, waiter in queued:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, waiter), result in zip(queued, results, strict=True):
            if waiter.done():  # its submitter gave up
                continue
            if isinstance(result, Exception):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    def cancel(self) -> None:
        """Cancel the calls in flight and the waits not yet sent (on close)."""
        for round_ in list(self._rounds):
            round_.cancel()
        for _, waiter in self._queue:
            waiter.cancel()
        self._queue.clear()


_Commands = tuple[list[Any], bool]
"""A pipeline's command stack and whether a command error raises."""


class CoalescingClient:
    """``client`` whose non-transactional pipelines coalesce; everything else is the
    client's own."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self.batcher: TickBatcher[_Commands, list[Any]] = TickBatcher(self._execute)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if transaction:
            return self._client.pipeline(transaction=True, shard_hint=shard_hint)
        return _CoalescedPipeline(
            self, self._client.connection_pool, self._client.response_callbacks, False, shard_hint
        )

    async def _execute(self, rounds: list[_Commands]) -> list[list[Any] | Exception]:
        if len(rounds) == 1 and len(rounds[0][0]) == 1:
            # One command alone (a lone write's script call): sent as a command, since
            # redis-py's pipeline machinery costs about a third of a raw SET's time more.
            (args, options), raise_on_error = rounds[0][0][0], rounds[0][1]
            try:
                return [[await self._client.execute_command(*args, **options)]]  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return [exc if raise_on_error else [exc]]
        pipe = self._client.pipeline(transaction=False)
        for commands, _ in rounds:
            pipe.command_stack.extend(commands)
        replies = await pipe.execute(raise_on_error=False)
        out: list[list[Any] | Exception] = []
        start = 0
        for commands, raise_on_error in rounds:
            part = replies[start : start + len(commands)]
            start += len(commands)
            error = next((r for r in part if isinstance(r, Exception)), None)
            out.append(error if raise_on_error and error is not None else part)
        return out

    async def aclose(self) -> None:
        self.batcher.cancel()
        await self._client.aclose()


class _CoalescedPipeline(Pipeline):
    def __init__(self, coalescer: CoalescingClient, *args: Any) -> None:
        super().__init__(*args)
        self._coalescer = coalescer

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self.command_stack = self.command_stack, []
        if not commands:
            return []
        return await self._coalescer.batcher.submit((commands, raise_on_error))


__all__ = ["CoalescingClient", "TickBatcher"]
