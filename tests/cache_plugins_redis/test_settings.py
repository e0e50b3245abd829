"""The ``redis`` section belongs to the Redis plugin (cache_core.settings): structured by
its RedisSettings, with the seed's REDIS_* overrides, every error naming its field."""

from __future__ import annotations

from typing import Any

import pytest

import cache_plugins_redis.hooks
from cache_core import CachingAgent, ConfigError, load_config
from cache_plugins_redis.settings import RedisNode, RedisSettings, SentinelSettings

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}
L1_ONLY = {"compression": {"enable": False}}


def redis_settings(raw: dict[str, Any], env: dict[str, str] | None = None) -> RedisSettings:
    return load_config(raw, env={} if env is None else env).section(RedisSettings)


def settings_error(raw: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        redis_settings(raw, env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    settings = redis_settings({})
    assert settings == RedisSettings()
    assert (settings.host, settings.port, settings.password) == ("localhost", 6379, None)
    assert settings.key_prefix == "ca:"


def test_the_seed_section_structures() -> None:
    settings = redis_settings(
        {
            "redis": {
                "host": "localhost",
                "port": 6379,
                "db": 0,
                "password": None,
                "max_connections": 50,
                "socket_timeout": 5,
                "nodes": [{"host": "a", "port": 7000}],
                "sentinel": {"master_name": "m", "nodes": [{"host": "s"}]},
            }
        }
    )
    assert settings.socket_timeout == 5.0
    assert settings.max_connections == 50
    assert settings.nodes == [RedisNode("a", 7000)]
    assert settings.sentinel == SentinelSettings("m", [RedisNode("s")])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"port": "x"}, "redis.port: expected an integer, got 'x'"),
        ({"port": 6379.5}, "redis.port: expected an integer, got 6379.5"),
        ({"socket_timeout": "5s"}, "redis.socket_timeout: expected a number, got '5s'"),
        ({"port": "x", "db": "y"}, "redis.port: expected an integer, got 'x' (and 1 more)"),
        ({"nodes": [{"port": 1}]}, "redis.nodes[0].host: required field missing"),
        ({"sentinel": {"nodes": []}}, "redis.sentinel.master_name: required field missing"),
        ({"max_connections": 0}, "redis.max_connections: must be greater than 0, got 0"),
        (
            {"connect_timeout": 0},
            "redis.socket_timeout and redis.connect_timeout: must be greater than 0",
        ),
    ],
)
def test_wrong_values_name_the_dotted_field(raw: dict[str, Any], message: str) -> None:
    assert settings_error({"redis": raw}) == message


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("localhost", "redis: expected a mapping, got 'localhost'"),
        (5, "redis: expected a mapping, got 5"),
    ],
)
def test_a_section_that_is_not_a_mapping_says_so(section: Any, message: str) -> None:
    assert settings_error({"redis": section}) == message


def test_a_typo_is_refused_when_the_agent_is_assembled() -> None:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(
            {"redis": {"hots": "x"}, **L1_ONLY},
            plugins=[cache_plugins_redis.hooks],
            env=NO_PLUGINS,
        )
    assert str(info.value) == "redis: unknown field hots"


def test_a_wrong_value_is_refused_when_the_agent_is_assembled_even_without_l2() -> None:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(
            {"redis": {"port": "x"}, **L1_ONLY},
            plugins=[cache_plugins_redis.hooks],
            env=NO_PLUGINS,
        )
    assert str(info.value) == "redis.port: expected an integer, got 'x'"


# -- environment overrides -----------------------------------------------------------------


def test_env_overrides_land_where_the_seed_says() -> None:
    settings = redis_settings(
        {"redis": {"host": "file-host", "port": 1, "url": "embedded"}},
        env={"REDIS_HOST": "redis.example.com", "REDIS_PORT": "6380", "REDIS_PASSWORD": "s"},
    )
    assert (settings.host, settings.port, settings.password) == ("redis.example.com", 6380, "s")
    assert settings.url is None  # naming a host means that server, not the file's url


def test_env_redis_url_wins_over_host() -> None:
    settings = redis_settings({}, env={"REDIS_URL": "redis://h:1/0", "REDIS_HOST": "other"})
    assert settings.url == "redis://h:1/0"


@pytest.mark.parametrize("value", ["12345", "true", "[a]", "0x1f"])
def test_env_password_and_host_stay_strings(value: str) -> None:
    settings = redis_settings({}, env={"REDIS_PASSWORD": value, "REDIS_HOST": value})
    assert (settings.password, settings.host) == (value, value)


def test_env_null_password_is_none() -> None:
    assert (
        redis_settings({"redis": {"password": "x"}}, env={"REDIS_PASSWORD": "null"}).password
        is None
    )


def test_env_none_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "from-os-environ")
    assert load_config({}).section(RedisSettings).host == "from-os-environ"
    assert load_config({}, env={}).section(RedisSettings).host == "localhost"


def test_the_given_mapping_is_not_modified_by_env() -> None:
    raw: dict[str, Any] = {"redis": {"host": "a"}}
    redis_settings(raw, env={"REDIS_HOST": "b"})
    assert raw == {"redis": {"host": "a"}}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_PORT": "abc"}, "redis.port (from REDIS_PORT): expected an integer, got 'abc'"),
        ({"REDIS_PORT": "1.5"}, "redis.port (from REDIS_PORT): expected an integer, got 1.5"),
        ({"REDIS_PORT": "[1"}, "redis.port (from REDIS_PORT): expected an integer, got '[1'"),
    ],
)
def test_a_bad_env_value_names_the_variable(env: dict[str, str], message: str) -> None:
    assert settings_error({}, env=env) == message
