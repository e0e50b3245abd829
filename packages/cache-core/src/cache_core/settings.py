"""Plugin-owned config sections: a plugin names the part of config.yaml it reads.

A plugin registers settings classes (``cache_register_settings``): attrs classes with a
``SECTION`` class attribute naming a top-level section of config.yaml, and optionally
``ENV`` (environment variable -> field it sets). A section may be a plugin's alone
(``redis``) or shared with core or with other plugins, each owning its fields
(``monitoring``: core's alert settings, the server's Prometheus and logging ones)::

    @attrs.define(frozen=True)
    class SqliteSettings:
        SECTION: ClassVar[str] = "sqlite"
        ENV: ClassVar[Mapping[str, str]] = {"SQLITE_PATH": "path"}
        path: str = "cache.db"

    settings = context.config.section(SqliteSettings)  # in the tier's constructor

The class may also define classmethods ``env_applied(cls, section, variables)`` (adjusts
the raw section once ``variables`` were applied) and ``prepare(cls, section)`` (spells out
a shorthand before structuring), and ``check(self)`` (rules across fields; raises
:class:`~cache_core.errors.ConfigError` naming them).

Core structures what it owns when the config is read and keeps the rest raw; at assembly
every key of config.yaml must be claimed by core or a registered settings class, or it is
an unknown field (a typo names its path, as before). The settings of a shipped plugin that
is not installed are refused naming its extra, as a missing codec is (ignored, a rule
would silently not hold), except the server's, which only shape serving: ignored with one
warning.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import attrs
import yaml

from cache_core.errors import ConfigError, PluginConflictError, PluginMissingError
from cache_core.extras import PLUGIN_EXTRAS, SERVING_EXTRA, install_hint

T = TypeVar("T")

log = logging.getLogger("cache_core.settings")


def field_names(cls: type[Any]) -> set[str]:
    return {f.name for f in attrs.fields(cls)}


def parse_env(cls: type[Any], name: str, text: str) -> Any:
    """``text`` of an environment variable as YAML would read it (``6380`` a number,
    ``null`` null), except that a field typed text keeps text (a password ``123``)."""
    try:
        value = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text
    if value is not None and _is_text(cls, name):
        return text
    return value


def _is_text(cls: type[Any], name: str) -> bool:
    hint = typing.get_type_hints(cls).get(name, Any)
    kinds = typing.get_args(hint) or (hint,)
    return str in kinds and not any(kind in (int, float, bool) for kind in kinds)


def apply_env(
    cls: type[Any], raw: dict[str, Any], env: Mapping[str, str], section: str
) -> dict[str, str]:
    """Write ``cls.ENV``'s variables set in ``env`` into ``raw`` (``cls``'s section);
    returns {dotted field: variable} for the error messages."""
    applied: dict[str, str] = {}
    for var, name in getattr(cls, "ENV", {}).items():
        if var in env:
            raw[name] = parse_env(cls, name, env[var])
            applied[f"{section}.{name}"] = var
    adjust = getattr(cls, "env_applied", None)
    if adjust is not None and applied:
        adjust(raw, frozenset(applied.values()))
    return applied


def collect(classes: Iterable[tuple[str, Any]], core: Mapping[str, set[str]]) -> list[Any]:
    """The settings classes plugins registered ((owner, class) pairs), checked: each an
    attrs class naming its section, no field claimed twice (by two plugins, or by a
    plugin and core)."""
    owners: dict[tuple[str, str], str] = {
        (section, name): "cache-core" for section, names in core.items() for name in names
    }
    found: list[Any] = []
    for owner, cls in classes:
        section = getattr(cls, "SECTION", None)
        if not attrs.has(cls) or not isinstance(section, str) or not section:
            raise PluginConflictError(
                f"{owner}: settings class {cls!r} must be an attrs class with a SECTION name"
            )
        if cls in found:
            continue
        for name in sorted(field_names(cls)):
            claimed = owners.setdefault((section, name), owner)
            if claimed != owner:
                raise PluginConflictError(f"{section}.{name}: claimed by {claimed} and by {owner}")
        found.append(cls)
    return found


def check_claims(
    unclaimed: Mapping[str, Any], core: Mapping[str, set[str]], settings: Iterable[Any]
) -> None:
    """Every key of config.yaml that core did not structure must be some registered
    settings class's field: else a :class:`ConfigError` naming it, or, for a shipped
    plugin's setting, one warning that it is ignored until that plugin is installed."""
    claimed: dict[str, set[str]] = {}
    for cls in settings:
        claimed.setdefault(cls.SECTION, set()).update(field_names(cls))
    unknown: dict[str, list[str]] = {}  # section ("" for the top level) -> names
    for section, value in unclaimed.items():
        if section not in claimed and section not in core:
            unknown.setdefault("", []).append(section)
        elif isinstance(value, Mapping):  # else its owner's structuring names it
            names = [str(name) for name in value if name not in claimed.get(section, ())]
            if names:
                unknown[section] = names
    for section, names in unknown.items():
        refused = []
        for name in sorted(names):
            dotted = f"{section}.{name}" if section else name
            extra = PLUGIN_EXTRAS.get(("settings", dotted))
            if extra is None:
                refused.append(name)
                continue
            if extra != SERVING_EXTRA:
                raise PluginMissingError(
                    f"{dotted}: read by a plugin that is not installed; {install_hint(extra)}"
                )
            log.warning(
                "settings_ignored",
                extra={"setting": dotted, "detail": f"read by a plugin: {install_hint(extra)}"},
            )
        if refused:
            plural = "s" if len(refused) > 1 else ""
            where = f"{section}: " if section else ""
            raise ConfigError(f"{where}unknown field{plural} {', '.join(refused)}")
