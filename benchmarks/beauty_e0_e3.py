"""E0–E3 on Amazon Beauty (global split), 3 seeds, beside the baselines and the thesis.

Runs ``coldrec run configs/beauty/<config>.yaml`` one seed at a time for E0–E3 and their
variants (``CONFIGS``; they share their steps up to the labels through the step store,
so the candidates and the embedding-judge labels are made once and E0 re-ranks the same
candidates as E1–E3). E0's experiment also evaluates the Popularity and ItemKNN-content
baselines. Each finished seed is kept in ``benchmarks/results/beauty_e0_e3/`` (its
metrics, the summary of the labels as first made, and a line in ``provenance.jsonl`` with
the commit, the labels' step key, date and step times), which is committed: a seed that
is kept there is not run again, so the grid can be filled over several sessions, and a
lost ``runs/`` folder loses no result.
SmolLM2's answers (about an hour of CPU for 50 users) are kept there too, as
``smollm2_answers.sqlite``, the answer cache its configs run with.
``--only NAME …`` and ``--seeds N …`` run a subset (separate processes may run disjoint
subsets at once: a shared step is made once, under a lock). Once every config has every
seed, writes ``benchmarks/results/beauty_e0_e3.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/beauty_e0_e3.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

from _common import RESULTS, ROOT, write_results
from beauty_baselines import COLDREC
from coldrec.eval.report import aggregate, load_metrics, markdown

CONFIGS = (
    "e0",
    "e1",
    "e2",
    "e3",
    "e3_delta_knn",
    "e0_delta_knn",
    "e1_smollm2",
    "e2_smollm2",
    "e3_smollm2",
)
# The SmolLM2 rows were made before issue 25 (labels from the whole history only, the
# binary fusion) and are kept as they are; the other configs' earlier seeds are in
# ``KEPT/before_issue25``.
BEFORE_ISSUE_25 = ("e1_smollm2", "e2_smollm2", "e3_smollm2")
# Issue 25's targets: the best warm and the best cold Recall@20 of the grid before it,
# and popularity's Recall@20 for users without history.
TARGETS = {"warm": 0.0475, "cold": 0.0429, "cold_users": 0.0259}
SEEDS = (0, 1, 2)
BASELINES = ("popularity", "itemknn")  # evaluated by E0's experiment
RUNS = ROOT / "runs" / "beauty_e"
KEPT = RESULTS / "beauty_e0_e3"
# SmolLM2's configs run with their own cache folder, whose answer file is kept.
SMOLLM2_CACHE = RUNS / ".cache-smollm2"
SMOLLM2_ANSWERS = KEPT / "smollm2_answers.sqlite"
# Recall@20 of the thesis (Tables 5.2/5.3, as quoted in the issues) and the independent
# reference evaluation of content kNN on this split (issue 9).
REFERENCES = {
    "thesis E0": {"warm": {"recall@20": 0.0313}, "cold": {"recall@20": 0.0029}},
    "thesis E3": {"warm": {"recall@20": 0.0304}, "cold": {"recall@20": 0.0131}},
    "content kNN (reference)": {"warm": {"recall@20": 0.0289}, "cold": {"recall@20": 0.0256}},
}


def command(name: str, seed: int) -> list[str]:
    # SmolLM2 on one thread, like the PyTorch jobs (OMP_NUM_THREADS=1): the grid runs as two
    # processes side by side on 2 cores, and llama.cpp's threads spin when they share one.
    threads = ["--set", "supervise.llm.backend.n_threads=1"] if name.endswith("_smollm2") else []
    return ["run", f"configs/beauty/{name}.yaml", "--set", f"seeds=[{seed}]", *threads,
            "--out", str((RUNS / name).relative_to(ROOT))]  # fmt: skip


def result_folders(name: str) -> list[tuple[str, Path]]:
    """What ``name`` evaluates (its ranker; E0 also the baselines): the step folder in
    the run (``<folder>/seed<N>``) and the kept folder."""
    pairs = [("rank", KEPT / name)]
    if name == "e0":
        pairs += [(f"baselines/{baseline}", KEPT / name / baseline) for baseline in BASELINES]
    return pairs


def is_kept(name: str, seed: int) -> bool:
    return all((kept / f"metrics-seed{seed}.json").is_file() for _, kept in result_folders(name))


def run_seed(name: str, seed: int) -> None:
    """Run one seed of ``name`` (SmolLM2's configs with their kept answer cache)."""
    env, smollm2 = dict(os.environ), name.endswith("_smollm2")
    answers = SMOLLM2_CACHE / "llm" / "answers.sqlite"
    if smollm2:
        env["COLDREC_CACHE_DIR"] = str(SMOLLM2_CACHE)
        if SMOLLM2_ANSWERS.is_file() and not answers.is_file():
            answers.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SMOLLM2_ANSWERS, answers)
    subprocess.run([COLDREC, "-q", *command(name, seed)], cwd=ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    if smollm2:
        KEPT.mkdir(parents=True, exist_ok=True)
        copy = Path(f"{SMOLLM2_ANSWERS}.tmp")
        copy.unlink(missing_ok=True)
        with sqlite3.connect(answers) as db:  # a standalone copy, the WAL folded in
            db.execute("VACUUM INTO ?", (str(copy),))
        os.replace(copy, SMOLLM2_ANSWERS)


def keep_seed(name: str, seed: int, version: str) -> None:
    """Copy what the report needs of one finished seed into ``KEPT``, with its provenance."""
    out, seconds = RUNS / name, {}
    for folder, kept in result_folders(name):
        made = out / folder / f"seed{seed}"
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made / f"metrics-seed{seed}.json", kept / f"metrics-seed{seed}.json")
        seconds[f"{folder}/seed{seed}"] = _step(made)["seconds"]
    line = {"config": name, "seed": seed, "code": version}
    if (out / "supervise").is_dir():
        # The first summary is kept: a remade step answered from the cache reports cached
        # calls and seconds, not what the labels cost. The key names the labels used.
        labels = KEPT / name / "labels.json"
        if not labels.is_file():
            shutil.copyfile(out / "supervise" / "summary.json", labels)
        supervise = _step(out / "supervise")
        seconds["supervise"], line["labels_key"] = supervise["seconds"], supervise["key"]
    line["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    line["step_seconds"] = seconds
    with (KEPT / "provenance.jsonl").open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def code_version() -> str:
    """The commit, and whether ``src/`` or ``configs/`` differ from it."""
    version = _git("rev-parse", "--short=12", "HEAD")
    if _git("status", "--porcelain", "--", "src", "configs"):
        version += " with uncommitted changes to src/ or configs/"
    return version


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, text=True, capture_output=True,
                          check=True).stdout.strip()  # fmt: skip


def _step(step: Path) -> dict:
    """A made step's record (``step.json``: its key, seconds, inputs and settings)."""
    return json.loads((step / "step.json").read_text())


def goal(summary: dict, runs: list[dict]) -> str:
    """Which configurations beat content kNN's reference on cold and warm Recall@20.

    Judged on the mean over seeds, and on each seed's own lists (``k/n seeds``).
    """
    bar = {s: REFERENCES["content kNN (reference)"][s]["recall@20"] for s in ("warm", "cold")}

    def beats(recall: dict) -> bool:
        return all(recall[s] > bar[s] for s in bar)

    lines = []
    for method, info in summary.items():
        mean = {s: info["segments"][s]["recall@20"][0] for s in bar}
        seeds = [{s: run["segments"][s]["recall@20"] for s in bar}
                 for run in runs if run["method"] == method]  # fmt: skip
        lines.append(f"- {method}: warm {mean['warm']:.4f}, cold {mean['cold']:.4f} — "
                     f"{'beats' if beats(mean) else 'does not beat'} content kNN on both "
                     f"(in {sum(map(beats, seeds))}/{len(seeds)} seeds)")  # fmt: skip
    return "\n".join(lines)


def label_accounting(name: str, summary: dict) -> str:
    """One row of the labels table: who made them, how many, and what they cost."""
    stages = summary["stages"].values()
    calls, cached = sum(s["calls"] for s in stages), sum(s["cached"] for s in stages)
    return (f"| {name} | {summary['backend']['identity']} | {summary['users']:,} | "
            f"{summary['edges']:,} | {summary['edges_on_cold_items']:,} | "
            f"{summary['triplets']:,} | {calls:,} | {cached:,} | "
            f"{summary['seconds_per_user']:.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=CONFIGS, help="run these only")
    parser.add_argument("--seeds", nargs="+", type=int, choices=SEEDS, help="these seeds only")
    args = parser.parse_args()
    for name in args.only or CONFIGS:
        for seed in args.seeds or SEEDS:
            if not is_kept(name, seed):
                version = code_version()  # what the run imports, read before it starts
                run_seed(name, seed)
                keep_seed(name, seed, version)
    if not all(is_kept(name, seed) for name in CONFIGS for seed in SEEDS):
        kept = [kept for name in CONFIGS for _, kept in result_folders(name) if kept.is_dir()]
        print("some seeds are missing: no report yet. The seeds kept so far:\n")
        print(markdown(aggregate(load_metrics(kept)), references=REFERENCES))
        return
    runs = load_metrics([kept for name in CONFIGS for _, kept in result_folders(name)])
    summary = aggregate(runs)
    labels = {name: json.loads((KEPT / name / "labels.json").read_text())
              for name in CONFIGS if (KEPT / name / "labels.json").is_file()}  # fmt: skip
    accounting = "\n".join(label_accounting(part, record) for name, summary in labels.items()
                           for part, record in label_passes(name, summary))  # fmt: skip
    choices = {kind: _per_method(runs, kind) for kind in ("fusion", "labels", "transfer")}
    shown = "\n".join(f"    coldrec {shlex.join(command(name, seed))}"
                      for name in CONFIGS for seed in SEEDS)  # fmt: skip
    markdown_text = f"""# E0–E3 on Amazon Beauty (global split), 3 seeds

Two-Tower candidates (top 2,000) re-ranked by SASRec fused with the Two-Tower scores by
the evidence blend (`α·(w·SASRec + (1 − w)·TwoTower) + (1 − α)·TwoTower`, `w = e/(e + κ)`
from each item's training interactions and, at 0.1 each, its label rows; κ = 0 is the
binary fusion), α and κ chosen together on the validation carve-out (the mean of warm
and cold Recall@20 there). E1: tree labels with `L_sim`; E2: with `L_pair`; E3: both;
λ (λ_sim = λ_pair, 0.1 or 1) and the cap on edges per item (50 or none) chosen on
validation, the validation ranker training on labels made from the validation view's
history only; a setting is chosen only if its validation warm and cold Recall@20 each
reach 98% of a ranker trained without labels (the guard), else no labels.
Labels from the `embedding` judge (MiniLM similarity, not an LLM) over
every eligible user. `e3_delta_knn` / `e0_delta_knn`: E3 / E0 with delta item vectors
and KNN residual transfer, K and gate τ chosen on validation after the fit (T 0.07, β 20).
Test users without history get the fallback (popularity of the last 30 days).
The SmolLM2 rows (`_smollm2`, 50 sampled users) were made before these changes (binary
fusion, labels from the whole history only, λ from 0.01, 0.1, 1) and are kept as they
are. Seeds 0–2 vary the ranker; the candidates and labels are made once. Popularity and
ItemKNN-content are deterministic; popularity ranks users without history itself.
"(published)" rows: the thesis's figures and the independent content-kNN reference
(Recall@20 only). Which commit made each seed, and when: `beauty_e0_e3/provenance.jsonl`;
the seeds made before issue 25 are in `beauty_e0_e3/before_issue25/`.

{markdown(summary, references=REFERENCES)}
## Targets of issue 25 (3-seed means)

{targets(summary)}

## The bar to clear: content kNN (warm 0.0289, cold 0.0256)

On the mean over seeds, and in how many seeds' own lists. `itemknn` is coldrec's
ItemKNN-content, the same method as the independent reference, so it lands on the bar.

{goal(summary, runs)}

## Chosen on validation, per seed

Fusion (α, κ):

{_lines(choices["fusion"])}

Labels (λ, edge cap; the SmolLM2 rows: λ):

{_lines(choices["labels"])}

Transfer (K, τ):

{_lines(choices["transfer"])}

## Labels

"cached": calls answered from the answer cache; where every call was, the seconds per
user measure the cache, not the LLM. "view": the second pass over the validation view's
history (what the validation ranker trains on).

| run | backend | users | edges | on cold items | triplets | calls | cached | s per user |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{accounting}

Label quality: precision and recall of the edges against the labelled users' held-out
interactions (the validation view's against its validation interactions; the main
labels' against test, a diagnostic nothing chooses on), beside a random control with as
many edges per user.

| run | held-out pairs | precision | random precision | recall | random recall |
|---|---:|---:|---:|---:|---:|
{quality_rows(labels)}

## Commands

{shown}
"""
    figures = {"summary": summary, "choices": choices, "labels": labels}
    write_results("beauty_e0_e3", figures, markdown_text)


def targets(summary: dict) -> str:
    """Which configurations reach issue 25's targets, and E1–E3 against E0."""
    lines = []
    for method, info in summary.items():
        mean = {s: info["segments"][s]["recall@20"][0] for s in TARGETS}
        reached = [s for s in TARGETS if mean[s] >= TARGETS[s]]
        lines.append(f"- {method}: warm {mean['warm']:.4f}, cold {mean['cold']:.4f}, "
                     f"cold users {mean['cold_users']:.4f}; reaches "
                     f"{', '.join(reached) if reached else 'none'}")  # fmt: skip
    e0 = summary.get("e0")
    if e0 is not None:
        for name in ("e1", "e2", "e3"):
            if name not in summary:
                continue
            worse = [s for s in ("warm", "cold") if summary[name]["segments"][s]["recall@20"][0]
                     < e0["segments"][s]["recall@20"][0] - _std(e0, s)]  # fmt: skip
            lines.append(f"- {name} against e0 (one seed standard deviation): "
                         f"{'worse on ' + ', '.join(worse) if worse else 'no worse'}")  # fmt: skip
    return "\n".join(lines)


def _std(info: dict, segment: str) -> float:
    spread = info["segments"][segment]["recall@20"][1]
    return 0.0 if spread is None else spread


def _per_method(runs: list[dict], kind: str) -> dict[str, list[str]]:
    """Per method, one short line per seed of what validation chose."""
    out: dict[str, list[str]] = {}
    for run in runs:
        line = None
        if kind == "fusion" and "fusion" in run:
            blend = run["fusion"].get("blend", {"kappa": 0.0})
            line = f"α {run['fusion']['alpha']:g}, κ {blend['kappa']:g}"
        elif kind == "labels" and "label_settings" in run:
            line = _label_line(run["label_settings"])
        elif kind == "labels" and "label_weight" in run:
            line = _lambda_line(run["label_weight"])
        elif kind == "transfer" and "transfer_choice" in run:
            chosen = run["transfer_choice"]["chosen"]
            line = f"K {chosen['k']}, τ {chosen['tau']:g}"
        if line is not None:
            out.setdefault(run["method"], []).append(line)
    return out


def _lines(values: dict[str, list[str]]) -> str:
    return "\n".join(f"- {name}: {'; '.join(lines)}" for name, lines in values.items()) or "- none"


def quality_rows(labels: dict[str, dict]) -> str:
    """One row per label set with a quality record (main labels and the view's)."""
    rows = []
    for name, summary in labels.items():
        for part, record in label_passes(name, summary):
            quality = record.get("quality")
            if quality is None:  # labels made before quality was measured
                continue
            shares = " | ".join(_share(quality[key]) for key in (
                "precision", "random_precision", "recall", "random_recall"))  # fmt: skip
            rows.append(f"| {part} | {quality['held_out_pairs']:,} | {shares} |")
    return "\n".join(rows)


def label_passes(name: str, summary: dict) -> list[tuple[str, dict]]:
    """The labels' summary and, when there is one, the validation view's."""
    view = summary.get("validation_view")
    return [(name, summary), *([(f"{name} (view)", view)] if view else [])]


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _label_line(choice: dict) -> str:
    """The chosen (λ, cap) and, where the guard overruled it, what the score alone chose."""

    def name(point: dict) -> str:
        if point["weight"] == 0:
            return "no labels"
        return f"λ {point['weight']:g}, cap {point['edge_cap']}"

    line = name(choice["chosen"])
    by_score = max(choice["validation"], key=lambda point: point["score"])
    if "guard" in choice and name(by_score) != line:
        line += f" (the score alone: {name(by_score)})"
    return line


def _lambda_line(choice: dict) -> str:
    scores = ", ".join(f"{p['weight']:g}: {p['score']:.4f}" for p in choice["validation"])
    return f"{choice['chosen']:g} ({scores})"


if __name__ == "__main__":
    main()
