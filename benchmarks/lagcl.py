"""LAGCL4Rec (issue 27) on MovieLens-100K or Amazon Beauty (full ranking), 3 seeds: the
shipped experiment ``configs/<data>/lagcl_<data>.yaml`` — the base backbones, each LLM
level removed, the full model, content kNN beside — run with ``coldrec run`` (its steps
cached: a stopped run resumes), then its figures tabulated with the augmentation's
real-pair rate.

``--split global`` is the config's own global time split; ``--split random`` the random
80/20 split of the paper's protocol (the same config with
``--set data.prepare.split=random``). Every LLM call of the configs is made by the
``embedding`` stand-in (no LLM). ``--smollm2 N`` also runs ``coldrec augment`` with the
local SmolLM2 over a seeded sample of N sparse users (``--candidates`` items each) and,
for comparison, the stand-in over the same users: their real-pair rates and the LLM's
cost go in the report (that augmentation is measured, not trained on). ``--report`` only
rewrites the report from the kept figures and the run folder's samples. ``--keep OUT …``
keeps the figures of runs made apart (``coldrec run`` of parts of the config, e.g. one
process per seed: their steps are the whole config's steps) with each part's seeds,
variants and code commit, which the report lists under the command.

Each finished run's metrics are kept in ``benchmarks/results/lagcl_<data>[_random]/``
(committed). Writes ``benchmarks/results/lagcl_<data>[_random].{md,json}``. Run from the
project root: ``.venv/bin/python benchmarks/lagcl.py --data ml100k``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, mean_std, write_results
from beauty_baselines import run_coldrec

DATA = ("ml100k", "beauty")
SPLITS = {"global": [], "random": ["--set", "data.prepare.split=random",
                                   "--set", "data.prepare.train_share=0.8"]}  # fmt: skip
SEGMENTS = ("all", "warm", "cold")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
BESIDE = {"lagcl_beauty": {"E0 (beauty_e0_e3)": RESULTS / "beauty_e0_e3" / "e0"}}
"""Kept runs of other benchmarks on the same split, shown below the variants."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, required=True)
    parser.add_argument("--split", choices=SPLITS, default="global")
    parser.add_argument("--smollm2", type=int, default=0, metavar="N",
                        help="also augment N sampled sparse users with SmolLM2")  # fmt: skip
    parser.add_argument("--candidates", type=int, default=256,
                        help="items SmolLM2 scores per sampled user")  # fmt: skip
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the report")  # fmt: skip
    parser.add_argument("--keep", nargs="+", type=Path, default=[], metavar="OUT",
                        help="keep the figures of these run folders, then report")  # fmt: skip
    args = parser.parse_args()
    name = f"lagcl_{args.data}" + ("" if args.split == "global" else f"_{args.split}")
    out = Path("runs") / name
    config = Path("configs") / args.data / f"lagcl_{args.data}.yaml"
    commands = [["run", str(config), "--out", str(out), *SPLITS[args.split]]]
    if args.smollm2:
        commands += [sample_command(out, backend, args.smollm2, args.candidates)
                     for backend in ("llamacpp", "embedding")]  # fmt: skip
    if args.keep:
        keep_apart(args.keep, RESULTS / name)
    elif not args.report:
        run_coldrec(commands[0])
        keep(ROOT / out, RESULTS / name)
        for command in commands[1:]:
            run_coldrec(command)
    report(name, ROOT / out, commands)


def sample_command(out: Path, backend: str, users: int, candidates: int) -> list[str]:
    """``coldrec augment`` of a seeded sample of sparse users (the same users for each
    backend: the sample is drawn from the seed before any backend is asked)."""
    one_thread = ["--set", "llm.backend.n_threads=1"] if backend == "llamacpp" else []
    return ["augment", "--dataset", str(out / "data"), "--backend", backend, "--users",
            str(users), "--set", f"candidates={candidates}", *one_thread,
            "--out", str(out / f"augment_sample_{backend}")]  # fmt: skip


def keep(out: Path, kept: Path) -> None:
    """Copy every finished run's metrics (and the augmentation summary) to ``kept``."""
    keep_metrics(out, kept)
    shutil.copyfile(out / "augment" / "summary.json", kept / "augment.json")


def keep_apart(outs: list[Path], kept: Path) -> None:
    """Keep the figures of runs made apart (which must share one augmentation) and each
    part's seeds, variants and code commit (in ``kept/parts.json``)."""
    augmentations = {(out / "augment" / "summary.json").read_text() for out in outs}
    if len(augmentations) > 1:
        raise SystemExit(f"{', '.join(map(str, outs))}: not one augmentation")
    parts = []
    for out in outs:
        keep(out, kept)
        config = json.loads((out / "experiment.json").read_text())["config"]
        git = ["git", "-C", str(out), "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True, check=True).stdout
        parts.append({"seeds": config["seeds"], "variants": sorted(config["baselines"]),
                      "commit": commit.strip()})  # fmt: skip
    (kept / "parts.json").write_text(json.dumps(parts, indent=1) + "\n")


def keep_metrics(out: Path, kept: Path) -> None:
    """Copy the metrics of every finished baseline run of ``coldrec run``'s ``out`` to
    ``kept/<baseline>/seed<N>/``."""
    for path in (out / "baselines").glob("*/seed*/metrics-seed*.json"):
        target = kept / path.relative_to(out / "baselines")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def report(name: str, out: Path, commands: list[list[str]]) -> None:
    """The ablation table from the kept figures."""
    kept = RESULTS / name
    figures: dict[str, list[dict[str, Any]]] = {}
    choices: dict[str, list[str]] = {}
    targets = set()  # the test users and targets per segment: one split
    for folder in sorted(p for p in kept.iterdir() if p.is_dir()):
        found = [json.loads(path.read_text())
                 for path in sorted(folder.glob("seed*/metrics-seed*.json"))]  # fmt: skip
        figures[folder.name] = [metrics["segments"] for metrics in found]
        choices[folder.name] = [chosen(metrics) for metrics in found]
        targets |= {json.dumps(metrics["counts"], sort_keys=True) for metrics in found}
    rows = [row for variant, seeds in figures.items() for row in table_rows(variant, seeds)]
    for label, folder in BESIDE.get(name, {}).items():
        found = [json.loads(path.read_text()) for path in sorted(folder.glob("metrics-seed*.json"))]
        if {json.dumps(metrics["counts"], sort_keys=True) for metrics in found} != targets:
            raise SystemExit(f"{folder}: not the test targets of {kept}")
        figures[label] = [metrics["segments"] for metrics in found]
        rows += table_rows(label, figures[label])
    chosen_rows = [f"| {variant} | {' | '.join(seeds)} |" for variant, seeds in choices.items()]
    augment = json.loads((kept / "augment.json").read_text())
    meta = json.loads((out / "data" / "meta.json").read_text())
    summaries = {backend: out / f"augment_sample_{backend}" / "summary.json"
                 for backend in ("llamacpp", "embedding")}  # fmt: skip
    samples = {b: {**json.loads(p.read_text()), "answer_seconds": answer_seconds(p.parent)}
               for b, p in summaries.items() if p.is_file()}  # fmt: skip
    markdown = f"""# LAGCL4Rec: {name} ({meta["prepare"]["split"]} split, full ranking)

`{shlex.join(commands[0][1:2])}`; every LLM call of the ablation by the `embedding` stand-in
(no LLM). {meta["test_interactions"]:,} test interactions, {meta["cold_items"]:,} cold items.
Augmentation: {augment["sparse_users"]:,} sparse users, {augment["positives"]:,} positives and
{augment["negatives"]:,} negatives; real-pair rate {augment["real_pair_rate"]:.2%} against
{augment["random_real_pair_rate"]:.2%} for random candidates. Mean ± sample std over the
seeds.

| variant | segment | {" | ".join(METRICS)} |
|---|---|{"---|" * len(METRICS)}
{chr(10).join(rows)}

What each seed's training and re-ranking chose on validation (the epochs of the final fit:
its validation copy's best epoch; the re-ranking's α, 1 keeping the model's order):

| variant | {" | ".join(f"seed {k}" for k in range(len(next(iter(choices.values())))))} |
|---|{"---|" * len(next(iter(choices.values())))}
{chr(10).join(chosen_rows)}
{sample_table(samples)}
## Commands

{commands_text(kept, commands)}
"""
    write_results(name, {"runs": figures, "augment": augment, "samples": samples}, markdown)


def commands_text(kept: Path, commands: list[list[str]]) -> str:
    """The commands behind the figures, and how the runs kept apart split them."""
    text = "\n".join("    coldrec " + shlex.join(c) for c in commands)
    parts_file = kept / "parts.json"
    if not parts_file.is_file():
        return text
    parts = [f"- seeds {p['seeds']}: {', '.join(p['variants'])} (code at {p['commit']})"
             for p in json.loads(parts_file.read_text())]  # fmt: skip
    return (
        f"{text}\n\nRun in parts, one process each (the steps of the whole config, so the "
        "same trainings):\n\n" + "\n".join(parts)
    )


def chosen(metrics: dict[str, Any]) -> str:
    """The epochs and the re-ranking α one run chose on validation."""
    training = metrics.get("training") or {}
    epochs = training.get("final", {}).get("epochs_run")
    rerank = metrics.get("rerank")
    alpha = f", α {rerank['alpha']:g}" if rerank else ""
    return f"{epochs} epochs{alpha}" if epochs else alpha.lstrip(", ") or "–"


def sample_table(samples: dict[str, dict[str, Any]]) -> str:
    """SmolLM2's augmentation of the user sample beside the stand-in's on the same users."""
    if not samples:
        return ""
    lines = ["", "Augmentation of the same sampled sparse users by each backend (tokens and "
             "seconds: what the answers took when they were made, cached or not):", "",
             "| backend | users | positives | real-pair rate | random | requests (failed) "
             "| tokens in / out | seconds |", "|---|" + "---:|" * 7]  # fmt: skip
    for s in samples.values():
        stages = s["llm"].values()
        requests, failed = (sum(stage[k] for stage in stages) for k in ("requests", "failures"))
        tokens = [sum(stage[f"answer_{k}_tokens"] for stage in stages)
                  for k in ("prompt", "completion")]  # fmt: skip
        lines.append(f"| {s['backend']['identity']} ({s['backend']['note']}) | "
                     f"{s['sparse_users']} | {s['positives']} | {s['real_pair_rate']:.2%} | "
                     f"{s['random_real_pair_rate']:.2%} | {requests:.0f} ({failed:.0f}) | "
                     f"{tokens[0]:,.0f} / {tokens[1]:,.0f} | "
                     f"{s['answer_seconds']:,.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def answer_seconds(folder: Path) -> float:
    """Seconds of the calls that reached the backend, over every run into ``folder``
    (its ``calls.jsonl`` is appended to: a rerun's cached answers cost none)."""
    log = folder / "calls.jsonl"
    records = [json.loads(line) for line in log.open()] if log.is_file() else []
    return sum(r["latency_s"] for r in records if r["kind"] == "call" and not r["cached"])


def table_rows(
    label: str, seeds: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS
) -> list[str]:
    """``| label | segment | mean ± std |…`` of ``metrics`` per segment over seeds' figures."""
    lines = []
    for segment in SEGMENTS:
        cells = []
        for metric in metrics:
            cells.append(mean_std([s[segment][metric] for s in seeds]))
        lines.append(f"| {label} | {segment} | {' | '.join(cells)} |")
    return lines


if __name__ == "__main__":
    main()
