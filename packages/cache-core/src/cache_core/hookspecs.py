"""Every hook a Caching Agent plugin can implement.

Hooks run when the agent is assembled and on rare lifecycle events, never per cache
operation: a pluggy call costs about a microsecond, an L1 hit must cost less. Each
registration hook returns classes; the plugin manager indexes them by their
``PLUGIN_NAME`` (the name config.yaml uses), structures their nested attrs ``Options``
class from that plugin's config section, and the orchestrator then calls the objects
it built directly.

Implement a hook with ``@cache_core.hookimpl`` on a function of the same name in a
module or object you register (entry-point group ``caching_agent``, or
``CachingAgent.from_config(..., plugins=[obj])``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cache_core.markers import hookspec

if TYPE_CHECKING:
    from cache_core.agent_view import AgentView
    from cache_core.codecs import Codec
    from cache_core.invalidation import InvalidationIndex
    from cache_core.links import Links
    from cache_core.loaders import Loader
    from cache_core.metrics import MetricsRecorder
    from cache_core.shared_engine import SharedEngine
    from cache_core.strategies import Strategy
    from cache_core.tiers.base import LocalTier, RemoteTier


@hookspec
def cache_register_tiers() -> Sequence[type[LocalTier] | type[RemoteTier]]:
    """Called once when the plugin manager builds its registry.

    Return tier classes. ``cache_tiers.<tier>.type`` in config.yaml names one by its
    ``PLUGIN_NAME``: ``l1`` must name a :class:`~cache_core.tiers.base.LocalTier`
    (synchronous, in-process), ``l2`` a :class:`~cache_core.tiers.base.RemoteTier`
    (asynchronous). The rest of that section is structured into the class's ``Options``.
    """


@hookspec
def cache_register_codecs() -> Sequence[type[Codec]]:
    """Called once when the plugin manager builds its registry.

    Return codec classes (compression of L2 frames). ``compression.algorithm`` names the
    one that writes; every registered codec reads the frames carrying its ``CODEC_ID``:
    1-127 are this project's, 128-255 are reserved for third-party codecs (two codecs with
    one id are refused at assembly).
    """


@hookspec
def cache_register_strategies() -> Sequence[type[Strategy]]:
    """Called once when the plugin manager builds its registry.

    Return write-strategy classes. ``strategies.default``, a policy's ``strategy`` and a
    request's ``strategy`` name one by ``PLUGIN_NAME``; ``strategies.<name>`` is its
    ``Options`` section.
    """


@hookspec
def cache_register_invalidators() -> Sequence[type[InvalidationIndex]]:
    """Called once when the plugin manager builds its registry.

    Return invalidation-index classes: where the :class:`~cache_core.links.Links` plugin
    keeps tags, key dependencies and runtime event subscriptions. ``invalidation.backend``
    names the one in use; none is built without a Links plugin.
    """


@hookspec
def cache_register_links() -> Sequence[type[Links]]:
    """Called once when the plugin manager builds its registry.

    Return the class of tag, event and dependency invalidation (a
    :class:`~cache_core.links.Links`; cache-plugins-invalidation's is ``invalidation``).
    At most one may be registered in all: the agent builds it at assembly as
    ``cls(None, LinksContext)`` and calls it on every write and removal. With none, core
    keeps TTL, deletes and patterns, and refuses tags, dependencies and events naming
    caching-agent[invalidation].
    """


@hookspec
def cache_register_metrics() -> Sequence[type[MetricsRecorder]]:
    """Called once when the plugin manager builds its registry.

    Return metrics-recorder classes. Every one named in ``monitoring.recorders`` is built
    and started with the agent; it reads the agent's counters when its exporter collects.
    """


@hookspec
def cache_register_loaders() -> Sequence[type[Loader]]:
    """Called once when the plugin manager builds its registry.

    Return loader classes: what computes a missing value for warm-up and read-through.
    ``loaders.<name>`` in config.yaml enables one and holds its ``Options``.
    """


@hookspec
def cache_register_settings() -> Sequence[type]:
    """Called once when the plugin manager builds its registry.

    Return settings classes: the config.yaml sections (or fields of a section shared with
    core or other plugins) your plugin owns. Each is an attrs class with ``SECTION`` (the
    top-level section's name) and, optionally, ``ENV`` (environment variable -> field);
    see :mod:`cache_core.settings`. Read one with ``config.section(YourSettings)``
    (structured once, errors naming ``section.field``). A key of config.yaml that neither
    core nor a registered class owns is refused as an unknown field; a field two classes
    claim is a conflict.
    """


@hookspec(firstresult=True)
def cache_shared_engine(agent: AgentView) -> SharedEngine | None:
    """Called once by ``serve --workers N`` (N above 1), in the parent process, after the
    config is checked and before any worker starts; ``agent`` is assembled, never started.
    The first plugin answering other than None decides.

    Return the engine the workers share, unstarted (a
    :class:`~cache_core.shared_engine.SharedEngine`), when ``agent.l2`` is your tier and
    its settings ask for a server the process starts itself (the Redis plugin's
    ``redis.url: embedded``); else None. With no engine the workers reach L2 each as a
    lone instance would: an L2 tier that starts a server of its own in each worker does
    not share it.
    """


@hookspec
def cache_agent_started(agent: AgentView) -> None:
    """Called once after the agent has opened every tier, before it serves.

    Return nothing. A plugin may keep a reference to the agent (to read its stats, say).
    """


@hookspec
def cache_agent_stopping(agent: AgentView) -> None:
    """Called once when the agent begins to close, before its tiers are closed.

    Return nothing.
    """
