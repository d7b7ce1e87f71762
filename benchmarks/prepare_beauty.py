"""Time the preparation of Amazon Beauty 2014 (target: under 60 s on a 2-core laptop CPU).

Run ``python benchmarks/prepare_beauty.py``; figures go to
``benchmarks/results/prepare_beauty.{json,md}``. Each repeat reads the raw files, prepares
the default global 70/30 split and saves the Dataset folder, timing the three phases.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from _common import load_beauty, write_results
from coldrec.data import prepare

REPEATS = 3
TARGET_S = 60.0


def time_once(out: Path) -> dict[str, float]:
    """Seconds spent reading, preparing and saving once."""
    start = time.perf_counter()
    frames = load_beauty()
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
    with tempfile.TemporaryDirectory() as tmp:
        runs = [time_once(Path(tmp) / f"beauty{i}") for i in range(REPEATS)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in median.items())
    write_results(
        "prepare_beauty",
        {
            "benchmark": "prepare Amazon Beauty 2014 5-core, global 70/30 split",
            "repeats": REPEATS,
            "median": median,
            "runs": runs,
            "target_total_s": TARGET_S,
            "meets_target": median["total_s"] < TARGET_S,
        },
        f"# Preparing Amazon Beauty 2014\n\nMedian of {REPEATS} runs; target under "
        f"{TARGET_S:.0f} s in total.\n\n| phase | seconds |\n|---|---|\n{rows}\n",
    )
    print(rows)


if __name__ == "__main__":
    main()
