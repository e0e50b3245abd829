"""Fixtures for the HTTP tests: an L1-only app served by pytest-aiohttp's test client.

Every test gets a fresh app built from :func:`base_config` (a plain mapping, no ``l2``
section, ``env={}`` so the caller's REDIS_* / CACHE_* variables never leak in).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from cache_server import create_app

LIMITS = {
    "max_key_length": 64,
    "max_value_bytes": 2048,
    "max_batch_size": 5,
    "max_warmup_keys": 5,
    "max_request_bytes": 16 * 1024,
    "max_pattern_length": 48,
    "max_pattern_wildcards": 4,
    "allow_pattern_classes": True,
}

BASE_CONFIG: dict[str, Any] = {
    "cache_tiers": {"l1": {"type": "memory", "max_size_mb": 4, "ttl": 300}},
    "strategies": {"default": "write_through"},
    "cache_policies": {
        "model_inference": {"match": ["model:*"], "ttl": 600, "strategy": "write_back"},
    },
    "invalidation": {
        "event_triggers": {
            "user_profile_update": ["user:{user_id}:*"],
            "content_modification": ["content:{content_id}", "tag:content"],
            "mastery_update": ["user:{user_id}:mastery*", "user:{user_id}:learning_path*"],
        },
    },
    "ttl_presets": {"temporary": 300, "short": 1800, "long": 86400},
    "limits": LIMITS,
}


def base_config(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of the L1-only test config; top-level sections replaced by ``overrides``."""
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg.update(copy.deepcopy(overrides))
    return cfg


MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def config_factory() -> Callable[..., dict[str, Any]]:
    """:func:`base_config` as a fixture (test modules cannot import conftest)."""
    return base_config


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    """``await make_client(config=None, plugins=())``: a test client on a fresh app."""

    async def make(
        config: Mapping[str, Any] | None = None, plugins: tuple[object, ...] = ()
    ) -> TestClient[Any, Any]:
        cfg = base_config() if config is None else config
        app = create_app(cfg, plugins=plugins, env={})
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client()


async def error_of(resp: ClientResponse) -> dict[str, Any]:
    """The ``error`` object of a 4xx response, after checking the envelope's exact shape."""
    assert 400 <= resp.status < 500, (resp.status, await resp.text())
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return error  # type: ignore[no-any-return]


@pytest.fixture
def check_error() -> Callable[[ClientResponse], Awaitable[dict[str, Any]]]:
    return error_of
