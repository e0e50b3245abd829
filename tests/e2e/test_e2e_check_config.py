"""``caching-agent check-config``: one line on stderr and exit 2 for a wrong config."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SHIPPED = Path(__file__).resolve().parents[2] / "config.yaml"
SEED_POLICIES = (
    "personalized_content",
    "model_inference",
    "graph_queries",
    "static_content",
    "user_session",
    "analytics_data",
)


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_bad_number_prints_one_line_naming_the_field_and_exits_2(spawner, workdir):
    (workdir / "bad.yaml").write_text(
        "cache_tiers:\n  l1:\n    max_size_mb: big\n", encoding="utf-8"
    )
    result = spawner.cli("check-config", "--config", "bad.yaml")
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "cache_tiers.l1.max_size_mb" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_shipped_config_is_ok_and_lists_the_policies(spawner):
    assert SHIPPED.is_file()
    result = spawner.cli("check-config", "--config", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout.splitlines()
    assert out[0].endswith(": ok")
    for name in SEED_POLICIES:
        assert any(line.startswith(f"policy {name}:") for line in out), (name, out)
    assert any(line.startswith("tiers: l1=memory") for line in out), out


def test_missing_codec_plugin_names_the_extra_and_exits_2(spawner, workdir):
    (workdir / "zstd.yaml").write_text("compression:\n  algorithm: zstd\n", encoding="utf-8")
    # The dev environment has every extra installed; load only the redis and invalidation
    # plugins (the product's own allow-list variable), as an install without the
    # compression extras would.
    result = spawner.cli(
        "check-config",
        "--config",
        "zstd.yaml",
        env={"CACHING_AGENT_PLUGINS": "redis,invalidation"},
    )
    assert result.returncode == 2, result
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "caching-agent[zstd]" in lines[0]
    assert "compression.algorithm" in lines[0]


def test_check_config_without_config_uses_defaults_in_an_empty_dir(spawner):
    result = spawner.cli("check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "config: built-in defaults: ok"


BAD_CONFIGS = {
    "number-is-a-list": (
        "cache_tiers:\n  l1:\n    max_size_mb: [1]\n",
        "cache_tiers.l1.max_size_mb",
    ),
    "unknown-strategy": ("strategies:\n  default: write_sideways\n", "strategies.default"),
    "typo-field": ("agent:\n  prot: 1\n", "prot"),
    "bad-yaml": ("key: [unclosed\n", "line"),
}


def test_each_bad_config_gives_one_line_and_exit_2(spawner, workdir):
    for name, (text, _) in BAD_CONFIGS.items():
        (workdir / f"{name}.yaml").write_text(text, encoding="utf-8")
    # one process per config, run side by side to keep the suite fast
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(
            zip(
                BAD_CONFIGS,
                pool.map(
                    lambda name: spawner.cli("check-config", "--config", f"{name}.yaml"),
                    BAD_CONFIGS,
                ),
                strict=True,
            )
        )
    for name, (_, field) in BAD_CONFIGS.items():
        result = results[name]
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        lines = stderr_lines(result)
        assert len(lines) == 1, (name, result.stderr)
        assert field in lines[0], (name, lines[0])
        assert result.stdout == "", name


def test_policy_match_given_as_a_string_is_refused(spawner, workdir):
    (workdir / "c.yaml").write_text("cache_policies:\n  p:\n    match: 'user:*'\n", "utf-8")
    result = spawner.cli("check-config", "--config", "c.yaml")
    assert result.returncode == 2, result.stdout
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "cache_policies.p.match" in lines[0]


def test_missing_config_file_exits_2(spawner):
    result = spawner.cli("check-config", "--config", "nope.yaml")
    assert result.returncode == 2
    assert len(stderr_lines(result)) == 1
    assert "nope.yaml" in result.stderr
