"""The tag, event and dependency invalidation tests: tests/conftest.py's ``make_agent``
with cache-plugins-invalidation registered explicitly (no installed plugin loads)."""

from __future__ import annotations

import pytest

import cache_plugins_invalidation.hooks


@pytest.fixture
def agent_plugins() -> tuple[object, ...]:
    return (cache_plugins_invalidation.hooks,)
