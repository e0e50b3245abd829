"""Request bodies as attrs models, structured strictly with cattrs (errors name the field).

The names a body gives (keys, tags, dependencies, a pattern) are checked for emptiness here,
as the caller gave them: a namespaced caller's ``""`` would become the valid ``"team-a/"``
once its prefix is put on, while the same ``""`` from an admin token is refused by the agent.
Every other rule on names is the agent's, on the prefixed name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
from attrs import define, field

from cache_core import InvalidKeyError, InvalidValueError
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


# Every ASCII digit as "0": a body holds a run of 19 digits exactly where this maps it to
# a run of 19 "0"s. Looking for that in the mapped copy takes a tenth of the time a
# regular expression's search does (on a small write, 0.3 µs rather than 2.5 µs).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19
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


def _loads(body: bytes | bytearray) -> Any:
    # orjson reads integers beyond 64 bits as floats, silently losing digits; a body that may
    # hold one is read again exactly, and such a number is refused rather than altered.
    if _LONG_RUN in body.translate(_DIGITS_AS_ZERO):
        orjson.loads(body)  # what is not JSON is refused in orjson's words, as any other body
        return json.loads(body, parse_int=_exact_int, parse_constant=_refuse_constant)
    return orjson.loads(body)


def _empty_key(what: str) -> Exception:
    return InvalidKeyError(f"{what} must be a non-empty string")  # the agent's wording


def _empty_tag(what: str) -> Exception:
    return InvalidValueError(f"each {what} must be a non-empty string")


# field -> (the error an empty name gets, as the agent would raise it; what it names)
_NAMED: dict[str, tuple[Callable[[str], Exception], str]] = {
    "key": (_empty_key, "key"),
    "keys": (_empty_key, "key"),
    "items": (_empty_key, "key"),
    "dependencies": (_empty_key, "key"),
    "pattern": (_empty_key, "pattern"),
    "tags": (_empty_tag, "tag"),
}


def _check_names(request: Any) -> None:
    for name, (error, what) in _NAMED.items():
        given = getattr(request, name, None)
        if given is None:
            continue
        names = (given,) if isinstance(given, str) else given  # a list, or a dict's keys
        if "" in names:
            raise error(what)


def parse_body(body: bytes | bytearray, model: type[T]) -> T:
    """The request body as ``model``; :class:`RequestError` (400) naming what is wrong, or
    the agent's own error for an empty name."""
    try:
        data = _loads(body)
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError("invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise RequestError("invalid_request", "request body must be a JSON object")
    try:
        request: T = _CONVERTER.structure(data, model)
    except Exception as exc:  # cattrs raises groups of anything a hook raised
        lines = config_errors(exc)
        raise RequestError("invalid_request", "; ".join(lines)) from None
    _check_names(request)
    return request
