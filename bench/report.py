"""Gathers every bench/results-<name>.md into bench/results.md (run last by nox -s bench)."""

from __future__ import annotations

from benchlib import BENCH

ORDER = ["l1", "l2", "http", "memory", "codecs", "staleness", "l1_metrics"]


def main() -> None:
    parts = sorted(
        BENCH.glob("results-*.md"),
        key=lambda p: (ORDER.index(p.stem[8:]) if p.stem[8:] in ORDER else len(ORDER), p.stem),
    )
    if not parts:
        # An empty report would read as a bench run that found nothing wrong.
        raise SystemExit(f"report: no results-*.md in {BENCH}; run the benchmarks first")
    text = "# Benchmark results\n\nWritten by `uv run nox -s bench`; each section by its script.\n"
    for part in parts:
        text += "\n" + part.read_text()
    (BENCH / "results.md").write_text(text)
    print(f"wrote bench/results.md from {len(parts)} sections")


if __name__ == "__main__":
    main()
