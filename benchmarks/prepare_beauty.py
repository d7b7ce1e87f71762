"""Time the preparation of Amazon Beauty 2014 (target: under 60 s on a 2-core laptop CPU).

Run ``python benchmarks/prepare_beauty.py``; figures go to
``benchmarks/results/prepare_beauty.{json,md}``. Each repeat reads the raw files, prepares
the default global 70/30 split and saves the Dataset folder, timing the three phases.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from coldrec.data import prepare
from coldrec.data.sources import Amazon2014Source

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "datasets" / "amazon-beauty-2014"
RESULTS = ROOT / "benchmarks" / "results"
REPEATS = 3
TARGET_S = 60.0


def time_once(out: Path) -> dict[str, float]:
    """Seconds spent reading, preparing and saving once."""
    start = time.perf_counter()
    frames = Amazon2014Source(
        interactions=BEAUTY / "reviews_Beauty_5.json.gz", items=BEAUTY / "meta_Beauty.json.gz"
    ).load()
    loaded = time.perf_counter()
    dataset = prepare(frames)
    prepared = time.perf_counter()
    dataset.save(out)
    saved = time.perf_counter()
    return {
        "read_s": loaded - start,
        "prepare_s": prepared - loaded,
        "save_s": saved - prepared,
        "total_s": saved - start,
    }


def main() -> None:
    if not BEAUTY.is_dir():
        raise SystemExit(f"Amazon Beauty not found at {BEAUTY}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [time_once(Path(tmp) / f"beauty{i}") for i in range(REPEATS)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result = {
        "benchmark": "prepare Amazon Beauty 2014 5-core, global 70/30 split",
        "repeats": REPEATS,
        "median": median,
        "runs": runs,
        "target_total_s": TARGET_S,
        "meets_target": median["total_s"] < TARGET_S,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "prepare_beauty.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in median.items())
    (RESULTS / "prepare_beauty.md").write_text(
        f"# Preparing Amazon Beauty 2014\n\nMedian of {REPEATS} runs on {os.cpu_count()} CPUs "
        f"(Python {platform.python_version()}); target under {TARGET_S:.0f} s in total.\n\n"
        f"| phase | seconds |\n|---|---|\n{rows}\n"
    )
    print(json.dumps(median, indent=2))


if __name__ == "__main__":
    main()
