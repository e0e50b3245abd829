"""Plugin-owned config (cache_core.settings): a plugin registers settings classes naming the
section they read; core structures them from it with their env overrides, and refuses what
no one owns or what two claim."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import pytest

from cache_core import CachingAgent, ConfigError, PluginConflictError, hookimpl, load_config

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}
BASE: dict[str, Any] = {"compression": {"enable": False}}


@attrs.define(frozen=True)
class StoreSettings:
    SECTION: ClassVar[str] = "store"
    ENV: ClassVar[Mapping[str, str]] = {"STORE_PATH": "path", "STORE_SIZE": "size"}

    path: str = "cache.db"
    size: int = 10

    def check(self) -> None:
        if self.size <= 0:
            raise ConfigError(f"store.size: must be greater than 0, got {self.size}")


@attrs.define(frozen=True)
class MonitoringExtra:
    """A plugin's field of core's ``monitoring`` section."""

    SECTION: ClassVar[str] = "monitoring"

    sample_rate: float = 1.0


class Plugin:
    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @hookimpl
    def cache_register_settings(self) -> Sequence[type]:
        return self.classes


def agent(raw: Mapping[str, Any], *classes: type, env: Mapping[str, str] = NO_PLUGINS) -> Any:
    return CachingAgent.from_config({**BASE, **raw}, plugins=[Plugin(*classes)], env=env)


def error(raw: Mapping[str, Any], *classes: type, env: Mapping[str, str] = NO_PLUGINS) -> str:
    with pytest.raises(ConfigError) as info:
        agent(raw, *classes, env=env)
    return str(info.value)


def test_a_plugin_section_is_structured_with_its_env_overrides() -> None:
    built = agent({"store": {"path": "a.db"}}, StoreSettings, env={**NO_PLUGINS, "STORE_SIZE": "5"})
    assert built.config.section(StoreSettings) == StoreSettings("a.db", 5)


def test_a_text_field_keeps_the_variable_as_text() -> None:
    config = load_config({}, env={"STORE_PATH": "123"})
    assert config.section(StoreSettings).path == "123"


def test_a_section_shared_with_core_gives_each_its_fields() -> None:
    built = agent({"monitoring": {"sample_rate": 0.5, "alert_window": 30}}, MonitoringExtra)
    assert built.config.section(MonitoringExtra).sample_rate == 0.5
    assert built.config.monitoring.alert_window == 30


@pytest.mark.parametrize(
    ("raw", "env", "message"),
    [
        ({"store": {"pth": "x"}}, {}, "store: unknown field pth"),
        ({"store": {"size": "big"}}, {}, "store.size: expected an integer, got 'big'"),
        ({"store": {"size": 0}}, {}, "store.size: must be greater than 0, got 0"),
        ({}, {"STORE_SIZE": "big"}, "store.size (from STORE_SIZE): expected an integer, got 'big'"),
        ({"monitoring": {"sample_rat": 1}}, {}, "monitoring: unknown field sample_rat"),
    ],
)
def test_errors_name_the_field_at_assembly(
    raw: dict[str, Any], env: dict[str, str], message: str
) -> None:
    assert error(raw, StoreSettings, MonitoringExtra, env={**NO_PLUGINS, **env}) == message


def test_without_the_plugin_its_section_is_an_unknown_field() -> None:
    assert error({"store": {"path": "x"}}) == "unknown field store"


def test_a_field_core_owns_cannot_be_claimed() -> None:
    @attrs.define(frozen=True)
    class Thief:
        SECTION: ClassVar[str] = "monitoring"
        alert_window: float = 1.0

    claimed = re.escape("monitoring.alert_window: claimed by cache-core")
    with pytest.raises(PluginConflictError, match=claimed):
        agent({}, Thief)


def test_two_plugins_cannot_claim_one_field() -> None:
    @attrs.define(frozen=True)
    class Other:
        SECTION: ClassVar[str] = "store"
        path: str = ""

    with pytest.raises(PluginConflictError, match=re.escape("store.path: claimed by")):
        CachingAgent.from_config(
            BASE, plugins=[Plugin(StoreSettings), Plugin(Other)], env=NO_PLUGINS
        )


def test_a_settings_class_must_be_attrs_and_name_its_section() -> None:
    class Loose:
        SECTION = "loose"

    with pytest.raises(PluginConflictError, match="must be an attrs class with a SECTION"):
        agent({}, Loose)


def test_l2_needs_a_type() -> None:
    assert error({"cache_tiers": {"l1": {}, "l2": {"ttl": 5}}}) == (
        "cache_tiers.l2.type: required field missing (an L2 tier plugin)"
    )
