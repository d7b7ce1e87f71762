"""Time full-ranking evaluation of all Beauty test users over the 12,101 items
(target: under 10 s on this machine). The model is ItemKNN-content, fitted once (its
text vectors come from the cache after the first run); each repeat times ``evaluate``
alone: scoring, masking, top-20 and the metrics of every segment. Popularity, whose
many tied scores take the slow tie-breaking path, is timed too.

Run ``.venv/bin/python benchmarks/evaluate_speed.py``; figures go to
``benchmarks/results/evaluate_speed.{json,md}``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from coldrec.data import prepare
from coldrec.data.sources import Amazon2014Source
from coldrec.eval import evaluate
from coldrec.models import ItemKNNContent, Popularity

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "datasets" / "amazon-beauty-2014"
RESULTS = ROOT / "benchmarks" / "results"
REPEATS = 3
TARGET_S = 10.0


def main() -> None:
    if not BEAUTY.is_dir():
        raise SystemExit(f"Amazon Beauty not found at {BEAUTY}")
    dataset = prepare(
        Amazon2014Source(
            interactions=BEAUTY / "reviews_Beauty_5.json.gz", items=BEAUTY / "meta_Beauty.json.gz"
        ).load()
    )
    figures = {}
    for name, model in (("itemknn", ItemKNNContent()), ("popularity", Popularity())):
        model.fit(dataset)
        seconds = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            result = evaluate(model, dataset)
            seconds.append(time.perf_counter() - start)
        figures[name] = {
            "median_s": statistics.median(seconds),
            "runs_s": seconds,
            "users": result["counts"]["all"]["users"] + result["counts"]["cold_users"]["users"],
        }
    output = {
        "benchmark": "full-ranking evaluation, Amazon Beauty global split, 12,101 items",
        "target_s": TARGET_S,
        "figures": figures,
        "meets_target": all(f["median_s"] < TARGET_S for f in figures.values()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "evaluate_speed.json").write_text(json.dumps(output, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {f['users']:,} | {f['median_s']:.2f} |" for name, f in figures.items()
    )
    (RESULTS / "evaluate_speed.md").write_text(
        "# Full-ranking evaluation speed, Amazon Beauty\n\n"
        f"Median of {REPEATS} runs of `coldrec.eval.evaluate` on {os.cpu_count()} CPUs "
        f"(scoring all test users against 12,101 items, masking, top-20, metrics of every "
        f"segment); target under {TARGET_S:.0f} s.\n\n"
        f"| model | users scored | seconds |\n|---|---:|---:|\n{rows}\n"
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
