"""Request bodies as attrs models, structured strictly with cattrs (errors name the field)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from attrs import define, field

from cache_core.config import config_errors, make_converter
from cache_server.errors import RequestError

T = TypeVar("T")

Ttl = float | str | None


@define(frozen=True)
class SetRequest:
    key: str
    value: Any
    ttl: Ttl = None
    strategy: str | None = None
    tags: list[str] = field(factory=list)
    dependencies: list[str] = field(factory=list)


@define(frozen=True)
class BatchGetRequest:
    keys: list[str]


@define(frozen=True)
class BatchSetRequest:
    items: dict[str, Any]
    ttl: Ttl = None
    strategy: str | None = None
    tags: list[str] = field(factory=list)


@define(frozen=True)
class InvalidateRequest:
    pattern: str | None = None
    tags: list[str] = field(factory=list)
    event: str | None = None
    context: dict[str, Any] = field(factory=dict)


@define(frozen=True)
class WarmUpRequest:
    keys: list[str]
    compute_strategy: str = "parallel"


def _make_converter() -> Any:
    conv = make_converter()

    def ttl(value: Any, _: Any) -> Ttl:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"expected seconds or a ttl preset name, got {value!r}")

    conv.register_structure_hook(Ttl, ttl)
    conv.register_structure_hook(Any, lambda value, _: value)
    return conv


_CONVERTER = _make_converter()


_LONG_DIGITS = re.compile(rb"\d{19}")
_INT_RANGE = range(-(2**63), 2**64)  # what orjson can write back out


def _exact_int(text: str) -> int:
    number = int(text)
    if number not in _INT_RANGE:
        raise RequestError(
            "invalid_value", f"integer {text[:30]}... is outside the 64-bit range values may use"
        )
    return number


def _refuse_constant(name: str) -> Any:
    raise RequestError("invalid_json", f"request body is not valid JSON: {name} is not JSON")


def _loads(body: bytes) -> Any:
    # orjson reads integers beyond 64 bits as floats, silently losing digits; a body that may
    # hold one is read again exactly, and such a number is refused rather than altered.
    data = orjson.loads(body)
    if _LONG_DIGITS.search(body):
        data = json.loads(body, parse_int=_exact_int, parse_constant=_refuse_constant)
    return data


def parse_body(body: bytes, model: type[T]) -> T:
    """The request body as ``model``; :class:`RequestError` (400) naming what is wrong."""
    try:
        data = _loads(body)
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError("invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise RequestError("invalid_request", "request body must be a JSON object")
    try:
        return _CONVERTER.structure(data, model)  # type: ignore[no-any-return]
    except Exception as exc:  # cattrs raises groups of anything a hook raised
        lines = config_errors(exc)
        raise RequestError("invalid_request", "; ".join(lines)) from None
