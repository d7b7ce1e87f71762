"""What pseudo labels cost per unit of quality (issue 28): the tree stages at the default
sizes and at smaller ones, and flat, on Amazon Beauty, with label precision against the
held-out validation interactions beside the tokens each setting spends.

Reads E0's prepared data and Two-Tower run of ``llm_rank.py`` (``runs/llm_rank_beauty/e0``;
run that first). For each setting ``coldrec supervise`` labels a seeded sample of users
(its validation-view pass labels the view's users from the history before validation and
measures the edges against the validation interactions: precision, and a random control
with as many edges per user); the ``embedding`` judge over ``--users`` users and, with
``--smollm2 N``, SmolLM2 (transformers backend, ``llm_rank.py``'s settings) over N
users. Tokens per user: SmolLM2's own accounting for its runs; for the embedding judge
(which sends nothing to an LLM) the same prompts rebuilt for 50 users and counted with
SmolLM2's tokenizer (``supervise_beauty.stage_tokens``).

"Matches the default": a setting's precision is at least the default's minus the
default's binomial standard error. Finished runs' summaries are kept in
``benchmarks/results/label_cost/``. Writes ``benchmarks/results/label_cost.{md,json}``.
Run from the project root: ``.venv/bin/python benchmarks/label_cost.py [--users 1000]
[--smollm2 10]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, write_results
from beauty_baselines import kept_run
from llm_rank import SMOLLM2
from supervise_beauty import stage_tokens

E0 = Path("runs") / "llm_rank_beauty" / "e0"
OUT = Path("runs") / "label_cost"
KEPT = RESULTS / "label_cost"
SETTINGS: dict[str, dict[str, Any]] = {
    "tree default": {},
    "tree medium": {"subcategories": 4, "local_candidates": 40, "picks": 6, "preselected": 20,
                    "final": 12},
    "tree small": {"subcategories": 2, "local_candidates": 20, "picks": 5, "preselected": 10,
                   "final": 8},
    "flat default": {"method": "flat"},
    "flat small": {"method": "flat", "flat_candidates": 25, "final": 8},
}  # fmt: skip
HEADER = ("| judge | setting | users | edges | precision | random | tokens per user | correct "
          "edges per million tokens | matches the default |\n|---|---|---:|---:|---:|---:|---:|"
          "---:|---|")  # fmt: skip
JUDGES = {"embedding": ["--backend", "embedding"], "smollm2": SMOLLM2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000, help="users the embedding judge labels")
    parser.add_argument("--smollm2", type=int, default=0, metavar="N",
                        help="also SmolLM2 over N users")  # fmt: skip
    args = parser.parse_args()
    if not (ROOT / E0 / "retrieve" / "valid_candidates.parquet").is_file():
        raise SystemExit(f"{E0} not found: run benchmarks/llm_rank.py first (E0, seed 0)")
    counts = {"embedding": args.users, "smollm2": args.smollm2}
    commands, rows = [], []
    for judge, users in counts.items():
        for setting, sizes in SETTINGS.items() if users else ():
            command = supervise_command(judge, setting, sizes, users)
            commands.append(command)
            summary = kept_run(command, KEPT / f"{slug(judge, setting)}_u{users}.json")
            if judge == "smollm2":
                tokens = per_user_tokens(summary)
            else:
                tokens = embedding_tokens(setting, sizes)
            rows.append(figures(judge, setting, summary, tokens))
    report(rows, commands, args.users)


def slug(judge: str, setting: str) -> str:
    return f"{judge}_{setting.replace(' ', '_')}"


def supervise_command(judge: str, setting: str, sizes: dict[str, Any], users: int) -> list[str]:
    flags = [x for key, value in sizes.items() for x in ("--set", f"stages.{key}={value}")]
    return ["supervise", "--dataset", str(E0 / "data"), "--candidates", str(E0 / "retrieve"),
            *JUDGES[judge], "--users", str(users), "--set", "users=sample", *flags,
            "--out", str(OUT / f"{slug(judge, setting)}_u{users}")]  # fmt: skip


def embedding_tokens(setting: str, sizes: dict[str, Any]) -> dict[str, float]:
    """Tokens per user of a setting's prompts and answers, counted with SmolLM2's
    tokenizer (kept: the count is the same whatever the users' number)."""
    kept = KEPT / f"tokens_{setting.replace(' ', '_')}.json"
    if not kept.is_file():
        stages = stage_tokens(sizes, E0 / "data", E0 / "retrieve", OUT / "tokens" / setting)
        KEPT.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps(stages, indent=1))
    stages = json.loads(kept.read_text())
    return {kind: sum(s[kind] for s in stages.values()) for kind in ("prompt", "completion")}


def per_user_tokens(summary: dict[str, Any]) -> dict[str, float]:
    """An LLM run's own accounting: tokens of every answer used, per labelled user."""
    stages = summary["stages"].values()
    users = max(1, summary["users"])
    return {kind: sum(s[f"answer_{kind}_tokens"] for s in stages) / users
            for kind in ("prompt", "completion")}  # fmt: skip


def figures(judge: str, setting: str, summary: dict[str, Any], tokens: dict[str, float]) -> dict:
    view = summary["validation_view"]
    quality = view["quality"]
    precision = quality["precision"] or 0.0
    edges_per_user = quality["edges"] / max(1, quality["users"])
    per_user = tokens["prompt"] + tokens["completion"]
    return {
        "judge": judge, "setting": setting, "users": view["users"], "edges": quality["edges"],
        "precision": precision, "random_precision": quality["random_precision"] or 0.0,
        "stderr": math.sqrt(precision * (1 - precision) / max(1, quality["edges"])),
        "edges_per_user": edges_per_user, "tokens_per_user": per_user,
        "correct_edges_per_million_tokens": 1e6 * precision * edges_per_user / per_user,
        "backend": summary["backend"]["identity"],
    }  # fmt: skip


def report(rows: list[dict[str, Any]], commands: list[list[str]], users: int) -> None:
    lines = []
    for judge in JUDGES:
        mine = [r for r in rows if r["judge"] == judge]
        if not mine:
            continue
        default = next(r for r in mine if r["setting"] == "tree default")
        floor = default["precision"] - default["stderr"]
        matching = [r for r in mine if r["setting"].startswith("tree") and r["precision"] >= floor]
        cheapest = min(matching, key=lambda r: r["tokens_per_user"])
        for r in mine:
            lines.append(
                f"| {judge} | {r['setting']} | {r['users']:,} | {r['edges']:,} | "
                f"{r['precision']:.2%} ± {r['stderr']:.2%} | {r['random_precision']:.2%} | "
                f"{r['tokens_per_user']:,.0f} | {r['correct_edges_per_million_tokens']:,.1f} | "
                f"{'yes' if r['precision'] >= floor else 'no'} |"
            )
        lines.append(f"| {judge} | **cheapest tree setting matching the default: "
                     f"{cheapest['setting']}** | | | | | | | |")  # fmt: skip
    sizes = "\n".join(f"- {name}: {value or 'the defaults (thesis sizes)'}"
                      for name, value in SETTINGS.items())  # fmt: skip
    listed = "\n".join(f"    coldrec {shlex.join(c)}" for c in commands)
    markdown = f"""# What pseudo labels cost per unit of quality (Amazon Beauty, validation view)

Each setting labels a seeded sample of users ({users:,} for the embedding judge); the
validation-view pass (history before validation only) is measured against the validation
interactions: precision of its edges (± binomial standard error) beside a random control
with as many edges per user. Tokens per user: prompts and answers of every stage, counted
with SmolLM2's tokenizer for the embedding judge (it sends nothing to an LLM: these are
what an LLM would be sent), SmolLM2's own accounting for its runs. "Correct edges per
million tokens" = precision × edges per user / tokens per user × 10⁶. "Matches" = precision
at least the default's minus its standard error.

{HEADER}
{chr(10).join(lines)}

Settings (`stages.*`; unset sizes are the defaults: 3 categories, 8 subcategories, 80
local candidates, 10 picks, 40 preselected, 20 final, 50 flat candidates):

{sizes}

`embedding` is no LLM (MiniLM similarity); SmolLM2-135M follows the schemas but judges
relevance poorly: its rows show the plumbing and the token accounting, not what a
capable model's labels are worth. Point `--backend openai --base-url …` at one to
measure it the same way.

Commands:

{listed}
"""
    write_results("label_cost", {"rows": rows}, markdown)


if __name__ == "__main__":
    main()
