"""The lines of a long operation (cache_core.progress): when they come, what they count,
how an operation that fails or is cancelled ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cache_core import progress
from cache_core.progress import advance, long_operation


@pytest.fixture
def caught(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    monkeypatch.setattr(progress, "LOG_AFTER", 0.01)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.01)
    caplog.set_level(logging.INFO, logger="cache_core.progress")
    return caplog


async def test_an_operation_is_logged_once_it_has_run_a_while(
    caught: pytest.LogCaptureFixture,
) -> None:
    with long_operation("sweep", pattern="a:*"):
        await asyncio.sleep(0.005)
    assert caught.messages == []  # ended before LOG_AFTER
    with long_operation("sweep", pattern="a:*") as running:
        advance(3)
        await asyncio.sleep(0.035)
        advance(2)
    assert caught.messages[0] == "long_operation_started"
    assert caught.messages.count("long_operation_progress") >= 1
    assert caught.messages[-1] == "long_operation_finished"
    assert running.done == 5


@pytest.mark.parametrize(
    ("error", "outcome"), [(ValueError, "failed"), (asyncio.CancelledError, "cancelled")]
)
async def test_an_operation_that_ends_badly_says_so(
    caught: pytest.LogCaptureFixture,
    caplog: pytest.LogCaptureFixture,
    error: type[BaseException],
    outcome: str,
) -> None:
    async def failing() -> None:
        with long_operation("sweep"):
            await asyncio.sleep(0.02)
            raise error()

    with pytest.raises(error):
        await failing()
    finished = [r for r in caplog.records if r.msg == "long_operation_finished"]
    assert [vars(r)["outcome"] for r in finished] == [outcome]


async def test_an_operation_within_another_counts_for_the_outer_one(
    caught: pytest.LogCaptureFixture,
) -> None:
    with long_operation("event_invalidation") as outer:
        with long_operation("pattern_invalidation") as inner:
            advance(4)
        assert inner is outer
        await asyncio.sleep(0.02)
    assert outer.done == 4
    assert caught.messages.count("long_operation_finished") == 1


def test_advance_outside_any_operation_does_nothing() -> None:
    advance(10)  # no operation running: nothing to count, nothing raised
    # An operation needs a running loop to time itself.
    with pytest.raises(RuntimeError), long_operation("sweep"):
        pass
