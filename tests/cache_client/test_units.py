"""The client's parts that need no server: paths, the error table, the retry schedule.
Everything that does is in tests/e2e/test_e2e_client.py, against the real command."""

from __future__ import annotations

import random
from urllib.parse import unquote

import pytest

from cache_client import (
    AsyncCacheClient,
    AuthenticationError,
    ConnectionFailedError,
    ForbiddenError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    Timeouts,
)
from cache_client.errors import error_from, error_from_answer
from cache_client.paths import key_path
from cache_core import errors as core


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("user:1:profile", "/cache/user%3A1%3Aprofile"),
        ("a/b", "/cache/a%2Fb"),
        ("a%2Fb", "/cache/a%252Fb"),
        ("q?x#y z", "/cache/q%3Fx%23y%20z"),
        ("ü", "/cache/%C3%BC"),
        (".", "/cache/%2E"),
        ("..", "/cache/%2E%2E"),
        ("a..b", "/cache/a..b"),
    ],
)
def test_a_key_is_one_path_segment_that_decodes_to_itself(key: str, path: str) -> None:
    assert key_path(key) == path
    segment = path.removeprefix("/cache/")
    assert "/" not in segment and unquote(segment) == key


CORE_TYPES = [
    core.InvalidKeyError,
    core.InvalidValueError,
    core.UnknownNameError,
    core.UnknownEventError,
    core.MissingContextError,
    core.NotInstalledError,
    core.TierUnavailableError,
    core.CorruptEntryError,
    core.LoaderError,
    core.NoLoaderError,
    core.NotLoadedError,
]


@pytest.mark.parametrize("kind", CORE_TYPES, ids=lambda kind: kind.__name__)
def test_each_core_code_is_its_core_type(kind: type[core.CacheError]) -> None:
    error = error_from(kind.code, "why", 400)
    assert type(error) is kind and str(error) == "why"
    assert type(error_from(kind.code, "why")) is kind  # a per-key error of a 200 answer


def test_codes_without_a_core_type_keep_their_code_and_status() -> None:
    error = error_from("invalid_request", "give at least one", 400)
    assert isinstance(error, ServerError) and isinstance(error, core.CacheError)
    assert (error.code, error.status, str(error)) == ("invalid_request", 400, "give at least one")
    # The core's config errors are the server's own business, not the caller's.
    assert type(error_from("invalid_config", "x", 500)) is ServerError


def test_a_routes_404_is_not_a_loaders_not_found() -> None:
    assert type(error_from("not_found", "no route", 404)) is ServerError
    assert type(error_from("not_found", "the loader found none")) is core.NotLoadedError


def test_401_and_403_are_the_clients_own_types() -> None:
    assert type(error_from("unauthorized", "token", 401)) is AuthenticationError
    assert type(error_from("forbidden", "admin only", 403)) is ForbiddenError
    assert AuthenticationError.code == "unauthorized" and ForbiddenError.code == "forbidden"


def test_an_answer_not_in_our_error_shape_is_a_server_error_with_its_status() -> None:
    for body in (None, {"detail": "bad gateway"}, {"error": "x"}, [1]):
        error = error_from_answer(502, body)
        assert isinstance(error, ServerError) and (error.code, error.status) == (
            "http_error",
            502,
        )
    shaped = error_from_answer(503, {"error": {"code": "tier_unavailable", "message": "m"}})
    assert type(shaped) is core.TierUnavailableError


def test_transport_errors_are_also_the_builtin_kinds() -> None:
    assert issubclass(RequestTimeoutError, TimeoutError)
    assert issubclass(ConnectionFailedError, ConnectionError)


def test_backoff_grows_to_its_cap_with_jitter_below_it() -> None:
    policy = RetryPolicy(backoff=0.1, multiplier=2, max_backoff=1.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        waits = [policy.delay(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), retry
        assert max(waits) - min(waits) > ceiling / 4  # spread, not one value


def test_retries_stop_at_the_attempts_and_the_budget() -> None:
    policy = RetryPolicy(attempts=3, backoff=0.1, budget=1.0)
    rng = random.Random(1)
    busy = core.TierUnavailableError("L2 away")
    assert policy.next_delay(1, 0.0, busy, rng) is not None
    assert policy.next_delay(2, 0.0, busy, rng) is not None
    assert policy.next_delay(3, 0.0, busy, rng) is None  # the third was the last
    assert policy.next_delay(1, 0.99, busy, rng) is None  # its wait would end past 1.0


def test_only_unavailability_and_connection_failures_are_retried() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    retried = [
        core.TierUnavailableError("L2 away"),
        ServerError("http_error", "a proxy's 503", 503),
        ConnectionFailedError("refused"),
    ]
    for error in retried:
        assert policy.next_delay(1, 0.0, error, rng) is not None, error
    never = [
        RequestTimeoutError("slow"),
        core.InvalidKeyError("bad"),
        core.CorruptEntryError("planted"),
        ServerError("internal_error", "boom", 500),
        AuthenticationError("token"),
    ]
    for error in never:
        assert policy.next_delay(1, 0.0, error, rng) is None, error
    quiet = RetryPolicy(retry_connection_errors=False)
    assert quiet.next_delay(1, 0.0, ConnectionFailedError("refused"), rng) is None


@pytest.mark.parametrize(
    "url", ["ftp://cache:21", "cache:8015", "http://", "http://cache/?q=1", "http://cache/#x"]
)
def test_a_url_the_client_cannot_use_is_refused_when_built(url: str) -> None:
    with pytest.raises(ValueError, match="url must"):
        AsyncCacheClient(url)


def test_a_base_path_is_kept_and_settings_are_checked() -> None:
    assert AsyncCacheClient("http://proxy:8080/cache-api/").url == "http://proxy:8080/cache-api"
    with pytest.raises(ValueError, match="total"):
        Timeouts(total=0)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
