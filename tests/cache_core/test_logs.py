"""cache_core.logs: the description's logging example, as written, through the stdlib and
the server's formatters."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import cache_core
from cache_core.logs import StructuredLogger, get_logger
from cache_server.logs import JsonFormatter, RequestIdFilter, TextFormatter


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines of everything the ``caching_agent`` logger logs at debug and above."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    target = logging.getLogger("caching_agent")
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        target.removeHandler(handler)
        target.setLevel(logging.NOTSET)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_descriptions_example_runs_as_written(captured: io.StringIO) -> None:
    from cache_core.logs import logger

    try:
        raise ConnectionError("L2 unreachable")
    except ConnectionError as e:
        # Monitoring > Logging, verbatim:
        logger.info("cache_hit", key="user:123", tier="l1")
        logger.warning("cache_miss", key="user:456")
        logger.error("cache_error", error=str(e))

    hit, miss, error = lines(captured)
    assert {k: hit[k] for k in ("level", "event", "key", "tier")} == {
        "level": "info",
        "event": "cache_hit",
        "key": "user:123",
        "tier": "l1",
    }
    assert {k: miss[k] for k in ("level", "event", "key")} == {
        "level": "warning",
        "event": "cache_miss",
        "key": "user:456",
    }
    assert {k: error[k] for k in ("level", "event", "error")} == {
        "level": "error",
        "event": "cache_error",
        "error": "L2 unreachable",
    }
    assert {hit["logger"], miss["logger"], error["logger"]} == {"caching_agent"}


def test_the_logger_is_exported_by_the_package() -> None:
    from cache_core.logs import logger

    assert cache_core.logger is logger
    assert cache_core.get_logger is get_logger


def test_the_fields_are_record_attributes_for_any_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = get_logger("caching_agent.test")
    with caplog.at_level(logging.INFO, logger="caching_agent.test"):
        log.info("cache_hit", key="user:1", tier="l2", extra={"source": "test"})
    (record,) = caplog.records
    assert record.getMessage() == "cache_hit"
    assert (record.__dict__["key"], record.__dict__["tier"]) == ("user:1", "l2")
    assert record.__dict__["source"] == "test"


def test_the_text_format_carries_the_fields() -> None:
    log = get_logger("caching_agent.text")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    log.logger.addHandler(handler)
    try:
        log.warning("cache_miss", key="user:456")
    finally:
        log.logger.removeHandler(handler)
    assert out.getvalue().split()[1:] == ["warning", "cache_miss", "key=user:456"]


def test_stdlib_keywords_keep_their_meaning(captured: io.StringIO) -> None:
    from cache_core.logs import logger

    try:
        raise ValueError("bad frame")
    except ValueError as e:
        logger.exception("cache_error", error=str(e))
    (line,) = lines(captured)
    assert line["error"] == "bad frame"  # the event's own field is kept ...
    assert "ValueError: bad frame" in line["traceback"]  # ... beside the traceback


def test_the_record_names_the_callers_line(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("caching_agent.where")
    with caplog.at_level(logging.INFO, logger="caching_agent.where"):
        log.info("here", key="k")
    (record,) = caplog.records
    assert record.funcName == "test_the_record_names_the_callers_line"
    assert record.filename == "test_logs.py"


def test_a_field_named_like_a_record_attribute_does_not_lose_the_line(
    captured: io.StringIO,
) -> None:
    from cache_core.logs import logger

    logger.info("loaded", name="profile", module="users", args="--all")
    (line,) = lines(captured)
    assert line["event"] == "loaded"
    assert (line["name_"], line["module_"], line["args_"]) == ("profile", "users", "--all")


def test_a_disabled_level_never_builds_the_fields(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cache_core.logs import logger

    logging.getLogger("caching_agent").setLevel(logging.INFO)

    def boom(*_: Any) -> Any:
        raise AssertionError("process called for a disabled level")

    monkeypatch.setattr(StructuredLogger, "process", boom)
    logger.debug("cache_hit", key="user:1", tier="l1")
    assert captured.getvalue() == ""


async def test_an_in_process_l1_hit_pays_nothing_for_logging(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await make_agent()
    await agent.set("user:1:profile", {"name": "Alice"})
    calls: list[str] = []
    real = logging.Logger.isEnabledFor

    def counted(self: logging.Logger, level: int) -> bool:
        calls.append(self.name)
        return real(self, level)

    monkeypatch.setattr(logging.Logger, "isEnabledFor", counted)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        for _ in range(10):
            assert await agent.get("user:1:profile") == {"name": "Alice"}
    finally:
        root.setLevel(previous)
    assert calls == []
