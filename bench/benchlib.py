"""What the benchmarks share: timing with percentiles, a results file per benchmark
(bench/results-<name>.md, gathered into bench/results.md by bench/report.py) and a bar
plot per benchmark (bench/plot-<name>.png).

Benchmarks compare the project with its peers in one run on one machine and print
ratios: absolute figures drift on shared machines, ratios much less.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

BENCH = Path(__file__).parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(*prefixes: str) -> dict[str, str]:
    """This environment without the variables the service reads (a caller's REDIS_URL must
    not point a benchmark at another server), nor any starting with ``prefixes``."""
    drop = ("REDIS_", "CACHE_", "CACHING_AGENT_", *prefixes)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@contextlib.contextmanager
def served(
    command: Sequence[str], cwd: str | Path, env: dict[str, str], start_timeout: float
) -> Iterator[subprocess.Popen[str]]:
    """``command`` (a ``caching-agent serve``) running once it says ``listening on``;
    SIGTERM, then SIGKILL after 10 s, when done."""
    proc = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(start_timeout):
            raise RuntimeError(f"caching-agent serve not listening in {start_timeout:g} s")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, title: str, body: str) -> Path:
    """bench/results-<name>.md: a section of bench/results.md."""
    path = BENCH / f"results-{name}.md"
    path.write_text(f"## {title}\n\n_{machine()}_\n\n{body.strip()}\n")
    print(f"wrote {path.relative_to(BENCH.parent)}")
    return path


def bar_plot(
    name: str,
    title: str,
    groups: dict[str, dict[str, float]],
    unit: str,
    *,
    log: bool = False,
) -> Path:
    """bench/plot-<name>.png: for each group (a benchmark), one bar per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contenders: list[str] = []
    for values in groups.values():
        contenders += [c for c in values if c not in contenders]
    width = 0.8 / max(1, len(contenders))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(groups) + 2), 4.2))
    for i, contender in enumerate(contenders):
        xs = [g + i * width for g in range(len(groups))]
        ys = [values.get(contender, 0.0) for values in groups.values()]
        bars = ax.bar(xs, ys, width, label=contender)
        ax.bar_label(bars, labels=[f"{y:,.3g}" if y else "" for y in ys], fontsize=7)
    ax.set_xticks([g + width * (len(contenders) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels(list(groups), fontsize=8)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = BENCH / f"plot-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path.relative_to(BENCH.parent)}")
    return path
