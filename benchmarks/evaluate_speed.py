"""Time full-ranking evaluation of all Beauty test users over the 12,101 items
(target: under 10 s on this machine). The model is ItemKNN-content, fitted once (its
text vectors come from the cache after the first run); each repeat times ``evaluate``
alone: scoring, masking, top-20 and the metrics of every segment. Popularity, whose
many tied scores take the slow tie-breaking path, is timed too.

Run ``.venv/bin/python benchmarks/evaluate_speed.py``; figures go to
``benchmarks/results/evaluate_speed.{json,md}``.
"""

from __future__ import annotations

import statistics
import time

from _common import load_beauty, write_results
from coldrec.data import prepare
from coldrec.eval import evaluate
from coldrec.models import ItemKNNContent, Popularity

REPEATS = 3
TARGET_S = 10.0


def main() -> None:
    dataset = prepare(load_beauty())
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
    rows = "\n".join(
        f"| {name} | {f['users']:,} | {f['median_s']:.2f} |" for name, f in figures.items()
    )
    write_results(
        "evaluate_speed",
        {
            "benchmark": "full-ranking evaluation, Amazon Beauty global split, 12,101 items",
            "target_s": TARGET_S,
            "figures": figures,
            "meets_target": all(f["median_s"] < TARGET_S for f in figures.values()),
        },
        "# Full-ranking evaluation speed, Amazon Beauty\n\n"
        f"Median of {REPEATS} runs of `coldrec.eval.evaluate` (scoring all test users "
        f"against 12,101 items, masking, top-20, metrics of every segment); target under "
        f"{TARGET_S:.0f} s.\n\n| model | users scored | seconds |\n|---|---:|---:|\n{rows}\n",
    )
    print(rows)


if __name__ == "__main__":
    main()
