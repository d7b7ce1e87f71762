"""Time full-ranking evaluation of all Beauty test users over the 12,101 items
(target: under 10 s on this machine). The model is ItemKNN-content, fitted once (its
text vectors come from the cache after the first run); each repeat times ``evaluate``
alone: scoring, masking, top-20 and the metrics of every segment. Popularity, whose
many tied scores take the slow tie-breaking path, is timed too.

Side by side in the same run: ``hit_matrix`` (a binary search into each user's sorted
targets) against the ``np.isin`` formulation it replaced, on every evaluated user's
targets and 2,000 random candidates each (the width of the Two-Tower recall that
E0–E3 re-rank); both must give the same matrix.

Run ``.venv/bin/python benchmarks/evaluate_speed.py``; figures go to
``benchmarks/results/evaluate_speed.{json,md}``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from _common import load_beauty, write_results
from coldrec._util.sparse import hit_matrix
from coldrec.baselines.content import ItemKNNContent
from coldrec.baselines.popularity import Popularity
from coldrec.data import Dataset, prepare
from coldrec.eval import evaluate
from coldrec.eval.protocol import EvaluationPlan

REPEATS = 3
TARGET_S = 10.0
CANDIDATES = 2000


def isin_hit_matrix(ranked: np.ndarray, indptr: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The formulation ``hit_matrix`` replaced: ``np.isin`` over per-user keys."""
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 1
    rows = np.repeat(np.arange(len(ranked), dtype=np.int64), np.diff(indptr))
    keys = np.arange(len(ranked), dtype=np.int64)[:, None] * width + ranked
    return np.isin(keys, rows * width + items) & (ranked >= 0)


def time_hit_matrices(dataset: Dataset) -> dict[str, float]:
    """Median seconds of both hit matrices over the test targets and random candidates."""
    plan = EvaluationPlan.of(dataset)
    rng = np.random.default_rng(0)
    block = rng.integers(0, dataset.n_items, (len(plan.users), CANDIDATES))
    lists = plan.targets
    formulations = {
        "hit_matrix": lambda: hit_matrix(block, lists),
        "np_isin": lambda: isin_hit_matrix(block, lists.indptr, lists.indices),
    }
    figures = {}
    for name, function in formulations.items():
        seconds = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            hits = function()
            seconds.append(time.perf_counter() - start)
        figures[f"{name}_s"] = statistics.median(seconds)
        figures[f"{name}_hits"] = int(hits.sum())
    if figures["hit_matrix_hits"] != figures["np_isin_hits"]:
        raise SystemExit("hit_matrix and np.isin disagree")
    return figures


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
    hits = time_hit_matrices(dataset)
    ratio = hits["np_isin_s"] / hits["hit_matrix_s"]
    write_results(
        "evaluate_speed",
        {
            "benchmark": "full-ranking evaluation, Amazon Beauty global split, 12,101 items",
            "target_s": TARGET_S,
            "figures": figures,
            "meets_target": all(f["median_s"] < TARGET_S for f in figures.values()),
            "hit_matrix": hits,
        },
        "# Full-ranking evaluation speed, Amazon Beauty\n\n"
        f"Median of {REPEATS} runs of `coldrec.eval.evaluate` (scoring all test users "
        f"against 12,101 items, masking, top-20, metrics of every segment); target under "
        f"{TARGET_S:.0f} s.\n\n| model | users scored | seconds |\n|---|---:|---:|\n{rows}\n\n"
        f"Hit matrix of every evaluated user's test targets against {CANDIDATES:,} random "
        f"candidates each (median of {REPEATS}, the same run): `hit_matrix` "
        f"{hits['hit_matrix_s']:.2f} s, the `np.isin` formulation it replaced "
        f"{hits['np_isin_s']:.2f} s ({ratio:.1f}×); the same {hits['hit_matrix_hits']:,} hits.\n",
    )
    print(rows)
    print(f"hit matrix: {hits['hit_matrix_s']:.2f} s vs np.isin {hits['np_isin_s']:.2f} s")


if __name__ == "__main__":
    main()
