"""Bench scripts that read input fail loudly, naming where they looked, when there is none:
a table of nothing under "All met." would read as a check that passed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_copy(
    tmp_path: Path, script: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run a copy of ``bench/<script>`` from ``tmp_path``, so whatever it writes (results,
    plots) lands there and never over the repository's bench/ files."""
    for name in (script, "benchlib.py", "hitratio.py"):
        shutil.copy(BENCH / name, tmp_path / name)
    return subprocess.run(
        [sys.executable, str(tmp_path / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, **env},
        check=False,
    )


def test_hitratio_without_traces_fails_naming_the_folder(tmp_path: Path) -> None:
    traces = tmp_path / "no-traces"
    traces.mkdir()
    result = run_copy(tmp_path, "hitratio.py", {"CACHING_AGENT_TRACES": str(traces)})
    assert result.returncode != 0
    assert str(traces) in result.stderr
    assert "All met" not in result.stdout
    assert not (tmp_path / "results-hitratio.md").exists()


def test_hitratio_names_the_folder_of_a_trace_it_cannot_find(tmp_path: Path) -> None:
    traces = tmp_path / "no-traces"
    traces.mkdir()
    env = {"CACHING_AGENT_TRACES": str(traces)}
    result = run_copy(tmp_path, "hitratio.py", env, "nosuchtrace")
    assert result.returncode != 0
    assert "nosuchtrace" in result.stderr
    assert str(traces) in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_cost_without_traces_fails_naming_the_folder(tmp_path: Path) -> None:
    traces = tmp_path / "no-traces"
    traces.mkdir()
    result = run_copy(tmp_path, "policy_cost.py", {"CACHING_AGENT_TRACES": str(traces)})
    assert result.returncode != 0
    assert str(traces) in result.stderr
    assert "met" not in result.stdout
    assert not (tmp_path / "results-policy_cost.md").exists()


def test_report_without_results_fails_naming_the_folder(tmp_path: Path) -> None:
    result = run_copy(tmp_path, "report.py", {})
    assert result.returncode != 0
    assert str(tmp_path) in result.stderr
    assert not (tmp_path / "results.md").exists()
