"""cache-server owns ``agent``, ``server`` and its fields of ``monitoring``
(cache_core.settings): structured by its settings classes, every error naming the field,
refused when the app is built; core's fields of ``monitoring`` stay core's."""

from __future__ import annotations

from typing import Any

import pytest

from cache_core import ConfigError, load_config
from cache_server.app import create_app
from cache_server.keys import AGENT
from cache_server.settings import AgentSettings, ExportSettings, ServerSettings

BASE: dict[str, Any] = {"compression": {"enable": False}}
NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}


def app_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        create_app({**BASE, **raw}, env=NO_PLUGINS)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    config = load_config({}, env={})
    assert config.section(AgentSettings) == AgentSettings("caching_agent", "1.0.0", 8015, "0.0.0.0")
    assert config.section(ServerSettings).auth_token is None
    assert config.section(ExportSettings).log_level == "info"


def test_a_shared_section_gives_each_owner_its_fields() -> None:
    app = create_app(
        {**BASE, "monitoring": {"log_level": "debug", "alert_window": 30}}, env=NO_PLUGINS
    )
    config = app[AGENT].config
    assert config.section(ExportSettings).log_level == "debug"
    assert config.monitoring.alert_window == 30


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"agent": {"port": True}}, "agent.port: expected an integer, got True"),
        ({"agent": {"host": 1}}, "agent.host: expected a string, got 1"),
        ({"agent": {"port": 70000}}, "agent.port: must be a TCP port (1-65535), got 70000"),
        ({"agent": {"port": 0}}, "agent.port: must be a TCP port (1-65535), got 0"),
        ({"agent": [1]}, "agent: expected a mapping, got list"),
        ({"agent": {"prot": 1}}, "agent: unknown field prot"),
        ({"server": {"body_timeout": 0}}, "server.body_timeout: must be greater than 0, got 0.0"),
        (
            {"monitoring": {"tracing": "jaeger"}},
            "monitoring.tracing: expected none, console or otlp, got 'jaeger'",
        ),
        (
            {"monitoring": {"tracing": "otlp"}},
            "monitoring.tracing: otlp needs monitoring.otlp_endpoint",
        ),
        (
            {"monitoring": {"log_format": "xml"}},
            "monitoring.log_format: expected auto, json or text, got 'xml'",
        ),
        (
            {"monitoring": {"log_level": "trace"}},
            "monitoring.log_level: expected debug, info, warning, error, got 'trace'",
        ),
        ({"monitoring": {"log_levl": "debug"}}, "monitoring: unknown field log_levl"),
    ],
)
def test_wrong_values_are_refused_naming_the_field(raw: dict[str, Any], message: str) -> None:
    assert app_error(raw) == message
