"""config.yaml as attrs models, structured with cattrs; every error names its field.

The fixed sections are modelled here. Sections that belong to a plugin (a tier under
``cache_tiers``, a strategy under ``strategies``, a loader under ``loaders``) stay
mappings here and are structured into that plugin's ``Options`` when the agent is
assembled (:mod:`cache_core.assembly`), with the same converter and the same messages.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
import yaml
from attrs import define, field
from cattrs.cols import is_mapping, is_sequence, list_structure_factory, mapping_structure_factory
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn

from cache_core.errors import ConfigError

T = TypeVar("T")

MIB = 1024 * 1024


@define(frozen=True)
class AgentSection:
    name: str = "caching_agent"
    version: str = "1.0.0"
    port: int = 8015
    host: str = "0.0.0.0"


@define(frozen=True)
class RedisNode:
    host: str
    port: int = 6379


@define(frozen=True)
class SentinelSection:
    master_name: str
    nodes: list[RedisNode]
    password: str | None = None


@define(frozen=True)
class RedisSection:
    """Where L2 lives. ``url`` wins over host/port; ``embedded`` starts a private engine."""

    url: str | None = None
    host: str = "localhost"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    max_connections: int = 50
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    health_check_interval: float = 15.0
    retry_attempts: int = 3
    key_prefix: str = "ca:"
    cluster_mode: bool = False
    nodes: list[RedisNode] = field(factory=list)
    sentinel: SentinelSection | None = None
    data_dir: str = ".caching-agent/engine"
    """Where the embedded engine (``url: embedded``) keeps its data, so it survives restarts."""
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True


@define(frozen=True)
class PolicySection:
    """A cache policy: the TTL, strategy and compression for keys matching ``match``."""

    ttl: int | str | None = None
    strategy: str | None = None
    compress: bool = False
    match: list[str] = field(factory=list)


@define(frozen=True)
class InvalidationSection:
    methods: list[str] = field(factory=lambda: ["ttl", "event_based", "dependency_tracking"])
    # The seed's list form is normalised to the mapping form: event -> targets.
    event_triggers: dict[str, list[str]] = field(factory=dict)
    dependency_rules: dict[str, list[str]] = field(factory=dict)
    categories: dict[str, str] = field(factory=dict)
    """Key templates of the categories that dependency_rules name (``{id}`` placeholders)."""
    backend: str = "auto"
    """Where tags, dependencies and subscriptions are indexed: ``local`` (this process),
    ``redis`` (shared by every instance; caching-agent[redis]) or ``auto`` (an
    installed index that can live in the L2 tier, as redis in a Redis L2; else local)."""


@define(frozen=True)
class CompressionSection:
    enable: bool = True
    algorithm: str = "gzip"
    threshold_bytes: int = 1024
    compression_level: int = 6
    max_decompressed_bytes: int = 8 * MIB
    """A stored frame that would inflate past this is refused, never allocated."""


@define(frozen=True)
class MonitoringSection:
    track_hit_rate: bool = True
    track_latency: bool = True
    alert_on_low_hit_rate: float | None = 0.6
    """Alert while the hit rate over the window is below this (None: never)."""
    alert_on_high_latency: float | None = 10.0
    """Alert while the p99 operation latency (ms) over the window is above this."""
    alert_window: float = 60.0
    alert_interval: float = 5.0
    alert_min_lookups: int = 100
    """Lookups the window must hold before the hit rate is judged (0: any). Below it no
    hit-rate alert is raised and an active one clears: over 20 lookups a cache hitting 70 %
    reads as under 60 % one window in nine; over 100, one in eighty."""
    alert_min_latency_samples: int = 100
    """Timed operations the window must hold before its p99 latency is judged (0: any).
    Below 100 the p99 is the slowest operation itself, so one slow call (a cold connection,
    a loader) would raise the alert; from 100 on it takes at least two in a hundred."""
    prometheus_enabled: bool = True
    """Serve GET /metrics (Prometheus text) on the app's own port."""
    prometheus_port: int | None = None
    """Also serve /metrics on this port."""
    recorders: list[str] | None = None
    """Metrics plugins to start; None: every one installed."""
    otlp_endpoint: str | None = None
    """Send metrics (and traces, when tracing is otlp) to this OTLP/HTTP collector."""
    tracing: str = "none"
    """Trace exporter: none, console or otlp."""
    log_format: str = "auto"
    """json (JSON lines), text (key=value) or auto (text on a terminal, else json)."""
    log_level: str = "info"
    """debug, info, warning or error: the least severe event logged. At debug the server
    logs every lookup (``cache_hit``, ``cache_miss``); ``serve --log-level`` overrides it."""
    l2_count_interval: float = 30.0
    """Seconds between two background counts of L2's keys, the ``l2_size_keys`` that
    ``get_stats()`` answers (each count is a SCAN of the prefix); at least 1; 0: only at
    start and when ``fetch_stats()`` (``GET /stats``) asks."""


@define(frozen=True)
class LimitsSection:
    """Bounds on what one request or call may ask for; the defaults are safe for a service."""

    max_key_length: int = 512
    max_value_bytes: int = 4 * MIB
    max_batch_size: int = 1000
    max_warmup_keys: int = 1000
    max_request_bytes: int = 8 * MIB
    max_pattern_length: int = 256
    max_pattern_wildcards: int = 8
    """``*`` and ``?`` in one invalidation pattern from a caller."""
    allow_pattern_classes: bool = False
    """Whether caller patterns may use ``[...]`` classes."""
    max_ttl: float = 10 * 365 * 86400
    """Seconds a write's TTL may ask for (10 years); above it, or not finite, is a 400."""
    max_tags: int = 64
    """Tags one write (or one batch write) may carry."""
    max_dependencies: int = 64
    """Dependencies one write may carry."""


@define(frozen=True)
class LoadingSection:
    """How loaders are called: on a miss (read-through), by warm-up and get_or_compute."""

    timeout: float = 3.0
    """Seconds one loader call may take before it counts as failed."""
    lock_lease: float = 5.0
    """Seconds an instance holds the cross-instance lock on a key it loads; a dead holder
    blocks the others no longer than this."""
    negative_ttl: float = 30.0
    """Seconds a key a loader found nothing for is answered as a miss without asking again."""
    warm_concurrency: int = 32
    """Loader calls at once during a parallel warm-up."""
    warm_on_start: list[str] = field(factory=list)
    """Keys warmed (loaded into the cache) when the agent starts."""


@define(frozen=True)
class ClientToken:
    """A bearer token a client presents, and the namespace its keys live in (None: none)."""

    token: str
    namespace: str | None = None


@define(frozen=True)
class ServerSection:
    """Who may call the HTTP API, and how long a request body may take to arrive. With no
    token configured, anyone on the network may call it."""

    body_timeout: float = 10.0
    """Seconds a request body may take to arrive in full; a slower one is a 408."""

    auth_token: str | None = None
    """One bearer token for every route but /health (env CACHE_API_TOKEN)."""
    tokens: list[ClientToken] = field(factory=list)
    """Tokens with namespaces: a client sees, writes and invalidates only its own keys."""


@define(frozen=True)
class CircuitBreakerSection:
    """When to stop waiting on L2 (see cache_core.breaker)."""

    failure_threshold: int = 5
    """Consecutive failed L2 calls that open the breaker."""
    probe_after: float = 0.25
    """Seconds the breaker stays open before the first probe call is let through; each
    failed probe doubles the wait, up to ``reset_timeout``."""
    reset_timeout: float = 1.0
    """The longest wait between probes while L2 stays away: the service is back within
    about this long of L2."""
    operation_timeout: float = 1.0
    """Seconds one L2 call (a read, a write, a batch) may take before it counts as failed."""


@define(frozen=True)
class Config:
    agent: AgentSection = field(factory=AgentSection)
    redis: RedisSection = field(factory=RedisSection)
    cache_tiers: dict[str, dict[str, Any]] = field(factory=lambda: {"l1": {"type": "memory"}})
    strategies: dict[str, Any] = field(factory=lambda: {"default": "write_through"})
    cache_policies: dict[str, PolicySection] = field(factory=dict)
    invalidation: InvalidationSection = field(factory=InvalidationSection)
    compression: CompressionSection = field(factory=CompressionSection)
    monitoring: MonitoringSection = field(factory=MonitoringSection)
    key_patterns: dict[str, str] = field(factory=dict)
    ttl_presets: dict[str, int] = field(factory=dict)
    loaders: dict[str, dict[str, Any]] = field(factory=dict)
    loading: LoadingSection = field(factory=LoadingSection)
    circuit_breaker: CircuitBreakerSection = field(factory=CircuitBreakerSection)
    server: ServerSection = field(factory=ServerSection)
    limits: LimitsSection = field(factory=LimitsSection)
    env_sources: dict[str, str] = field(factory=dict, init=False, eq=False, repr=False)
    """Dotted field -> the environment variable that set it (for error messages)."""

    @property
    def default_strategy(self) -> str:
        return str(self.strategies.get("default", "write_through"))


DEFAULT_TIER_TYPES = {"l1": "memory", "l2": "redis"}
LOG_LEVELS = ("debug", "info", "warning", "error")
"""What ``monitoring.log_level`` (and ``serve --log-level``) accept, least severe first."""

# Environment variables of the seed, and where each lands in config.yaml.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "REDIS_URL": ("redis", "url"),
    "REDIS_HOST": ("redis", "host"),
    "REDIS_PORT": ("redis", "port"),
    "REDIS_PASSWORD": ("redis", "password"),
    "CACHE_L1_SIZE_MB": ("cache_tiers", "l1", "max_size_mb"),
    "CACHE_DEFAULT_STRATEGY": ("strategies", "default"),
    "CACHE_API_TOKEN": ("server", "auth_token"),
}


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, Mapping | list) else type(value).__name__


def _strict(kind: type, expected: str, accept: Callable[[Any], bool]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if not accept(value):
            raise ValueError(f"expected {expected}, got {_describe(value)}")
        return kind(value)

    return structure


def make_converter() -> cattrs.Converter:
    """The converter for config.yaml and for every plugin's ``Options``.

    YAML already types its scalars, so nothing is coerced: ``'big'`` is not a number and
    ``1`` is not a string. Unknown keys are refused, so a typo names its path.
    """
    conv = cattrs.Converter(forbid_extra_keys=True)

    def not_bool(v: Any) -> bool:
        return not isinstance(v, bool)

    conv.register_structure_hook(
        int, _strict(int, "an integer", lambda v: isinstance(v, int) and not_bool(v))
    )
    conv.register_structure_hook(
        float, _strict(float, "a number", lambda v: isinstance(v, int | float) and not_bool(v))
    )
    conv.register_structure_hook(str, _strict(str, "a string", lambda v: isinstance(v, str)))
    conv.register_structure_hook(
        bool, _strict(bool, "true or false", lambda v: isinstance(v, bool))
    )

    # cattrs takes any iterable for a list (a string becomes its characters) and any
    # mapping-like for a dict: here each must be that JSON/YAML type itself.
    def strict_list(cl: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = list_structure_factory(cl, converter)

        def structure(value: Any, kind: Any) -> Any:
            if not isinstance(value, list):
                raise ValueError(f"expected a list, got {_describe(value)}")
            return inner(value, kind)

        return structure

    def strict_mapping(cl: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = mapping_structure_factory(cl, converter)

        def structure(value: Any, kind: Any) -> Any:
            if not isinstance(value, Mapping):
                raise ValueError(f"expected a mapping, got {_describe(value)}")
            return inner(value, kind)

        return structure

    def strict_section(cl: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = make_dict_structure_fn(cl, converter, _cattrs_forbid_extra_keys=True)

        def structure(value: Any, kind: Any) -> Any:
            if not isinstance(value, Mapping):
                raise ValueError(f"expected a mapping, got {_describe(value)}")
            return inner(value, kind)

        return structure

    conv.register_structure_hook_factory(is_sequence, strict_list)
    conv.register_structure_hook_factory(is_mapping, strict_mapping)
    conv.register_structure_hook_factory(attrs.has, strict_section)

    def ttl_or_preset(value: Any, _: Any) -> int | str | None:
        if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
            return value
        raise ValueError(f"expected seconds or a ttl_presets name, got {_describe(value)}")

    conv.register_structure_hook(int | str | None, ttl_or_preset)

    def invalidation(value: Any, _: Any) -> InvalidationSection:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping, got {_describe(value)}")
        # The seed lists event names; the mapping form adds what each event invalidates.
        if isinstance(value, Mapping) and isinstance(value.get("event_triggers"), list):
            names = value["event_triggers"]
            value = {**value, "event_triggers": {name: [] for name in names}}
        return base_invalidation(value, InvalidationSection)

    base_invalidation = make_dict_structure_fn(
        InvalidationSection, conv, _cattrs_forbid_extra_keys=True
    )
    conv.register_structure_hook(InvalidationSection, invalidation)
    return conv


_CONVERTER = make_converter()
_KEY_STEP = re.compile(r"\[['\"]([^'\"]*)['\"]\]")


def _format_exception(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        names = ", ".join(sorted(exc.extra_fields))
        return f"unknown field{'s' if len(exc.extra_fields) > 1 else ''} {names}"
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ValueError | TypeError) and str(exc):
        return str(exc)
    return f"invalid value ({type(exc).__name__})"


def _dotted(prefix: str, cattrs_path: str) -> str:
    tail = _KEY_STEP.sub(lambda m: "." + m.group(1), cattrs_path.removeprefix("$"))
    return (prefix + tail).lstrip(".") or "(root)"


def config_errors(exc: Exception, prefix: str = "") -> list[str]:
    """One ``path: message`` line per problem cattrs found, paths dotted from ``prefix``."""
    lines = []
    for line in cattrs.transform_error(exc, format_exception=_format_exception):
        message, _, path = line.rpartition(" @ ")
        where = _dotted(prefix, path)
        # Missing fields inside a mapping report the key they were on; unknown ones the object.
        if message.startswith("unknown field") and where == "(root)":
            lines.append(message)
        else:
            lines.append(f"{where}: {message}")
    return lines


def structure(data: Any, cls: type[T], path: str, converter: cattrs.Converter = _CONVERTER) -> T:
    """Structure ``data`` into ``cls`` or raise :class:`ConfigError` naming the field."""
    if data is None:
        data = {}
    if attrs.has(cls) and not isinstance(data, Mapping):
        raise ConfigError(f"{path or '(root)'}: expected a mapping, got {_describe(data)}")
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises groups of anything a hook raised
        lines = config_errors(exc, path)
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise ConfigError(f"{lines[0]}{more}") from None


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Write the seed's environment overrides into ``raw``; return {dotted path: variable}."""
    applied: dict[str, str] = {}
    for var, path in ENV_OVERRIDES.items():
        if var not in env:
            continue
        node = raw
        for step in path[:-1]:
            child = node.get(step)
            if not isinstance(child, dict):
                child = node[step] = {} if child is None else child
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:-1])}: expected a mapping to apply {var}")
            node = child
        # Parse like YAML so REDIS_PORT=6380 is a number and REDIS_PASSWORD=null is null.
        text = env[var]
        try:
            node[path[-1]] = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            node[path[-1]] = text
        if (
            var in ("REDIS_PASSWORD", "REDIS_HOST", "REDIS_URL", "CACHE_API_TOKEN")
            and node[path[-1]] is not None
        ):
            node[path[-1]] = text  # these are strings whatever they look like
        applied[".".join(path)] = var
    if ("REDIS_HOST" in env or "REDIS_PORT" in env) and "REDIS_URL" not in env:
        # Naming a host means that server, not the url (e.g. `embedded`) in the file.
        redis = raw.get("redis")
        if isinstance(redis, dict):
            redis["url"] = None
    return applied


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw mapping of a YAML config file, or :class:`ConfigError` saying what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{os.fspath(path)}: not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{os.fspath(path)}: {problem}{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{os.fspath(path)}: expected a mapping at the top level")
    return raw


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build a :class:`Config` from a YAML path, a mapping or defaults, plus env overrides."""
    if isinstance(source, Config):
        return source
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = _deep_copy(source)
    else:
        raw = read_config_file(source)
    applied = _apply_env(raw, os.environ if env is None else env)
    try:
        config = structure(raw, Config, "")
        object.__setattr__(config, "env_sources", applied)
        _check(config)
    except ConfigError as exc:
        raise ConfigError(name_env_source(str(exc), applied)) from None
    return config


def name_env_source(message: str, sources: Mapping[str, str]) -> str:
    """``message`` with ``(from VAR)`` after its field when an env variable set that field."""
    for dotted, var in sources.items():
        if message.startswith(dotted + ":"):
            return f"{dotted} (from {var}){message[len(dotted) :]}"
    return message


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_copy(v) for v in value]
    return value


def _check(config: Config) -> None:
    """Rules that span fields or bound values; plugin-dependent rules live in assembly."""
    positive = {
        "agent.port": config.agent.port,
        "redis.max_connections": config.redis.max_connections,
        "limits.max_key_length": config.limits.max_key_length,
        "limits.max_value_bytes": config.limits.max_value_bytes,
        "limits.max_batch_size": config.limits.max_batch_size,
        "limits.max_warmup_keys": config.limits.max_warmup_keys,
        "limits.max_request_bytes": config.limits.max_request_bytes,
        "limits.max_pattern_length": config.limits.max_pattern_length,
        "limits.max_ttl": config.limits.max_ttl,
        "limits.max_tags": config.limits.max_tags,
        "limits.max_dependencies": config.limits.max_dependencies,
        "compression.max_decompressed_bytes": config.compression.max_decompressed_bytes,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name}: must be greater than 0, got {value}")
    if not 0 < config.agent.port < 65536:
        raise ConfigError(f"agent.port: must be a TCP port (1-65535), got {config.agent.port}")
    if config.redis.socket_timeout <= 0 or config.redis.connect_timeout <= 0:
        raise ConfigError("redis.socket_timeout and redis.connect_timeout: must be greater than 0")
    monitoring = config.monitoring
    if monitoring.alert_window <= 0 or monitoring.alert_interval <= 0:
        raise ConfigError("monitoring.alert_window and alert_interval: must be greater than 0")
    if monitoring.tracing not in ("none", "console", "otlp"):
        raise ConfigError(
            f"monitoring.tracing: expected none, console or otlp, got {monitoring.tracing!r}"
        )
    if monitoring.tracing == "otlp" and not monitoring.otlp_endpoint:
        raise ConfigError("monitoring.tracing: otlp needs monitoring.otlp_endpoint")
    if monitoring.log_format not in ("auto", "json", "text"):
        raise ConfigError(
            f"monitoring.log_format: expected auto, json or text, got {monitoring.log_format!r}"
        )
    if monitoring.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"monitoring.log_level: expected {', '.join(LOG_LEVELS)}, got {monitoring.log_level!r}"
        )
    for name in ("alert_min_lookups", "alert_min_latency_samples"):
        count = getattr(monitoring, name)
        if count < 0:
            raise ConfigError(f"monitoring.{name}: must be 0 or more, got {count}")
    interval = monitoring.l2_count_interval
    if not (interval == 0 or 1 <= interval < math.inf):
        # Each count is a SCAN of the whole prefix: more often than a second costs the engine.
        raise ConfigError(
            f"monitoring.l2_count_interval: expected 0 (off) or at least 1 second, got {interval}"
        )
    server = config.server
    if not server.body_timeout > 0:  # NaN included
        raise ConfigError(f"server.body_timeout: must be greater than 0, got {server.body_timeout}")
    all_tokens = [t.token for t in server.tokens] + (
        [server.auth_token] if server.auth_token is not None else []
    )
    if any(len(token) < 16 for token in all_tokens):
        raise ConfigError("server: every token must be at least 16 characters long")
    if len(set(all_tokens)) != len(all_tokens):
        raise ConfigError("server: the same token is configured twice")
    for index, client in enumerate(server.tokens):
        if client.namespace is not None and (
            not client.namespace or not client.namespace.isprintable()
        ):
            raise ConfigError(f"server.tokens[{index}].namespace: expected printable text")
    breaker = config.circuit_breaker
    if breaker.failure_threshold <= 0 or breaker.reset_timeout <= 0 or breaker.probe_after <= 0:
        raise ConfigError(
            "circuit_breaker.failure_threshold, probe_after and reset_timeout: must be > 0"
        )
    if breaker.operation_timeout <= 0:
        raise ConfigError("circuit_breaker.operation_timeout: must be greater than 0")
    loading = config.loading
    for name, seconds in (
        ("timeout", loading.timeout),
        ("lock_lease", loading.lock_lease),
        ("negative_ttl", loading.negative_ttl),
        ("warm_concurrency", loading.warm_concurrency),
    ):
        if seconds <= 0:
            raise ConfigError(f"loading.{name}: must be greater than 0, got {seconds}")
    max_ttl = config.limits.max_ttl
    for name, seconds in config.ttl_presets.items():
        if seconds <= 0:
            raise ConfigError(f"ttl_presets.{name}: must be greater than 0, got {seconds}")
        if seconds > max_ttl:
            raise ConfigError(
                f"ttl_presets.{name}: {seconds} is above limits.max_ttl ({max_ttl:g})"
            )
    for name, policy in config.cache_policies.items():
        if isinstance(policy.ttl, str) and policy.ttl not in config.ttl_presets:
            known = ", ".join(sorted(config.ttl_presets)) or "none defined"
            raise ConfigError(
                f"cache_policies.{name}.ttl: unknown ttl preset {policy.ttl!r} (known: {known})"
            )
        if isinstance(policy.ttl, int) and policy.ttl <= 0:
            raise ConfigError(
                f"cache_policies.{name}.ttl: must be greater than 0, got {policy.ttl}"
            )
        if isinstance(policy.ttl, int) and policy.ttl > max_ttl:
            raise ConfigError(
                f"cache_policies.{name}.ttl: {policy.ttl} is above limits.max_ttl ({max_ttl:g})"
            )
    tiers = config.cache_tiers
    if "l1" not in tiers:
        raise ConfigError("cache_tiers.l1: required field missing")
    for name, section in tiers.items():
        if name not in ("l1", "l2"):
            raise ConfigError(f"cache_tiers: unknown tier {name!r} (known: l1, l2)")
        if not isinstance(section, dict):
            raise ConfigError(f"cache_tiers.{name}: expected a mapping, got {_describe(section)}")
        section.setdefault("type", DEFAULT_TIER_TYPES[name])
        if not isinstance(section["type"], str):
            raise ConfigError(f"cache_tiers.{name}.type: expected a tier plugin name")
    if not isinstance(config.strategies.get("default", "write_through"), str):
        raise ConfigError("strategies.default: expected a strategy name")
    if config.compression.max_decompressed_bytes < config.limits.max_value_bytes:
        raise ConfigError(
            "compression.max_decompressed_bytes: must be at least limits.max_value_bytes "
            f"({config.limits.max_value_bytes}), got {config.compression.max_decompressed_bytes}"
        )
    level = config.compression.compression_level
    if not 0 <= level <= 22:
        raise ConfigError(f"compression.compression_level: out of range, got {level}")
