"""LAGCL4Rec (issue 27) on MovieLens-100K or Amazon Beauty (global time split, full
ranking), 3 seeds: the paper's Table 3 ablation for both backbones — base, without the
data level, without the rank level, without the rerank level, full — beside content kNN.

Runs, with the commands printed in the result:

1. the data set as ``benchmarks/stars.py`` prepares it (the same folder);
2. ``coldrec augment`` with the ``embedding`` stand-in (no LLM) over every sparse user;
3. ``coldrec evaluate --model lightgcn|xsimgcl`` per variant and seed: ``--augmented``
   (data level), ``model.rank_level`` (rank level), the ``rerank`` node with the
   ``embedding`` stand-in (rerank level, α chosen on validation).

Every LLM call of the full model is made by the stand-in here (SmolLM2 over a sample of
users is not run yet). A run whose metrics file exists is not repeated. Writes
``benchmarks/results/lagcl_<data>.{md,json}`` once every run is there.
Run from the project root: ``.venv/bin/python benchmarks/lagcl.py --data ml100k``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from _common import ROOT, write_results
from stars import BENCHES, Bench, metrics_path, prepare_command, run

SEEDS = (0, 1, 2)
BACKBONES = ("lightgcn", "xsimgcl")
LEVELS = ("data", "rank", "rerank")
VARIANTS = {
    "base": (),
    "w/o data": ("rank", "rerank"),
    "w/o rank": ("data", "rerank"),
    "w/o rerank": ("data", "rank"),
    "full": LEVELS,
}
RERANK = "rerank={llm: {backend: {kind: embedding}}}"
KS = "[10,20]"


def runs(bench: Bench) -> Path:
    return Path("runs") / f"lagcl_{bench.name}"


def augment_command(bench: Bench) -> list[str]:
    return ["augment", "--dataset", str(bench.data), "--backend", "embedding",
            "--out", str(runs(bench) / "augment")]  # fmt: skip


def evaluate_command(bench: Bench, backbone: str, variant: str, seed: int) -> list[str]:
    levels = VARIANTS[variant]
    folder = runs(bench) / backbone / variant.replace("/", "").replace(" ", "_") / f"seed{seed}"
    extra = []
    if "data" in levels:
        extra += ["--augmented", str(runs(bench) / "augment")]
    if "rank" in levels:
        extra += ["--set", "model.rank_level={}"]
    if "rerank" in levels:
        extra += ["--set", RERANK]
    return ["evaluate", "--dataset", str(bench.data), "--model", backbone, "--name",
            f"{backbone} {variant}", "--seed", str(seed), "--set", f"ks={KS}", *extra,
            "--out", str(folder)]  # fmt: skip


def knn_command(bench: Bench) -> list[str]:
    return ["evaluate", "--dataset", str(bench.data), "--model", "itemknn", "--seed", "0",
            "--set", f"ks={KS}", "--out", str(runs(bench) / "itemknn" / "seed0")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=BENCHES, required=True)
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES, default=BACKBONES)
    parser.add_argument("--seeds", nargs="+", type=int, choices=SEEDS, default=SEEDS)
    args = parser.parse_args()
    bench = BENCHES[args.data]
    if not bench.source.is_dir():
        raise SystemExit(f"{bench.title} not found at {bench.source}")
    run(prepare_command(bench), ROOT / bench.data / "meta.json")
    run(augment_command(bench), ROOT / runs(bench) / "augment" / "summary.json")
    run(knn_command(bench), metrics_path(knn_command(bench)))
    for seed in args.seeds:
        for backbone in args.backbones:
            for variant in VARIANTS:
                command = evaluate_command(bench, backbone, variant, seed)
                run(command, metrics_path(command))
    report(bench)


def report(bench: Bench) -> None:
    """The ablation table once every run is there."""
    rows, figures = [], {}
    for backbone in BACKBONES:
        for variant in VARIANTS:
            paths = [metrics_path(evaluate_command(bench, backbone, variant, s)) for s in SEEDS]
            if not all(p.is_file() for p in paths):
                print(f"{backbone} {variant}: not every seed is there yet; no report")
                return
            seeds = [json.loads(p.read_text())["segments"] for p in paths]
            figures[f"{backbone} {variant}"] = seeds
            rows += table_rows(f"{backbone} {variant}", seeds)
    knn = json.loads(metrics_path(knn_command(bench)).read_text())["segments"]
    rows += table_rows("content kNN", [knn])
    augment = json.loads((ROOT / runs(bench) / "augment" / "summary.json").read_text())
    commands = [prepare_command(bench), augment_command(bench), knn_command(bench),
                *(evaluate_command(bench, "xsimgcl", v, 0) for v in VARIANTS)]  # fmt: skip
    listing = "\n".join("    coldrec " + " ".join(c) for c in commands)
    markdown = f"""# LAGCL4Rec on {bench.title} (global split, full ranking), 3 seeds

Every LLM call made by the `embedding` stand-in (no LLM): augmentation of
{augment["sparse_users"]:,} sparse users ({augment["positives"]:,} positives, real-pair rate
{augment["real_pair_rate"]:.2%} against {augment["random_real_pair_rate"]:.2%} for random
candidates), groups from taxonomy leaves, re-ranking by MiniLM cosine. Mean ± sample
std over seeds 0–2.

| variant | segment | Recall@10 | Recall@20 | NDCG@10 | NDCG@20 |
|---|---|---|---|---|---|
{chr(10).join(rows)}

## Commands

{listing}
"""
    write_results(f"lagcl_{bench.name}", {"runs": figures, "itemknn": knn,
                                          "augment": augment}, markdown)  # fmt: skip


def table_rows(label: str, seeds: list[dict[str, Any]]) -> list[str]:
    lines = []
    for segment in ("all", "warm", "cold"):
        cells = []
        for metric in ("recall@10", "recall@20", "ndcg@10", "ndcg@20"):
            values = np.array([s[segment][metric] for s in seeds], dtype=float)
            spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.4f}{spread}")
        lines.append(f"| {label} | {segment} | {' | '.join(cells)} |")
    return lines


if __name__ == "__main__":
    main()
