"""Structured logs: one JSON object a line (or ``key=value`` on a terminal), each with the
event name, the request id of the request it belongs to, the trace and span ids while a
span is active, and the event's fields.

Events are logged as ``log.info("cache_hit", extra={"tier": "l1", ...})``, or through
:mod:`cache_core.logs` as the seed writes them, ``logger.info("cache_hit", tier="l1")``:
the message is the event name (the seed's ``cache_hit``, ``cache_miss``, ``cache_error``,
plus ``alert_raised``, ``alert_cleared``, ...), the extras are its fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record is an event field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "request_id"}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record logged while it is handled, and the
    active span's ``trace_id`` and ``span_id`` (hex, as trace backends show them) while
    one is: a log line found by its request leads to its trace, and back."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        line.update(_fields(record))
        if record.exc_info:
            # An event's own ``error`` field (the seed's ``error=str(e)``) is kept.
            line["traceback" if "error" in line else "error"] = self.formatException(
                record.exc_info
            )
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.getMessage()]
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            parts.append(f"request_id={request_id}")
        parts.extend(f"{k}={v}" for k, v in _fields(record).items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
"""``monitoring.log_level`` / ``serve --log-level`` names (cache_server.settings.LOG_LEVELS)."""


def configure(log_format: str, level: str | int = logging.INFO) -> None:
    """Route every log line at ``level`` (a :data:`LEVELS` name or a stdlib level) and
    above to stderr in ``log_format`` (json, text, or auto: text on a terminal, json
    otherwise)."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level] if isinstance(level, str) else level)
