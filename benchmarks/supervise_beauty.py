"""Pseudo labels on Amazon Beauty: the LLM stages, tree vs flat, with the ``embedding``
judge over every eligible user and with SmolLM2-135M (in process) over a sample.

Runs (``coldrec supervise``, commands printed in the result):

- ``embedding_tree`` / ``embedding_flat``: every eligible user (a test user with at
  least 2 history interactions), the default (thesis) sizes;
- ``smollm2_tree`` / ``smollm2_flat``: ``SMOLLM2_USERS`` users sampled with seed 0,
  with the smaller sizes of ``SMOLLM2_SIZES`` (the 4,096-token context of the local
  model and this machine's 2 cores).

Then, to say what a full labelling run would cost, the full-size prompts of
``TOKEN_SAMPLE`` users are rebuilt (answered by the embedding judge, never sent to an
LLM) and counted with SmolLM2's tokenizer: prompt tokens as sent, completion tokens of
the answers' JSON. Needs the prepared data and the Two-Tower run of
``two_tower_beauty.py``. A run whose ``summary.json`` exists is not repeated. Writes
``benchmarks/results/supervise_beauty.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/supervise_beauty.py``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from _common import ROOT, write_results
from beauty_baselines import COLDREC, RUNS
from coldrec.config import validate
from coldrec.data.dataset import Dataset
from coldrec.llm import LLM, LLMConfig
from coldrec.llm.backends import EmbeddingConfig
from coldrec.llm.backends.embedding import EmbeddingJudge
from coldrec.llm.backends.llamacpp import smollm2_path
from coldrec.llm.base import Generation, Request
from coldrec.supervision.run import SuperviseConfig, _catalogue, eligible_users, stages_markdown
from coldrec.supervision.stages import run_stages, stages_for

OUT = RUNS / "supervise"
SMOLLM2_USERS = 50
SMOLLM2_SIZES = {"subcategories": 3, "local_candidates": 15, "picks": 5, "final": 10,
                 "preselected": 15, "evidence": 1, "flat_candidates": 30}  # fmt: skip
TOKEN_SAMPLE = 50
BASE = ["supervise", "--dataset", str(RUNS / "data"), "--candidates", str(RUNS / "two_tower")]


def commands() -> dict[str, list[str]]:
    small = [x for key, value in SMOLLM2_SIZES.items() for x in ("--set", f"stages.{key}={value}")]
    sample = ["--users", str(SMOLLM2_USERS), "--set", "users=sample"]
    return {
        "embedding_tree": [*BASE, "--backend", "embedding", "--out", str(OUT / "embedding_tree")],
        "embedding_flat": [*BASE, "--backend", "embedding", "--method", "flat",
                           "--out", str(OUT / "embedding_flat")],
        "smollm2_tree": [*BASE, "--backend", "llamacpp", *sample, *small,
                         "--out", str(OUT / "smollm2_tree")],
        "smollm2_flat": [*BASE, "--backend", "llamacpp", "--method", "flat", *sample, *small,
                         "--out", str(OUT / "smollm2_flat")],
    }  # fmt: skip


class Recording(EmbeddingJudge):
    """The embedding judge, keeping each request and its answer (for token counts)."""

    def __init__(self) -> None:
        super().__init__(EmbeddingConfig())
        self.seen: list[tuple[Request, str]] = []

    def generate(self, request: Request) -> Generation:
        answer = super().generate(request)
        self.seen.append((request, answer.text))
        return answer


def full_size_tokens(method: str) -> dict[str, dict[str, float]]:
    """Prompt and completion tokens per user and stage at the default sizes."""
    return stage_tokens({"method": method}, RUNS / "data", RUNS / "two_tower",
                        OUT / f"tokens_{method}")  # fmt: skip


def stage_tokens(
    stages: dict[str, Any], data: Path, retrieval: Path, out: Path, users: int = TOKEN_SAMPLE
) -> dict[str, dict[str, float]]:
    """Requests, prompt and completion tokens per user and stage of the stages at the
    sizes ``stages``, for the first ``users`` eligible users of the Dataset in ``data``
    over the retrieve run ``retrieval``: their prompts answered by the embedding judge
    (never sent to an LLM) and counted with SmolLM2's tokenizer."""
    from llama_cpp import Llama

    tokenizer = Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)
    config = validate(SuperviseConfig, {"stages": stages})
    dataset = Dataset.load(ROOT / data)
    catalogue = _catalogue(config, dataset, ROOT / retrieval / "candidates.parquet",
                           ROOT / retrieval / "model", None, ROOT / out)  # fmt: skip
    chosen = eligible_users(config, dataset, catalogue.candidates)[:users]
    backend = Recording()
    with LLM(LLMConfig(cache=False), backend=backend) as llm:
        run_stages([catalogue.user_run(int(u)) for u in chosen], stages_for(catalogue), llm)

    def count(text: str) -> int:
        return len(tokenizer.tokenize(text.encode(), add_bos=False))

    found: dict[str, dict[str, float]] = {}
    for request, answer in backend.seen:
        stage = found.setdefault(request.stage, {"requests": 0, "prompt": 0, "completion": 0})
        stage["requests"] += 1
        stage["prompt"] += sum(count(m["content"]) + 4 for m in request.messages)
        stage["completion"] += count(answer)
    return {name: {k: v / len(chosen) for k, v in stage.items()} for name, stage in found.items()}


def label_hits(name: str) -> dict[str, float]:
    """A diagnostic read on test after the fact (never used to choose anything): the
    share of edges that are one of the user's test items, over all edges and over edges
    on cold items."""
    dataset = Dataset.load(ROOT / RUNS / "data")
    edges = pd.read_parquet(ROOT / OUT / name / "edges.parquet")
    test = dataset.split("test")[["user_idx", "item_idx"]].drop_duplicates()
    hits = edges.merge(test, left_on=["user", "item"], right_on=["user_idx", "item_idx"],
                       how="left", indicator=True)["_merge"].eq("both").to_numpy()  # fmt: skip
    cold = dataset.items["cold"].to_numpy()[edges["item"].to_numpy()]
    return {"all": float(hits.mean()), "cold": float(hits[cold].mean()) if cold.any() else 0.0}


def run_table(summaries: dict[str, dict[str, Any]]) -> str:
    rows = ["| run | backend | users | seconds per user | edges | on cold items | triplets | "
            "edge sources | edges that are test items (all / cold) |",
            "|---|---|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for name, s in summaries.items():
        kind = "LLM" if s["backend"]["generates_text"] else "no LLM"
        sources = ", ".join(f"{k} {v:,}" for k, v in s["edge_sources"].items())
        hits = label_hits(name)
        rows.append(
            f"| {name} | {s['backend']['identity']} ({kind}) | {s['users']:,} | "
            f"{s['seconds_per_user']:.2f} | {s['edges']:,} | {s['edges_on_cold_items']:,} | "
            f"{s['triplets']:,} | {sources} | {hits['all']:.2%} / {hits['cold']:.2%} |"
        )
    return "\n".join(rows)


def cost_text(summaries: dict[str, dict[str, Any]], tokens: dict[str, dict]) -> tuple[str, dict]:
    users = summaries["embedding_tree"]["users"]
    lines, figures = [], {}
    for method in ("tree", "flat"):
        per_user = tokens[method]
        prompt = sum(s["prompt"] for s in per_user.values())
        completion = sum(s["completion"] for s in per_user.values())
        smol = summaries[f"smollm2_{method}"]["seconds_per_user"]
        # Assumed (not measured here): a 4B model served by vLLM on one data-centre GPU
        # at ~20,000 prompt tokens/s and ~2,500 generated tokens/s across a large batch.
        gpu_hours = users * (prompt / 20_000 + completion / 2_500) / 3600
        figures[method] = {"prompt_tokens_per_user": prompt, "completion_tokens_per_user":
                           completion, "smollm2_hours_small_sizes": users * smol / 3600,
                           "gpu_4b_hours_full_sizes": gpu_hours}  # fmt: skip
        lines.append(
            f"- **{method}**: {prompt:,.0f} prompt + {completion:,.0f} completion tokens per "
            f"user at the default sizes ({sum(s['requests'] for s in per_user.values()):.1f} "
            f"requests), i.e. {users * prompt / 1e6:,.0f} M + {users * completion / 1e6:,.1f} M "
            f"tokens for all {users:,} eligible users. SmolLM2 here at the smaller sizes: "
            f"{smol:.1f} s per user, so about {users * smol / 3600:,.0f} hours for every user "
            f"(more at the default sizes, which also overflow its 4,096-token context). A 4B "
            f"model on a GPU server at an assumed ~20,000 prompt and ~2,500 generated tokens/s "
            f"(vLLM with batching; not measured here): about {gpu_hours:.1f} GPU-hours."
        )
    return "\n".join(lines), figures


def main() -> None:
    summaries = {}
    for name, command in commands().items():
        summary = ROOT / OUT / name / "summary.json"
        if not summary.is_file():
            subprocess.run([COLDREC, "-q", *command], cwd=ROOT, check=True)
        summaries[name] = json.loads(summary.read_text())
    tokens = {method: full_size_tokens(method) for method in ("tree", "flat")}
    cost, figures = cost_text(summaries, tokens)
    shown = "\n".join(f"    coldrec {shlex.join(c)}" for c in commands().values())
    sizes = ", ".join(f"{k} {v}" for k, v in SMOLLM2_SIZES.items())
    markdown = f"""# Pseudo labels on Amazon Beauty: LLM stages, tree vs flat

The `embedding` judge answers every stage by MiniLM similarity to the user's history and
profile: it is not a language model. SmolLM2-135M is a real LLM, run in process, but it
follows the schemas without judging relevance well: it proves the plumbing, not the
quality. SmolLM2 runs use smaller sizes ({sizes}) on {SMOLLM2_USERS} users sampled with
seed 0; the embedding runs use the defaults (3 categories, K = 8 subcategories, 80 local
candidates, 10 picks, 3 evidence items, 40 preselected, 20 final, 50 flat candidates).

## Runs

{run_table(summaries)}

"Edges that are test items" is a diagnostic read on the test split after the fact (the
share of a run's edges that are one of the user's test items): it is never used to choose
anything. The embedding runs' seconds per user are low because most of their answers came
from the answer cache of an earlier run; the stage table's "s / fresh call" gives the
cost of a call made anew.

## Stages

Tokens count every answer used (cached or not); seconds are the LLM calls' own time.

{stages_markdown(summaries)}

## What a labelling run over all users costs

{cost}

## Commands

{shown}
"""
    write_results("supervise_beauty", {"runs": summaries, "cost": figures,
                                       "tokens_per_user": tokens}, markdown)  # fmt: skip


if __name__ == "__main__":
    main()
