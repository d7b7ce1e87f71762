"""STARS (issue 26) on Amazon Beauty or MovieLens-100K (global time split, full-catalogue
ranking), 3 seeds: the paper's ablation, the two user vectors and the popularity prior,
beside content kNN, the full-softmax SASRec and (Beauty) E0.

Runs, with the commands printed in the result:

1. ``coldrec data prepare`` when the data set's folder is missing (MovieLens with its
   user features: age bucket, gender, occupation);
2. ``coldrec tag`` with the ``embedding`` tagger (no LLM) for every item and, on Beauty,
   with SmolLM2 for a 300-item sample on the same vocabulary (tag agreement: mean
   Jaccard);
3. ``coldrec evaluate --model stars`` per seed: the full model at each γ of ``GAMMAS``
   (γ chosen per seed by the validation score its training recorded, never by test),
   then at the chosen γ without text vectors (ID + tags), without tags, without context,
   without the [USER] token (one vector);
4. the chosen full model of each seed scored again with ``next`` (NI), ``general`` (GI)
   and ``round_robin`` (RR) user vectors, and with its cold items' Δ moved from their
   warm neighbours by the KNN transfer (no retraining: the saved model is reloaded).

Each finished run's metrics (and the tag figures and the rescorings) are kept in
``benchmarks/results/stars_<data>/``, which is committed: a kept run is not repeated, so
the script resumes after an interruption or in a later session; ``--only NAME …`` runs
a subset of the variants. Writes ``benchmarks/results/stars_<data>.{md,json}`` once every
run is there; on Beauty the E0
line comes from ``beauty_e0_e3.json``. Run from the project root:
``.venv/bin/python benchmarks/stars.py --data beauty`` (or ``--data ml100k``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from _common import BEAUTY, RESULTS, ROOT, mean_std, write_results
from beauty_baselines import _relative, run_coldrec
from coldrec.data import Dataset
from coldrec.eval.protocol import evaluate
from coldrec.rank.stars import StarsRecommender
from coldrec.rank.transfer import TransferConfig
from coldrec.supervision.tags import tag_agreement

MOVIELENS = ROOT.parent / "shared" / "datasets" / "ml-100k"


@dataclass(frozen=True)
class Bench:
    """One data set's STARS benchmark."""

    title: str
    source: Path
    prepare: list[str]
    """The ``coldrec data prepare`` arguments (without ``--out``)."""
    smollm2_sample: int
    """Items SmolLM2 tags on the embedding tagger's vocabulary (0: none)."""

    @property
    def name(self) -> str:
        return next(key for key, bench in BENCHES.items() if bench is self)

    @property
    def data(self) -> Path:
        return Path("runs") / f"stars_{self.name}" / "data"

    @property
    def runs(self) -> Path:
        return Path("runs") / f"stars_{self.name}"


BENCHES = {
    "beauty": Bench("Amazon Beauty", BEAUTY, [
        "--source", "amazon2014", "--reviews", str(_relative(BEAUTY / "reviews_Beauty_5.json.gz")),
        "--meta", str(_relative(BEAUTY / "meta_Beauty.json.gz"))], 300),
    "ml100k": Bench("MovieLens-100K", MOVIELENS, [
        "--source", "recbole", "--interactions", str(_relative(MOVIELENS / "ml-100k.inter")),
        "--items", str(_relative(MOVIELENS / "ml-100k.item")),
        "--users", str(_relative(MOVIELENS / "ml-100k.user")),
        "--set", "source.user_fields=[age,gender,occupation]"], 0),
}  # fmt: skip
SEEDS = (0, 1, 2)
GAMMAS = (0.0, 0.1, 0.3, 1.0)
KS = "[1,5,10,20,50]"
ABLATIONS = {
    "no_text": ["--set", "model.delta=null"],
    "no_tags": [],  # run without --tags
    "no_context": ["--set", "model.context=false"],
    "no_user_token": ["--set", "model.user_token=false"],
}
SCORINGS = {"NI": "next", "GI": "general", "RR": "round_robin"}
TRANSFER = "NI + KNN transfer (K 10, τ 0.25)"
BESIDE = {  # run here with the same cut-offs; E0 (Beauty) is read from beauty_e0_e3.json
    "itemknn": ["--model", "itemknn"],
    "sasrec_full": ["--model", "sasrec", "--set", "model.loss=full",
                    "--set", "model.training.lr=0.001"],
}  # fmt: skip


def prepare_command(bench: Bench) -> list[str]:
    return ["data", "prepare", *bench.prepare, "--out", str(bench.data)]


def tag_commands(bench: Bench) -> list[list[str]]:
    embedding = bench.runs / "tags_embedding"
    commands = [["tag", "--dataset", str(bench.data), "--backend", "embedding",
                 "--out", str(embedding)]]  # fmt: skip
    if bench.smollm2_sample:
        commands.append(["tag", "--dataset", str(bench.data), "--backend", "llamacpp",
                         "--items", str(bench.smollm2_sample),
                         "--vocabulary", str(embedding / "vocabulary.json"),
                         "--out", str(bench.runs / "tags_smollm2"),
                         "--set", "llm.backend.n_threads=1"])  # fmt: skip
    return commands


def evaluate_command(
    bench: Bench, name: str, seed: int, gamma: float, extra: list[str]
) -> list[str]:
    """A STARS variant's run of one seed (each seed its own folder: it keeps the model)."""
    tags = [] if name == "no_tags" else ["--tags", str(bench.runs / "tags_embedding" /
                                                       "tags.parquet")]  # fmt: skip
    return ["evaluate", "--dataset", str(bench.data), "--model", "stars", *tags, "--name", name,
            "--seed", str(seed), "--set", f"model.gamma={gamma}", "--set", f"ks={KS}",
            *extra, "--out", str(bench.runs / name / f"seed{seed}")]  # fmt: skip


def beside_command(bench: Bench, name: str, seed: int) -> list[str]:
    out = bench.runs / name / f"seed{seed}"
    return ["evaluate", "--dataset", str(bench.data), *BESIDE[name], "--name", name, "--seed",
            str(seed), "--set", f"ks={KS}", "--out", str(out)]  # fmt: skip


def made_metrics(command: list[str]) -> Path:
    """The metrics file an ``evaluate`` command writes in its run folder."""
    out, seed = command[command.index("--out") + 1], command[command.index("--seed") + 1]
    return ROOT / out / f"metrics-seed{seed}.json"


def metrics_path(command: list[str]) -> Path:
    """Where that metrics file is kept (``benchmarks/results/stars_<data>/…``, committed:
    a lost ``runs/`` folder loses no finished run)."""
    out, seed = command[command.index("--out") + 1], command[command.index("--seed") + 1]
    return RESULTS / Path(out).relative_to("runs") / f"metrics-seed{seed}.json"


def run_kept(command: list[str]) -> None:
    """Run an ``evaluate`` command unless its metrics are kept; keep them."""
    kept = metrics_path(command)
    if kept.is_file():
        return
    run_coldrec(command, made_metrics(command))
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made_metrics(command), kept)


def full(gamma: float) -> str:
    return f"full_gamma{gamma:g}"


def validation_scores(bench: Bench, seed: int) -> dict[float, float]:
    """Each γ's validation score (the mean of warm and cold Recall@20 its training
    recorded at its best epoch)."""
    scores = {}
    for gamma in GAMMAS:
        path = metrics_path(evaluate_command(bench, full(gamma), seed, gamma, []))
        scores[gamma] = json.loads(path.read_text())["training"]["validation"]["best_score"]
    return scores


def chosen_gamma(bench: Bench, seed: int) -> float:
    """The γ whose full model scored best on validation (the smaller among equals)."""
    scores = validation_scores(bench, seed)
    return max(GAMMAS, key=lambda g: (scores[g], -g))


def rescored(bench: Bench, seed: int, gamma: float) -> dict[str, Any]:
    """The chosen full model of ``seed`` scored with each user vector, and with the KNN
    transfer of Δ to cold items (NI), per segment."""
    out = kept(bench) / "scorings" / f"seed{seed}.json"
    if out.is_file():
        return json.loads(out.read_text())
    dataset = Dataset.load(ROOT / bench.data)
    folder = ROOT / bench.runs / full(gamma) / f"seed{seed}" / "model"
    # a model lost with runs/ is trained again: the same seed gives the same model
    run_coldrec(evaluate_command(bench, full(gamma), seed, gamma, []), folder / "model.json")
    model = StarsRecommender.load(folder, dataset)
    figures = {}
    for label, scoring in SCORINGS.items():
        model.config = model.config.model_copy(update={"scoring": scoring})
        figures[label] = evaluate(model, dataset, ks=(1, 5, 10, 20, 50))["segments"]
    # cold items with their warm neighbours' Δ (the transfer's defaults, not tuned here)
    model.config = model.config.model_copy(update={"scoring": "next"})
    moved = model.transferred(dataset, TransferConfig())
    figures[TRANSFER] = evaluate(moved, dataset, ks=(1, 5, 10, 20, 50))["segments"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=BENCHES, required=True)
    parser.add_argument("--only", nargs="+", help="run these variants only (full, "
                        f"{', '.join(ABLATIONS)}, scorings, {', '.join(BESIDE)})")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, choices=SEEDS)
    args = parser.parse_args()
    bench = BENCHES[args.data]
    if not bench.source.is_dir():
        raise SystemExit(f"{bench.title} not found at {bench.source}")
    wanted = set(args.only or ["full", *ABLATIONS, "scorings", *BESIDE])
    run_coldrec(prepare_command(bench), ROOT / bench.data / "meta.json")
    tagged = kept(bench) / "tags.json"
    # the embedding tags are what every run reads; SmolLM2's only feed the kept figures
    for command in tag_commands(bench)[: 1 if tagged.is_file() else None]:
        run_coldrec(command, ROOT / command[command.index("--out") + 1] / "summary.json")
    if not tagged.is_file():
        tagged.parent.mkdir(parents=True, exist_ok=True)
        tagged.write_text(json.dumps(tag_figures(bench), indent=1))
    for seed in args.seeds or SEEDS:
        if "full" in wanted:
            for gamma in GAMMAS:
                run_kept(evaluate_command(bench, full(gamma), seed, gamma, []))
        if wanted & {*ABLATIONS, "scorings"}:
            gamma = chosen_gamma(bench, seed)
            for name, extra in ABLATIONS.items():
                if name in wanted:
                    run_kept(evaluate_command(bench, name, seed, gamma, extra))
            if "scorings" in wanted:
                rescored(bench, seed, gamma)
        for name in BESIDE:
            if name in wanted and (seed == 0 or name != "itemknn"):  # itemknn: deterministic
                run_kept(beside_command(bench, name, seed))
    report(bench)


def kept(bench: Bench) -> Path:
    """The benchmark's kept figures (committed)."""
    return RESULTS / f"stars_{bench.name}"


def collected(bench: Bench) -> tuple[dict[str, list[dict[str, Any]]], dict[int, float]] | None:
    """Every variant's segments per seed and the chosen γs; None while runs are missing."""
    runs: dict[str, list[dict[str, Any]]] = {}
    gammas = {}
    for seed in SEEDS:
        try:
            gamma = gammas[seed] = chosen_gamma(bench, seed)
        except FileNotFoundError:
            print(f"seed {seed}: the full models are not all there yet; no report")
            return None
        names = {"full (γ chosen)": evaluate_command(bench, full(gamma), seed, gamma, []),
                 **{f"γ = {g:g}": evaluate_command(bench, full(g), seed, g, [])
                    for g in GAMMAS},
                 **{name: evaluate_command(bench, name, seed, gamma, extra)
                    for name, extra in ABLATIONS.items()},
                 **{name: beside_command(bench, name, seed if name != "itemknn" else 0)
                    for name in BESIDE}}  # fmt: skip
        for label, command in names.items():
            path = metrics_path(command)
            if not path.is_file():
                print(f"{path} is missing: no report yet")
                return None
            runs.setdefault(label, []).append(json.loads(path.read_text())["segments"])
        for label, segments in rescored(bench, seed, gamma).items():
            runs.setdefault(label, []).append(segments)
    return runs, gammas


def report(bench: Bench) -> None:
    """Write the tables once every seed of every variant is there."""
    found = collected(bench)
    if found is None:
        return
    runs, gammas = found
    tags = json.loads((kept(bench) / "tags.json").read_text())
    rows = [table_rows(label, seeds) for label, seeds in runs.items()]
    curve = {seed: validation_scores(bench, seed) for seed in SEEDS}
    curve_rows = [f"| {seed} | " + " | ".join(f"{curve[seed][g]:.4f}" for g in GAMMAS) + " |"
                  for seed in SEEDS]  # fmt: skip
    smollm2 = ""
    if "agreement" in tags:
        smollm2 = (f" SmolLM2 tagged {tags['smollm2_items']} sampled items on the same "
                   f"vocabulary: mean Jaccard agreement with the embedding tagger "
                   f"{tags['agreement']:.3f}.")  # fmt: skip
    commands = [prepare_command(bench), *tag_commands(bench),
                *(evaluate_command(bench, full(g), 0, g, []) for g in GAMMAS)]  # fmt: skip
    markdown = f"""# STARS on {bench.title} (global split, full catalogue), 3 seeds

γ chosen per seed on validation (the mean of warm and cold Recall@20, recorded by each
training at its best epoch): {", ".join(f"seed {s}: {g:g}" for s, g in gammas.items())}.
Mean ± sample std over seeds 0–2; NI / GI / RR: the chosen full model scored with
`h_next`, `h_gen` and their round-robin interleave. `itemknn` (content kNN,
deterministic: one run) and `sasrec_full` (full softmax over the catalogue) ran here
with the same cut-offs.{e0_line() if bench.name == "beauty" else ""}

| variant | segment | R@1 | R@5 | R@10 | R@20 | R@50 | NDCG@10 | Coverage@10 |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Validation score of each γ (what chose it):

| seed | {" | ".join(f"γ = {g:g}" for g in GAMMAS)} |
|---|{"---|" * len(GAMMAS)}
{chr(10).join(curve_rows)}

Tags: {tags["embedding_items"]:,} items tagged by the embedding tagger (no LLM), vocabulary
of {tags["vocabulary"]}.{smollm2}

## Commands

{chr(10).join("    coldrec " + shlex.join(c) for c in commands)}
"""
    write_results(f"stars_{bench.name}", {"runs": runs, "gammas": gammas, "tags": tags,
                                          "validation": curve}, markdown)  # fmt: skip


def e0_line() -> str:
    e0 = json.loads((RESULTS / "beauty_e0_e3.json").read_text())["summary"]["e0"]["segments"]
    figures = ", ".join(f"{s} {e0[s]['recall@20'][0]:.4f} ± {e0[s]['recall@20'][1]:.4f}"
                        for s in ("all", "warm", "cold"))  # fmt: skip
    return (" E0 (Two-Tower candidates re-ranked by SASRec, fused; from "
            f"`beauty_e0_e3.json`), Recall@20: {figures}.")  # fmt: skip


def table_rows(label: str, seeds: list[dict[str, Any]]) -> str:
    lines = []
    for segment in ("all", "warm", "cold"):
        cells = []
        for metric in ("recall@1", "recall@5", "recall@10", "recall@20", "recall@50",
                       "ndcg@10", "coverage@10"):  # fmt: skip
            cells.append(mean_std([s[segment][metric] for s in seeds]))
        lines.append(f"| {label} | {segment} | {' | '.join(cells)} |")
    return "\n".join(lines)


def tag_figures(bench: Bench) -> dict[str, Any]:
    embedding = ROOT / bench.runs / "tags_embedding"
    first = json.loads((embedding / "summary.json").read_text())
    figures = {"embedding_items": first["items_with_tags"], "vocabulary": first["vocabulary"]}
    smollm2 = ROOT / bench.runs / "tags_smollm2"
    if bench.smollm2_sample:
        summary = json.loads((smollm2 / "summary.json").read_text())
        figures["agreement"] = tag_agreement(pd.read_parquet(embedding / "tags.parquet"),
                                             pd.read_parquet(smollm2 / "tags.parquet"),
                                             summary["tagged_items"])  # fmt: skip
        figures |= {"smollm2_items": summary["items"], "smollm2_llm": summary["llm"]}
    return figures


if __name__ == "__main__":
    main()
