"""STARS on Amazon Beauty (global split, full-catalogue ranking), 3 seeds: the paper's
ablation, the two user vectors, and the popularity prior, beside content kNN, the
full-softmax SASRec and E0.

Runs, with the commands printed in the result:

1. ``coldrec tag`` with the ``embedding`` tagger (no LLM) for every item, then with
   SmolLM2 for a 300-item sample on the same vocabulary (tag agreement: mean Jaccard);
2. ``coldrec evaluate --model stars`` per seed: the full model at each γ of ``GAMMAS``
   (γ chosen per seed by the validation score its training recorded, never by test),
   then at the chosen γ without text vectors (ID + tags), without tags, without context,
   without the [USER] token (one vector);
3. the chosen full model of each seed scored again with ``next`` (NI), ``general`` (GI)
   and ``round_robin`` (RR) user vectors (no retraining: the saved model is reloaded).

A run whose metrics file exists is not repeated, so the script resumes after an
interruption; ``--only NAME …`` runs a subset of the variants. Writes
``benchmarks/results/stars_beauty.{md,json}`` once every run is there. Needs
``runs/beauty/data`` (``beauty_baselines.py``) and, for the rows beside, the results of
``beauty_baselines.py``, ``sequential_beauty.py`` and ``beauty_e0_e3.py``. Run from the
project root: ``.venv/bin/python benchmarks/stars_beauty.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import RESULTS, ROOT, write_results
from beauty_baselines import COLDREC
from coldrec.data import Dataset
from coldrec.eval.protocol import evaluate
from coldrec.rank.stars import StarsRecommender
from coldrec.supervision.tags import tag_agreement

DATA = Path("runs/beauty/data")
RUNS = Path("runs/stars_beauty")
SEEDS = (0, 1, 2)
GAMMAS = (0.0, 0.5, 1.0)
KS = "[1,5,10,20,50]"
ABLATIONS = {
    "no_text": ["--set", "model.delta=null"],
    "no_tags": [],  # run without --tags
    "no_context": ["--set", "model.context=false"],
    "no_user_token": ["--set", "model.user_token=false"],
}
SCORINGS = {"NI": "next", "GI": "general", "RR": "round_robin"}
BESIDE = {  # run here with the same cut-offs; E0 is read from beauty_e0_e3.json
    "itemknn": ["--model", "itemknn"],
    "sasrec_full": ["--model", "sasrec", "--set", "model.loss=full",
                    "--set", "model.training.lr=0.001"],
}  # fmt: skip
SAMPLE = 300  # items tagged by SmolLM2


def tag_commands() -> list[list[str]]:
    embedding = RUNS / "tags_embedding"
    return [
        ["tag", "--dataset", str(DATA), "--backend", "embedding", "--out", str(embedding)],
        ["tag", "--dataset", str(DATA), "--backend", "llamacpp", "--items", str(SAMPLE),
         "--vocabulary", str(embedding / "vocabulary.json"), "--out", str(RUNS / "tags_smollm2"),
         "--set", "llm.backend.n_threads=1"],
    ]  # fmt: skip


def evaluate_command(name: str, seed: int, gamma: float, extra: list[str]) -> list[str]:
    """A STARS variant's run of one seed (each seed its own folder: it keeps the model)."""
    tags = [] if name == "no_tags" else ["--tags", str(RUNS / "tags_embedding" / "tags.parquet")]
    return ["evaluate", "--dataset", str(DATA), "--model", "stars", *tags, "--name", name,
            "--seed", str(seed), "--set", f"model.gamma={gamma}", "--set", f"ks={KS}",
            *extra, "--out", str(RUNS / name / f"seed{seed}")]  # fmt: skip


def beside_command(name: str, seed: int) -> list[str]:
    return ["evaluate", "--dataset", str(DATA), *BESIDE[name], "--name", name, "--seed",
            str(seed), "--set", f"ks={KS}", "--out", str(RUNS / name / f"seed{seed}")]  # fmt: skip


def metrics_path(command: list[str]) -> Path:
    out, seed = command[command.index("--out") + 1], command[command.index("--seed") + 1]
    return ROOT / out / f"metrics-seed{seed}.json"


def run(command: list[str], done: Path) -> None:
    """Run one coldrec command (one thread) unless ``done`` exists."""
    if done.is_file():
        return
    print("coldrec", shlex.join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([COLDREC, "-q", *command], cwd=ROOT, check=True, env=env)


def chosen_gamma(seed: int) -> float:
    """The γ whose full model scored best on validation (its recorded best score)."""
    scores = {}
    for gamma in GAMMAS:
        metrics = json.loads(metrics_path(evaluate_command(_full(gamma), seed, gamma, []))
                             .read_text())  # fmt: skip
        scores[gamma] = metrics["training"]["validation"]["best_score"]
    return max(GAMMAS, key=lambda g: (scores[g], -g))


def _full(gamma: float) -> str:
    return f"full_gamma{gamma:g}"


def rescored(seed: int, gamma: float) -> dict[str, Any]:
    """The chosen full model of ``seed`` scored with each user vector, per segment."""
    out = ROOT / RUNS / "scorings" / f"seed{seed}.json"
    if out.is_file():
        return json.loads(out.read_text())
    dataset = Dataset.load(ROOT / DATA)
    model = StarsRecommender.load(ROOT / RUNS / _full(gamma) / f"seed{seed}" / "model", dataset)
    figures = {}
    for label, scoring in SCORINGS.items():
        model.config = model.config.model_copy(update={"scoring": scoring})
        figures[label] = evaluate(model, dataset, ks=(1, 5, 10, 20, 50))["segments"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run these variants only (tags, full, "
                        f"{', '.join(ABLATIONS)}, scorings)")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, choices=SEEDS)
    args = parser.parse_args()
    wanted = set(args.only or ["tags", "full", *ABLATIONS, "scorings", *BESIDE])
    seeds = args.seeds or SEEDS
    if "tags" in wanted:
        for command in tag_commands():
            run(command, ROOT / command[command.index("--out") + 1] / "summary.json")
    for seed in seeds:
        if "full" in wanted:
            for gamma in GAMMAS:
                command = evaluate_command(_full(gamma), seed, gamma, [])
                run(command, metrics_path(command))
        gamma = chosen_gamma(seed)
        for name, extra in ABLATIONS.items():
            if name in wanted:
                command = evaluate_command(name, seed, gamma, extra)
                run(command, metrics_path(command))
        if "scorings" in wanted:
            rescored(seed, gamma)
        for name in BESIDE:
            if name in wanted and (seed == 0 or name != "itemknn"):  # itemknn: deterministic
                command = beside_command(name, seed)
                run(command, metrics_path(command))
    report()


def report() -> None:
    """Write the tables once every seed of every variant is there."""
    runs: dict[str, list[dict[str, Any]]] = {}
    gammas = {}
    for seed in SEEDS:
        try:
            gamma = gammas[seed] = chosen_gamma(seed)
        except FileNotFoundError:
            print(f"seed {seed}: the full models are not all there yet; no report")
            return
        names = {"full (γ chosen)": evaluate_command(_full(gamma), seed, gamma, []),
                 "γ = 0": evaluate_command(_full(0.0), seed, 0.0, []),
                 **{name: evaluate_command(name, seed, gamma, extra)
                    for name, extra in ABLATIONS.items()}}  # fmt: skip
        for label, command in names.items():
            path = metrics_path(command)
            if not path.is_file():
                print(f"{path} is missing: no report yet")
                return
            runs.setdefault(label, []).append(json.loads(path.read_text())["segments"])
        for label, segments in rescored(seed, gamma).items():
            runs.setdefault(label, []).append(segments)
        for name in BESIDE:
            path = metrics_path(beside_command(name, seed if name != "itemknn" else 0))
            if not path.is_file():
                print(f"{path} is missing: no report yet")
                return
            runs.setdefault(name, []).append(json.loads(path.read_text())["segments"])
    e0 = json.loads((RESULTS / "beauty_e0_e3.json").read_text())["summary"]["e0"]["segments"]
    e0_line = ", ".join(f"{s} {e0[s]['recall@20'][0]:.4f} ± {e0[s]['recall@20'][1]:.4f}"
                        for s in ("all", "warm", "cold"))  # fmt: skip
    tags = tag_figures()
    rows = [table_rows(label, seeds) for label, seeds in runs.items()]
    markdown = f"""# STARS on Amazon Beauty (global split, full catalogue), 3 seeds

γ chosen per seed on validation: {", ".join(f"seed {s}: {g:g}" for s, g in gammas.items())}.
Mean ± sample std over seeds 0–2; NI / GI / RR: the chosen full model scored with
`h_next`, `h_gen` and their round-robin interleave. `itemknn` (content kNN,
deterministic: one run) and `sasrec_full` (full softmax over the catalogue) ran here
with the same cut-offs; E0 (Two-Tower candidates re-ranked by SASRec, fused; from
`beauty_e0_e3.json`), Recall@20: {e0_line}.

| variant | segment | R@1 | R@5 | R@10 | R@20 | R@50 | NDCG@10 | Coverage@10 |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Tags: {tags["embedding_items"]:,} items tagged by the embedding tagger (no LLM), vocabulary
of {tags["vocabulary"]}; SmolLM2 tagged {tags["smollm2_items"]} sampled items on the same
vocabulary: mean Jaccard agreement {tags["agreement"]:.3f}.

## Commands

{chr(10).join("    coldrec " + shlex.join(c) for c in tag_commands())}
{chr(10).join("    coldrec " + shlex.join(evaluate_command(_full(g), 0, g, [])) for g in GAMMAS)}
"""
    write_results("stars_beauty", {"runs": runs, "gammas": gammas, "tags": tags}, markdown)


def table_rows(label: str, seeds: list[dict[str, Any]]) -> str:
    lines = []
    for segment in ("all", "warm", "cold"):
        cells = []
        for metric in ("recall@1", "recall@5", "recall@10", "recall@20", "recall@50",
                       "ndcg@10", "coverage@10"):  # fmt: skip
            values = np.array([s[segment][metric] for s in seeds], dtype=float)
            spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.4f}{spread}")
        lines.append(f"| {label} | {segment} | {' | '.join(cells)} |")
    return "\n".join(lines)


def tag_figures() -> dict[str, Any]:
    embedding = ROOT / RUNS / "tags_embedding"
    smollm2 = ROOT / RUNS / "tags_smollm2"
    summary = json.loads((smollm2 / "summary.json").read_text())
    agreement = tag_agreement(pd.read_parquet(embedding / "tags.parquet"),
                              pd.read_parquet(smollm2 / "tags.parquet"),
                              summary["tagged_items"])  # fmt: skip
    first = json.loads((embedding / "summary.json").read_text())
    return {"embedding_items": first["items_with_tags"], "vocabulary": first["vocabulary"],
            "smollm2_items": summary["items"], "agreement": agreement,
            "smollm2_llm": summary["llm"]}  # fmt: skip


if __name__ == "__main__":
    main()
