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
import typing
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
from cache_core.settings import apply_env, field_names, parse_env

T = TypeVar("T")

MIB = 1024 * 1024


@define(frozen=True)
class PolicySection:
    """A cache policy: the TTL, strategy and compression for keys matching ``match``."""

    ttl: int | str | None = None
    strategy: str | None = None
    compress: bool = False
    match: list[str] = field(factory=list)
    sliding: bool = False
    """Every read extends the entry's TTL (``ttl``) again, in L1 and L2 (expire after
    access: a session lives while it is used)."""


@define(frozen=True)
class InvalidationSection:
    """Core's fields; the events, dependency rules and categories belong to the plugin
    that reads them (caching-agent[invalidation])."""

    methods: list[str] = field(factory=lambda: ["ttl", "event_based", "dependency_tracking"])
    backend: str = "auto"
    """Where tags, dependencies and subscriptions are indexed: ``local`` (this process),
    ``redis`` (shared by every instance; caching-agent[redis]) or ``auto`` (an
    installed index that can live in the L2 tier, as redis in a Redis L2; else local)."""


@define(frozen=True)
class CompressionSection:
    enable: bool = True
    algorithm: str | None = None
    """The codec plugin that compresses; None: ``gzip`` where its plugin
    (caching-agent[compression]) is installed, else values are stored uncompressed (a
    codec named here must be installed)."""
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
    recorders: list[str] | None = None
    """Metrics plugins to start; None: every one installed."""
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
    """Core's sections, structured; what plugins own is kept raw until a plugin asks for it
    with :meth:`section` (see :mod:`cache_core.settings`)."""

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
    limits: LimitsSection = field(factory=LimitsSection)
    env_sources: dict[str, str] = field(factory=dict, init=False, eq=False, repr=False)
    """Dotted field -> the environment variable that set it (for error messages)."""
    unclaimed: dict[str, Any] = field(factory=dict, init=False, eq=False, repr=False)
    """What core does not own, raw: plugins' sections, and plugins' fields of core's
    sections (``monitoring.log_level``), by section."""
    env: Mapping[str, str] = field(factory=dict, init=False, eq=False, repr=False)
    """The environment the config was read with: plugins' overrides apply from it."""
    _sections: dict[type, Any] = field(factory=dict, init=False, eq=False, repr=False)

    @property
    def default_strategy(self) -> str:
        return str(self.strategies.get("default", "write_through"))

    def section(self, cls: type[T]) -> T:
        """The plugin settings ``cls`` (:mod:`cache_core.settings`) from its section, with
        its environment overrides; structured once. Raises :class:`ConfigError` naming
        the field (and the variable that set it)."""
        try:
            return self._sections[cls]  # type: ignore[no-any-return]
        except KeyError:
            pass
        name: str = cls.SECTION  # type: ignore[attr-defined]
        value = self.unclaimed.get(name)
        mine = field_names(cls)
        raw = {k: v for k, v in value.items() if k in mine} if isinstance(value, dict) else value
        sources: dict[str, str] = {}
        if raw is None or isinstance(raw, dict):
            raw = _deep_copy(raw or {})
            sources = apply_env(cls, raw, self.env, name)
            prepare = getattr(cls, "prepare", None)
            if prepare is not None:
                prepare(raw)
        try:
            built = structure(raw, cls, name)
            check = getattr(built, "check", None)
            if check is not None:
                check()
        except ConfigError as exc:
            named = {**self.env_sources, **sources}  # a generic CACHE__ override too
            raise ConfigError(name_env_source(str(exc), named)) from None
        self._sections[cls] = built
        self.env_sources.update(sources)  # what check-config shows as applied
        return built


CORE_SECTIONS: dict[str, set[str]] = {
    name: field_names(kind) if attrs.has(kind) else set()
    for name, kind in typing.get_type_hints(Config).items()
    if name in {f.name for f in attrs.fields(Config) if f.init}
}
"""Core's sections and, for those it models, their fields: every other key belongs to a
plugin. (A section core holds as a mapping, ``cache_tiers``, is core's whole.)"""

# Environment variables of the seed core reads, and where each lands in config.yaml
# (plugins declare theirs: cache_core.settings).
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "CACHE_L1_SIZE_MB": ("cache_tiers", "l1", "max_size_mb"),
    "CACHE_DEFAULT_STRATEGY": ("strategies", "default"),
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


GENERIC_ENV_PREFIX = "CACHE__"
"""``CACHE__SECTION__KEY=value`` sets any field (``CACHE__CACHE_TIERS__L1__TTL=30``): names
joined by double underscores, case-insensitive; the value read as YAML would read it."""
GENERIC_ENV_DEPTH = 6
"""Names a generic override may join at most."""


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Write the generic ``CACHE__…`` environment overrides, then core's named ones (a named
    variable wins, as a plugin's own do: they apply when its section is read), into
    ``raw``; return {dotted path: variable}."""
    applied: dict[str, str] = {}
    overrides: list[tuple[str, tuple[str, ...]]] = []
    for var in sorted(env):
        if var.upper().startswith(GENERIC_ENV_PREFIX):
            path = tuple(step.lower() for step in var[len(GENERIC_ENV_PREFIX) :].split("__"))
            if not all(path) or len(path) < 2 or len(path) > GENERIC_ENV_DEPTH:
                raise ConfigError(
                    f"{var}: expected CACHE__SECTION__KEY (2 to {GENERIC_ENV_DEPTH} names "
                    "joined by double underscores)"
                )
            overrides.append((var, path))
    overrides += [(var, path) for var, path in ENV_OVERRIDES.items() if var in env]
    for var, path in overrides:
        node = raw
        for step in path[:-1]:
            child = node.get(step)
            if not isinstance(child, dict):
                child = node[step] = {} if child is None else child
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:-1])}: expected a mapping to apply {var}")
            node = child
        node[path[-1]] = parse_env(object, path[-1], env[var])
        applied[".".join(path)] = var
    return applied


def _split(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``raw`` as (what core structures, what plugins own): sections core does not know
    go to plugins whole, and fields core does not model of a section it does, one by one."""
    core: dict[str, Any] = {}
    unclaimed: dict[str, Any] = {}
    for name, value in raw.items():
        fields = CORE_SECTIONS.get(name)
        if fields is None:
            unclaimed[name] = value
        elif fields and isinstance(value, dict):
            core[name] = {k: v for k, v in value.items() if k in fields}
            rest = {k: v for k, v in value.items() if k not in fields}
            if rest:
                unclaimed[name] = rest
        else:
            core[name] = value
    return core, unclaimed


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
    env = dict(os.environ if env is None else env)
    applied = _apply_env(raw, env)
    core, unclaimed = _split(raw)
    try:
        config = structure(core, Config, "")
        object.__setattr__(config, "env_sources", applied)
        object.__setattr__(config, "unclaimed", unclaimed)
        object.__setattr__(config, "env", env)
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
    monitoring = config.monitoring
    if monitoring.alert_window <= 0 or monitoring.alert_interval <= 0:
        raise ConfigError("monitoring.alert_window and alert_interval: must be greater than 0")
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
        if name == "l1":
            section.setdefault("type", "memory")
        if "type" not in section:
            raise ConfigError(
                f"cache_tiers.{name}.type: required field missing (an L2 tier plugin)"
            )
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
