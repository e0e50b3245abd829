"""The plugin manager and the registry of plugin classes it collects, one table per family.

Built-in parts of cache-core register as plugins too (:data:`DEFAULT_PLUGINS`); installed
packages register through the entry-point group ``caching_agent``; tests and embedding
code pass plugin objects explicitly::

    class MyPlugin:
        @hookimpl
        def cache_register_loaders(self): return [MyLoader]

    agent = CachingAgent.from_config("config.yaml", plugins=[MyPlugin()])
"""

from __future__ import annotations

import importlib
import logging
import os
import types
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, cast

import attrs
import pluggy

from cache_core import hookspecs
from cache_core.config import CORE_SECTIONS, make_converter, structure
from cache_core.errors import ConfigError, PluginConflictError, PluginMissingError
from cache_core.extras import PLUGIN_EXTRAS, install_hint
from cache_core.markers import NAME
from cache_core.settings import collect

DEFAULT_PLUGINS = ("cache_core.builtins",)
"""Modules of cache-core registered on every plugin manager, whatever is installed."""

ALLOW_LIST_ENV = "CACHING_AGENT_PLUGINS"
"""Comma-separated entry-point names; when set, only those installed plugins load."""

# family -> registration hook
FAMILIES = {
    "tier": "cache_register_tiers",
    "codec": "cache_register_codecs",
    "strategy": "cache_register_strategies",
    "invalidator": "cache_register_invalidators",
    "links": "cache_register_links",
    "metrics": "cache_register_metrics",
    "loader": "cache_register_loaders",
}

_OPTIONS_CONVERTER = make_converter()

log = logging.getLogger("cache_core.plugins")


def make_plugin_manager(
    plugins: Iterable[object] = (),
    *,
    load_entry_points: bool = True,
    env: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """A plugin manager with cache-core's built-ins, installed plugins and ``plugins``."""
    pm = pluggy.PluginManager(NAME)
    pm.add_hookspecs(hookspecs)
    for module in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module), name=module)
    if load_entry_points:
        failed = _load_entry_points(pm, os.environ if env is None else env)
        # Read by Registry: a config naming what such a plugin would register says why.
        pm.caching_agent_import_failures = failed  # type: ignore[attr-defined]
    for plugin in plugins:
        if not pm.is_registered(plugin):  # also an installed entry point (the server's own)
            pm.register(plugin, name=_name_of(pm, plugin))
    return pm


def _name_of(pm: pluggy.PluginManager, plugin: object) -> str:
    """A name for a plugin given as an object: the module's, or the class's qualified
    name (pluggy would name it by its id(), a number in /stats and the start banner)."""
    if isinstance(plugin, types.ModuleType):
        name = plugin.__name__
    else:
        name = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    taken, count = name, 1
    while pm.has_plugin(taken):  # two instances of one class
        count += 1
        taken = f"{name}#{count}"
    return taken


def _load_entry_points(pm: pluggy.PluginManager, env: Mapping[str, str]) -> dict[str, str]:
    """Register every allowed entry point; returns those that failed to import (name ->
    why), each logged once: one blocks start only if the config uses it."""
    allowed_text = env.get(ALLOW_LIST_ENV)
    allowed = None
    if allowed_text is not None:
        allowed = {name.strip() for name in allowed_text.split(",") if name.strip()}
    failed: dict[str, str] = {}
    for ep in entry_points(group=NAME):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except ImportError as exc:
            failed[ep.name] = f"{ep.value}: {exc}"
            log.warning("plugin_import_failed", extra={"plugin": ep.name, "error": str(exc)})
            continue
        pm.register(plugin, name=ep.name)
    return failed


@attrs.define
class Registry:
    """Plugin classes by family and ``PLUGIN_NAME``; built once per agent."""

    tables: dict[str, dict[str, type[Any]]]
    plugin_names: list[str]
    import_failures: dict[str, str] = attrs.field(factory=dict)
    """Installed plugins that failed to import (name -> why)."""
    settings: list[Any] = attrs.field(factory=list)
    """The config sections plugins own (cache_core.settings)."""

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> Registry:
        tables: dict[str, dict[str, type[Any]]] = {family: {} for family in FAMILIES}
        owners: dict[tuple[str, str], str] = {}
        for family, hook_name in FAMILIES.items():
            caller = getattr(pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                owner = pm.get_name(impl.plugin) or repr(impl.plugin)
                for plugin_cls in impl.function() or ():
                    name = getattr(plugin_cls, "PLUGIN_NAME", None)
                    if not isinstance(name, str) or not name:
                        raise PluginConflictError(
                            f"{owner}: {family} class {plugin_cls!r} has no PLUGIN_NAME"
                        )
                    if name in tables[family] and tables[family][name] is not plugin_cls:
                        raise PluginConflictError(
                            f"{family} plugin name {name!r} registered twice: "
                            f"by {owners[(family, name)]} and by {owner}"
                        )
                    tables[family][name] = plugin_cls
                    owners[(family, name)] = owner
        names = sorted(name for name, _ in pm.list_name_plugin())
        failures = dict(getattr(pm, "caching_agent_import_failures", {}))
        settings = collect(
            (
                (pm.get_name(impl.plugin) or repr(impl.plugin), settings_cls)
                for impl in pm.hook.cache_register_settings.get_hookimpls()
                for settings_cls in cast("Iterable[type]", impl.function() or ())
            ),
            CORE_SECTIONS,
        )
        return cls(tables=tables, plugin_names=names, import_failures=failures, settings=settings)

    def names(self, family: str) -> list[str]:
        return sorted(self.tables[family])

    def get(self, family: str, name: str, *, path: str) -> type[Any]:
        """The class registered as ``name``, or a :class:`ConfigError` naming ``path``."""
        try:
            return self.tables[family][name]
        except KeyError:
            pass
        failed = "".join(
            f"; plugin {plugin!r} failed to import ({why})"
            for plugin, why in sorted(self.import_failures.items())
        )
        extra = PLUGIN_EXTRAS.get((family, name))
        if extra is not None:
            raise PluginMissingError(
                f"{path}: {family} plugin {name!r} is not installed; {install_hint(extra)}{failed}"
            )
        known = ", ".join(self.names(family)) or "none installed"
        raise ConfigError(f"{path}: unknown {family} plugin {name!r} (installed: {known}){failed}")

    def options(self, plugin_cls: type[Any], raw: Any, *, path: str) -> Any:
        """Structure ``raw`` into ``plugin_cls.Options`` (None when it takes none)."""
        options_cls = getattr(plugin_cls, "Options", None)
        if options_cls is None:
            if raw:
                raise ConfigError(f"{path}: {plugin_cls.PLUGIN_NAME!r} takes no options")
            return None
        return structure(raw or {}, options_cls, path, _OPTIONS_CONVERTER)
