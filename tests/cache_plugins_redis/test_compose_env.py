"""docker-compose.yml's environment against the shipped config.yaml: REDIS_HOST names the
server the agent uses, so `redis.url: embedded` must give way (no private engine starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache_core.config import load_config
from cache_plugins_redis.engine import EmbeddedEngine
from cache_plugins_redis.settings import RedisSettings

SHIPPED = Path(__file__).resolve().parents[2] / "config.yaml"


def test_the_shipped_config_starts_the_embedded_engine() -> None:
    config = load_config(SHIPPED, env={}).section(RedisSettings)
    assert config.url == "embedded"
    assert EmbeddedEngine.for_settings(config) is not None


@pytest.mark.parametrize(
    ("env", "host", "port"),
    [
        ({"REDIS_HOST": "redis"}, "redis", 6379),  # docker-compose.yml, as written
        ({"REDIS_PORT": "6380"}, "localhost", 6380),
        ({"REDIS_HOST": "redis", "REDIS_PORT": "6380"}, "redis", 6380),
    ],
)
def test_redis_host_or_port_wins_over_url_embedded(
    env: dict[str, str], host: str, port: int
) -> None:
    config = load_config(SHIPPED, env=env).section(RedisSettings)
    assert config.url is None
    assert (config.host, config.port) == (host, port)
    assert EmbeddedEngine.for_settings(config) is None


def test_redis_url_wins_over_redis_host() -> None:
    config = load_config(
        SHIPPED, env={"REDIS_URL": "redis://cache:6390/1", "REDIS_HOST": "redis"}
    ).section(RedisSettings)
    assert config.url == "redis://cache:6390/1"
    assert EmbeddedEngine.for_settings(config) is None
