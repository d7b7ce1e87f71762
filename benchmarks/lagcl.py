"""LAGCL4Rec (issue 27) on MovieLens-100K or Amazon Beauty (global time split, full
ranking), 3 seeds: the shipped experiment ``configs/<data>/lagcl_<data>.yaml`` — the
base backbones, each LLM level removed, the full model, content kNN beside — run with
``coldrec run`` (its steps cached: a stopped run resumes), then its figures tabulated
with the augmentation's real-pair rate.

Every LLM call of the configs is made by the ``embedding`` stand-in (no LLM); SmolLM2
over a sample of users is not run yet. Writes ``benchmarks/results/lagcl_<data>.{md,json}``.
Run from the project root: ``.venv/bin/python benchmarks/lagcl.py --data ml100k``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from _common import ROOT, write_results
from beauty_baselines import COLDREC

DATA = ("ml100k", "beauty")
SEGMENTS = ("all", "warm", "cold")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, required=True)
    args = parser.parse_args()
    config = Path("configs") / args.data / f"lagcl_{args.data}.yaml"
    out = Path("runs") / f"lagcl_{args.data}"
    command = ["run", str(config), "--out", str(out)]
    subprocess.run([COLDREC, "-q", *command], cwd=ROOT, check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    report(args.data, ROOT / out, command)


def report(data: str, out: Path, command: list[str]) -> None:
    """The ablation table of the finished run."""
    figures: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted((out / "baselines").iterdir()):
        found = sorted(folder.glob("seed*/metrics-seed*.json"))
        figures[folder.name] = [json.loads(path.read_text())["segments"] for path in found]
    rows = [row for name, seeds in figures.items() for row in table_rows(name, seeds)]
    augment = json.loads((out / "augment" / "summary.json").read_text())
    markdown = f"""# LAGCL4Rec on {data} (global split, full ranking)

`configs/{data}/lagcl_{data}.yaml`; every LLM call by the `embedding` stand-in (no LLM).
Augmentation: {augment["sparse_users"]:,} sparse users, {augment["positives"]:,} positives
and {augment["negatives"]:,} negatives; real-pair rate {augment["real_pair_rate"]:.2%}
against {augment["random_real_pair_rate"]:.2%} for random candidates. Mean ± sample std
over the seeds.

| variant | segment | {" | ".join(METRICS)} |
|---|---|{"---|" * len(METRICS)}
{chr(10).join(rows)}

    coldrec {" ".join(command)}
"""
    write_results(f"lagcl_{data}", {"runs": figures, "augment": augment}, markdown)


def table_rows(label: str, seeds: list[dict[str, Any]]) -> list[str]:
    lines = []
    for segment in SEGMENTS:
        cells = []
        for metric in METRICS:
            values = np.array([s[segment][metric] for s in seeds], dtype=float)
            spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.4f}{spread}")
        lines.append(f"| {label} | {segment} | {' | '.join(cells)} |")
    return lines


if __name__ == "__main__":
    main()
