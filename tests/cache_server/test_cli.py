"""The command's own subcommands and flags, in process: ``--version`` and ``init-config``."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache_server.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_version_names_the_release_and_each_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("caching-agent 0.1.0 (")
    assert "cache-core 0.1.0" in line and "cache-plugins-redis 0.1.0" in line
    assert "\n" not in line


def test_init_config_writes_the_sample_which_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init-config", "mine.yaml"]) == 0
    written = (tmp_path / "mine.yaml").read_text(encoding="utf-8")
    assert written == (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert main(["check-config", "--config", "mine.yaml"]) == 0
    # An existing file is kept unless asked.
    (tmp_path / "mine.yaml").write_text("# mine\n", encoding="utf-8")
    assert main(["init-config", "mine.yaml"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "mine.yaml").read_text(encoding="utf-8") == "# mine\n"
    assert main(["init-config", "mine.yaml", "--force"]) == 0
    assert (tmp_path / "mine.yaml").read_text(encoding="utf-8") == written


def test_the_packaged_sample_is_the_shipped_config() -> None:
    packaged = ROOT / "packages/cache-server/src/cache_server/sample-config.yaml"
    assert packaged.read_bytes() == (ROOT / "config.yaml").read_bytes()


def with_l2_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ./config.yaml with a Redis L2, in ``tmp_path`` made the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(
        "cache_tiers:\n  l1: {max_size_mb: 8}\n  l2: {type: redis}\n", encoding="utf-8"
    )


def test_check_config_shows_the_l2_target_redacted_and_the_overrides_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_l2_config(tmp_path, monkeypatch)
    monkeypatch.setenv("REDIS_URL", "redis://app:s3cret@127.0.0.1:6390/2")
    assert main(["check-config", "--config", "config.yaml"]) == 0
    out = capsys.readouterr().out
    assert "l2 target: redis://app:***@127.0.0.1:6390/2" in out
    assert "environment overrides: REDIS_URL -> redis.url" in out
    assert "s3cret" not in out
    monkeypatch.delenv("REDIS_URL")
    for name in (
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
        "CACHE_API_TOKEN",
        "CACHE_L1_SIZE_MB",
        "CACHE_DEFAULT_STRATEGY",
        "SQLITE_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    assert main(["check-config", "--config", "config.yaml"]) == 0
    assert "environment overrides: none" in capsys.readouterr().out


def test_a_generic_override_of_a_plugins_field_is_named_when_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_l2_config(tmp_path, monkeypatch)
    monkeypatch.setenv("CACHE__REDIS__SOCKET_TIMEOUT", "soon")
    assert main(["check-config", "--config", "config.yaml"]) == 2
    err = capsys.readouterr().err
    assert "redis.socket_timeout (from CACHE__REDIS__SOCKET_TIMEOUT)" in err, err
    monkeypatch.setenv("CACHE__REDIS__SOCKET_TIMEOUT", "2.5")
    assert main(["check-config", "--config", "config.yaml"]) == 0
    assert "CACHE__REDIS__SOCKET_TIMEOUT -> redis.socket_timeout" in capsys.readouterr().out
