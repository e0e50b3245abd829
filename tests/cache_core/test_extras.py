"""cache_core.extras, the install hints for shipped plugins, agrees with the packages: each
plugin a shipped package registers has its hint, each hint names an extra of the
meta-package that installs the package registering that plugin, and each codec's id is its
``CODEC_ID``. Without this a renamed plugin or extra would leave a hint naming nothing."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cache_core.config import CORE_SECTIONS
from cache_core.extras import CODEC_ID_EXTRAS, PLUGIN_EXTRAS, SHIPPED
from cache_core.plugins import FAMILIES, Registry, make_plugin_manager
from cache_core.settings import field_names

ROOT = Path(__file__).resolve().parents[2]
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _pyproject(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def _registered_by(module_name: str) -> dict[tuple[str, str], type[Any]]:
    """What the plugin module registers, cache-core's built-ins left out."""
    builtins = Registry.from_plugin_manager(make_plugin_manager(load_entry_points=False))
    pm = make_plugin_manager([importlib.import_module(module_name)], load_entry_points=False)
    registry = Registry.from_plugin_manager(pm)
    found = {
        (family, name): cls
        for family in FAMILIES
        for name, cls in registry.tables[family].items()
        if name not in builtins.tables[family]
    }
    # Config a plugin owns: a section of its own whole, or its fields of one of core's.
    for cls in registry.settings:
        if cls.SECTION in CORE_SECTIONS:
            found.update({("settings", f"{cls.SECTION}.{f}"): cls for f in field_names(cls)})
        else:
            found[("settings", cls.SECTION)] = cls
    return found


def _shipped_plugins() -> dict[tuple[str, str], tuple[str, type[Any]]]:
    """(family, name) -> (distribution, class) for every plugin a workspace package ships."""
    found: dict[tuple[str, str], tuple[str, type[Any]]] = {}
    for path in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = _pyproject(path)["project"]
        group = project.get("entry-points", {}).get("caching_agent", {})
        for module_name in group.values():
            for key, cls in _registered_by(module_name).items():
                found[key] = (project["name"], cls)
    return found


def _extras() -> dict[str, set[str]]:
    """Meta-package extra -> the distributions it requires directly."""
    optional = _pyproject(ROOT / "pyproject.toml")["project"]["optional-dependencies"]
    extras = {}
    for extra, requirements in optional.items():
        names = set()
        for requirement in requirements:
            match = _REQUIREMENT_NAME.match(requirement)
            assert match is not None, requirement
            names.add(match.group())
        extras[extra] = names
    return extras


SHIPPED_PLUGINS = _shipped_plugins()


def test_every_shipped_plugin_has_an_install_hint() -> None:
    # The test session installs every extra, so every shipped plugin registers here.
    assert sorted(SHIPPED_PLUGINS) == sorted(PLUGIN_EXTRAS)


@pytest.mark.parametrize("plugin", SHIPPED, ids=lambda p: f"{p.family}-{p.name}")
def test_each_hint_names_the_extra_that_installs_its_plugin(plugin: Any) -> None:
    distribution, cls = SHIPPED_PLUGINS[(plugin.family, plugin.name)]
    assert distribution in _extras()[plugin.extra]
    assert getattr(cls, "CODEC_ID", None) == plugin.codec_id


def test_codec_ids_hint_at_the_same_extras_as_codec_names() -> None:
    by_name = {
        cls.CODEC_ID: PLUGIN_EXTRAS[key]
        for key, (_, cls) in SHIPPED_PLUGINS.items()
        if key[0] == "codec"
    }
    assert by_name == CODEC_ID_EXTRAS


def test_shipped_codec_ids_leave_128_to_255_to_third_parties() -> None:
    assert CODEC_ID_EXTRAS  # the table is not empty: the check below can fail
    assert all(0 < codec_id < 128 for codec_id in CODEC_ID_EXTRAS)
