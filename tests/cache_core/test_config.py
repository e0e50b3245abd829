"""load_config: defaults, the seed's config.yaml, one-line errors naming the field, env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cache_core import CachingAgent, ConfigError, load_config
from cache_core.config import Config

# The "Complete Configuration Reference" block of the seed spec, verbatim.
SEED_CONFIG_YAML = """\
agent:
  name: "caching_agent"
  version: "1.0.0"
  port: 8015
  host: "0.0.0.0"

redis:
  host: "localhost"          # Redis server host
  port: 6379                 # Redis server port
  db: 0                      # Redis database number
  password: null             # Redis password (null if no auth)
  max_connections: 50        # Connection pool size
  socket_timeout: 5          # Connection timeout (seconds)

cache_tiers:
  l1:                        # In-memory cache
    type: "memory"
    max_size_mb: 100         # Maximum L1 cache size
    ttl: 60                  # Default TTL (seconds)

  l2:                        # Redis cache
    type: "redis"
    ttl: 3600                # Default TTL (seconds)
    eviction_policy: "lru"   # Redis eviction policy

strategies:
  default: "write_through"   # Default cache strategy

  write_through:             # Write to both L1 and L2
    sync: true

  write_back:                # Write to L1, buffer L2
    batch_size: 100          # Flush after N items
    flush_interval: 5        # Flush every N seconds

cache_policies:
  personalized_content:      # User-specific content
    ttl: 3600                # 1 hour
    strategy: "write_through"
    compress: true

  model_inference:           # AI model predictions
    ttl: 86400               # 24 hours
    strategy: "write_back"
    compress: false

  graph_queries:             # Knowledge graph traversals
    ttl: 1800                # 30 minutes
    strategy: "write_through"
    compress: false

  static_content:            # Curriculum materials
    ttl: 604800              # 7 days
    strategy: "write_through"
    compress: true

  user_session:              # Session state
    ttl: 7200                # 2 hours
    strategy: "write_through"
    compress: false

  analytics_data:            # Aggregated metrics
    ttl: 43200               # 12 hours
    strategy: "write_back"
    compress: true

invalidation:
  methods:
    - ttl                    # Time-based expiration
    - event_based            # Event-triggered invalidation
    - dependency_tracking    # Cascade invalidation

  event_triggers:
    - user_profile_update    # User data changed
    - content_modification   # Content updated
    - mastery_update         # Learning progress changed

  dependency_rules:
    user_profile:
      - personalized_content
      - recommendations

    content_library:
      - content_metadata
      - search_results

compression:
  enable: true               # Enable compression
  algorithm: "gzip"          # Compression algorithm
  threshold_bytes: 1024      # Compress if larger than 1KB
  compression_level: 6       # gzip level (1-9)

monitoring:
  track_hit_rate: true       # Track cache hit rate
  track_latency: true        # Track operation latency
  alert_on_low_hit_rate: 0.6 # Alert if hit rate < 60%
  alert_on_high_latency: 10  # Alert if latency > 10ms

key_patterns:
  user: "user:{user_id}:{resource}"
  content: "content:{content_id}"
  session: "session:{session_id}"
  query: "query:{query_hash}"
  model: "model:{model_name}:{input_hash}"

ttl_presets:
  temporary: 300             # 5 minutes
  short: 1800                # 30 minutes
  medium: 3600               # 1 hour
  long: 86400                # 24 hours
  permanent: 604800          # 7 days
"""

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}
NO_COMPRESSION = {"compression": {"enable": False}}


def config_error(source: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(source, env={} if env is None else env)
    message = str(info.value)
    assert "\n" not in message
    return message


def assembly_error(source: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(source, env={**NO_PLUGINS, **(env or {})})
    message = str(info.value)
    assert "\n" not in message
    return message


# -- defaults and the seed -----------------------------------------------------------------


def test_defaults() -> None:
    config = load_config(None, env={})
    assert config == Config()
    assert load_config({}, env={}) == config
    assert config.cache_tiers == {"l1": {"type": "memory"}}
    assert config.default_strategy == "write_through"
    assert config.compression.enable is True
    assert config.compression.algorithm is None  # gzip where its plugin is installed
    assert config.compression.threshold_bytes == 1024
    assert config.cache_policies == {}
    assert config.ttl_presets == {}


def test_a_config_object_is_returned_as_is() -> None:
    config = load_config({"agent": {"port": 9000}}, env={})
    assert load_config(config, env={"REDIS_PORT": "1"}) is config


def test_the_seed_config_yaml_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED_CONFIG_YAML, encoding="utf-8")
    config = load_config(path, env={})
    # The plugins' own sections, and the invalidation plugin's fields of core's section.
    assert set(config.unclaimed) == {"agent", "redis", "invalidation"}
    assert config.cache_tiers["l1"] == {"type": "memory", "max_size_mb": 100, "ttl": 60}
    assert config.cache_tiers["l2"]["type"] == "redis"
    assert config.strategies["write_back"] == {"batch_size": 100, "flush_interval": 5}
    assert config.default_strategy == "write_through"
    assert len(config.cache_policies) == 6
    assert config.cache_policies["model_inference"].ttl == 86400
    assert config.cache_policies["model_inference"].strategy == "write_back"
    assert config.cache_policies["analytics_data"].compress is True
    assert config.invalidation.methods == ["ttl", "event_based", "dependency_tracking"]
    assert config.monitoring.alert_on_high_latency == 10.0
    assert config.key_patterns["model"] == "model:{model_name}:{input_hash}"
    assert config.ttl_presets == {
        "temporary": 300,
        "short": 1800,
        "medium": 3600,
        "long": 86400,
        "permanent": 604800,
    }
    assert load_config(str(path), env={}) == config  # a str path works too


# -- wrong types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"compression": {"enable": "yes"}},
            "compression.enable: expected true or false, got 'yes'",
        ),
        ({"ttl_presets": {"short": "x"}}, "ttl_presets.short: expected an integer, got 'x'"),
        ({"invalidation": {"methods": [1]}}, "invalidation.methods[0]: expected a string, got 1"),
        ({"invalidation": {"methods": "ttl"}}, "invalidation.methods: expected a list, got 'ttl'"),
        (
            {"cache_policies": {"p": {"match": "model:*"}}},
            "cache_policies.p.match: expected a list, got 'model:*'",
        ),
        (
            {"cache_policies": {"p": {"ttl": 5.5}}},
            "cache_policies.p.ttl: expected seconds or a ttl_presets name, got 5.5",
        ),
        ({"cache_policies": [1]}, "cache_policies: expected a mapping, got list"),
        ({"cache_tiers": {"l1": 5}}, "cache_tiers.l1: expected a mapping, got 5"),
        ({"cache_tiers": None}, "cache_tiers: expected a mapping, got None"),
        ({"strategies": {"default": 1}}, "strategies.default: expected a strategy name"),
        (
            {"compression": {"compression_level": 30}},
            "compression.compression_level: out of range, got 30",
        ),
    ],
)
def test_wrong_types_name_the_dotted_field(raw: dict[str, Any], message: str) -> None:
    assert config_error(raw) == message


def test_tier_options_are_type_checked_when_the_agent_is_assembled() -> None:
    raw = {"cache_tiers": {"l1": {"max_size_mb": "big"}}, **NO_COMPRESSION}
    load_config(raw, env={})  # tier sections belong to their plugin: not checked here
    assert assembly_error(raw) == "cache_tiers.l1.max_size_mb: expected a number, got 'big'"


def test_tier_option_values_are_checked_at_assembly() -> None:
    raw = {"cache_tiers": {"l1": {"max_size_mb": 0}}, **NO_COMPRESSION}
    assert assembly_error(raw) == "cache_tiers.l1: max_size_mb must be greater than 0"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            {"cache_policies": {"p": 5}},
            "cache_policies.p: expected a mapping, got 5",
            id="policy-as-number",
        ),
    ],
)
def test_a_section_that_is_not_a_mapping_says_so(raw: dict[str, Any], message: str) -> None:
    assert config_error(raw) == message


# -- unknown and missing fields ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cache_policies": {"p": {"ttll": 1}}}, "cache_policies.p: unknown field ttll"),
        ({"cache_tiers": {"l1": {}, "l3": {}}}, "cache_tiers: unknown tier 'l3' (known: l1, l2)"),
    ],
)
def test_unknown_fields_are_refused(raw: dict[str, Any], message: str) -> None:
    assert config_error(raw) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"foo": 1}, "unknown field foo"),
        ({"foo": 1, "bar": 2}, "unknown fields bar, foo"),
        ({"invalidation": {"event_trigers": []}}, "invalidation: unknown field event_trigers"),
        ({"monitoring": {"alert_windw": 5}}, "monitoring: unknown field alert_windw"),
    ],
)
def test_keys_no_plugin_owns_are_refused_at_assembly(raw: dict[str, Any], message: str) -> None:
    # Until the plugins are known a key may be one's (cache_core.settings): load_config
    # keeps it; the agent, knowing every plugin, refuses it.
    load_config({**raw, **NO_COMPRESSION}, env={})
    assert assembly_error({**raw, **NO_COMPRESSION}) == message


def test_the_servers_settings_are_ignored_with_a_warning_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # They shape only serving: a config.yaml works for the Python API without cache-server.
    raw = {"agent": {"port": 1}, "monitoring": {"log_level": "debug"}, **NO_COMPRESSION}
    with caplog.at_level("WARNING", logger="cache_core.settings"):
        CachingAgent.from_config(raw, env=NO_PLUGINS)
    ignored = sorted(
        (r.__dict__["setting"], r.__dict__["detail"])
        for r in caplog.records
        if r.getMessage() == "settings_ignored"
    )
    assert ignored == [
        ("agent", "read by a plugin: install caching-agent[server]"),
        ("monitoring.log_level", "read by a plugin: install caching-agent[server]"),
    ]


def test_other_shipped_plugins_settings_are_refused_naming_the_extra_without_it() -> None:
    # Ignored, they would silently not hold (the server a user meant, a dependency rule).
    assert assembly_error({"redis": {"host": "x"}, **NO_COMPRESSION}) == (
        "redis: read by a plugin that is not installed; install caching-agent[redis]"
    )


def test_unknown_tier_option_is_refused_at_assembly() -> None:
    raw = {"cache_tiers": {"l1": {"max_sise_mb": 1}}, **NO_COMPRESSION}
    assert assembly_error(raw) == "cache_tiers.l1: unknown field max_sise_mb"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cache_tiers": {"l2": {}}}, "cache_tiers.l1: required field missing"),
    ],
)
def test_missing_required_fields_are_named(raw: dict[str, Any], message: str) -> None:
    assert config_error(raw) == message


# -- environment overrides -----------------------------------------------------------------


def test_env_overrides_land_where_the_seed_says() -> None:
    config = load_config(
        {},
        env={"CACHE_L1_SIZE_MB": "200", "CACHE_DEFAULT_STRATEGY": "write_back", "X": "ignored"},
    )
    assert config.cache_tiers["l1"] == {"type": "memory", "max_size_mb": 200}
    assert config.default_strategy == "write_back"


def test_env_l1_size_reaches_the_built_tier() -> None:
    agent = CachingAgent.from_config(NO_COMPRESSION, env={**NO_PLUGINS, "CACHE_L1_SIZE_MB": "3"})
    assert agent.l1.max_bytes == 3 * 1024 * 1024


def test_the_given_mapping_is_not_modified_by_env() -> None:
    raw: dict[str, Any] = {"cache_tiers": {"l1": {"max_size_mb": 1}}}
    load_config(raw, env={"CACHE_L1_SIZE_MB": "5"})
    assert raw == {"cache_tiers": {"l1": {"max_size_mb": 1}}}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"CACHE_L1_SIZE_MB": "big"}, "CACHE_L1_SIZE_MB", id="l1-size"),
        pytest.param(
            {"CACHE_DEFAULT_STRATEGY": "bogus"}, "CACHE_DEFAULT_STRATEGY", id="default-strategy"
        ),
    ],
)
def test_a_bad_env_value_checked_at_assembly_names_the_variable(
    env: dict[str, str], variable: str
) -> None:
    assert variable in assembly_error(NO_COMPRESSION, env=env)


# -- files ---------------------------------------------------------------------------------


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent:\n\tport: 1\n", encoding="utf-8")
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert "at line 2" in message


def test_unclosed_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("redis:\n  host: [unclosed\n", encoding="utf-8")
    assert config_error(path).startswith(f"{path}: ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert config_error(path) == f"cannot read config file '{path}': No such file or directory"


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    assert config_error(tmp_path).startswith(f"cannot read config file '{tmp_path}'")


def test_a_yaml_list_at_top_level_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    assert config_error(path) == f"{path}: expected a mapping at the top level"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# nothing\n", encoding="utf-8")
    assert load_config(path, env={}) == Config()


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"agent:\n  name: \xff\xfe\n")
    assert str(path) in config_error(path)


# -- invalidation and policies -------------------------------------------------------------


def test_unknown_ttl_preset_in_a_policy() -> None:
    assert config_error({"cache_policies": {"p": {"ttl": "nope"}}}) == (
        "cache_policies.p.ttl: unknown ttl preset 'nope' (known: none defined)"
    )
    assert (
        config_error(
            {"ttl_presets": {"short": 10, "long": 99}, "cache_policies": {"p": {"ttl": "medium"}}}
        )
        == "cache_policies.p.ttl: unknown ttl preset 'medium' (known: long, short)"
    )


def test_known_ttl_preset_in_a_policy() -> None:
    config = load_config(
        {"ttl_presets": {"short": 10}, "cache_policies": {"p": {"ttl": "short"}}}, env={}
    )
    assert config.cache_policies["p"].ttl == "short"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"cache_policies": {"p": {"ttl": -1}}},
            "cache_policies.p.ttl: must be greater than 0, got -1",
        ),
        (
            {"cache_policies": {"p": {"ttl": True}}},
            "cache_policies.p.ttl: expected seconds or a ttl_presets name, got True",
        ),
        ({"ttl_presets": {"x": 0}}, "ttl_presets.x: must be greater than 0, got 0"),
    ],
)
def test_bad_ttls(raw: dict[str, Any], message: str) -> None:
    assert config_error(raw) == message


@pytest.mark.parametrize("value", [-1, 0.001, 0.5, float("inf"), float("nan")])
def test_a_bad_l2_count_interval_is_a_config_error_naming_it(value: float) -> None:
    with pytest.raises(ConfigError, match=r"monitoring\.l2_count_interval"):
        load_config({"monitoring": {"l2_count_interval": value}}, env={})


def test_a_generic_override_sets_any_field_typed_and_named_in_errors() -> None:
    env = {
        "CACHE__CACHE_TIERS__L1__TTL": "30",
        "CACHE__MONITORING__ALERT_ON_LOW_HIT_RATE": "null",
        "CACHE__REDIS__SOCKET_TIMEOUT": "2.5",
    }
    config = load_config({"cache_tiers": {"l1": {"ttl": 60}}}, env=env)
    assert config.cache_tiers["l1"]["ttl"] == 30
    assert config.monitoring.alert_on_low_hit_rate is None
    assert config.env_sources["cache_tiers.l1.ttl"] == "CACHE__CACHE_TIERS__L1__TTL"
    assert config.unclaimed["redis"]["socket_timeout"] == 2.5  # a plugin's section too
    with pytest.raises(ConfigError) as info:
        load_config({}, env={"CACHE__LIMITS__MAX_BATCH_SIZE": "many"})
    assert str(info.value).startswith("limits.max_batch_size (from CACHE__LIMITS__MAX_BATCH_SIZE):")
    with pytest.raises(ConfigError) as info:
        load_config({}, env={"CACHE__LIMITS": "1"})
    assert "CACHE__SECTION__KEY" in str(info.value)


def test_a_named_variable_wins_over_a_generic_one() -> None:
    env = {"CACHE_L1_SIZE_MB": "32", "CACHE__CACHE_TIERS__L1__MAX_SIZE_MB": "16"}
    assert load_config({}, env=env).cache_tiers["l1"]["max_size_mb"] == 32
