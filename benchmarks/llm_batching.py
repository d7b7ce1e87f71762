"""Batched generation and compact answers in the ``transformers`` backend: the same
SmolLM2 ranking calls of ``coldrec llm-rank`` (E0's top 20 of Beauty test and validation
users) answered one at a time and in batches, with and without ``compact``, side by side
in one run, each from an empty answer cache.

For each setting (``llm.backend.batch_size=B``: 2B calls in flight; ``compact``; bfloat16
weights, one thread): seconds per call, answer tokens, answers that break the schema, and
how many users' LLM orders equal those of the same answers made one at a time (bfloat16
rounding differs with the batch's shapes, which can flip a near tie of the greedy
choice; compact answers are other answers). Reads E0's run of
``llm_rank.py`` (run that first). Writes ``benchmarks/results/llm_batching.{md,json}``.
Run from the project root: ``.venv/bin/python benchmarks/llm_batching.py [--users 16]``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from _common import ROOT, write_results
from beauty_baselines import run_coldrec
from llm_rank import E0, RUN, order_agreement

OUT = Path("runs") / "llm_batching"
SETTINGS = ((1, False), (8, False), (1, True), (8, True))  # (batch size, compact)
HEADER = ("| batch size | compact | calls | seconds per call | speed-up | answer tokens per call "
          "| faulty answers | same LLM order as one at a time | LLM order all NDCG@10 |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16, help="test (and validation) users")
    args = parser.parse_args()
    if not (ROOT / RUN / "valid_ranked.parquet").is_file():
        raise SystemExit(f"{RUN} not found: run benchmarks/llm_rank.py first (E0, seed 0)")
    commands, runs = [], {}
    for batch, compact in SETTINGS:
        out = OUT / name_of(batch, compact)
        shutil.rmtree(ROOT / out, ignore_errors=True)  # an empty answer cache each time
        command = ["llm-rank", "--dataset", str(E0 / "data"), "--run", str(RUN), "--users",
                   str(args.users), "--backend", "transformers", "--set",
                   "llm.backend.dtype=bfloat16", "--set", f"llm.backend.batch_size={batch}",
                   "--set", f"llm.backend.compact={str(compact).lower()}", "--set",
                   f"llm.cache_dir={out / 'answers'}", "--out", str(out)]  # fmt: skip
        start = time.perf_counter()
        run_coldrec(command)
        commands.append(command)
        runs[out.name] = figures(ROOT / out, time.perf_counter() - start) | {
            "batch_size": batch, "compact": compact}  # fmt: skip
    for name, run in runs.items():
        alone = ROOT / OUT / name_of(1, run["compact"])
        same = order_agreement(alone, ROOT / OUT / name)
        run["same_order_as_one_at_a_time"] = [same["same_order"], same["users"]]
    report(runs, commands)


def name_of(batch: int, compact: bool) -> str:
    return f"b{batch}{'_compact' if compact else ''}"


def figures(out: Path, seconds: float) -> dict[str, Any]:
    """Calls, wall seconds per call and schema faults of a run that took ``seconds``."""
    summary = json.loads((out / "summary.json").read_text())
    calls = summary["calls"]["rank_sequential"]
    faults = [summary["answer_faults"][split] for split in ("test", "valid")]
    return {
        "calls": calls["calls"],
        "seconds_per_call": seconds / calls["calls"],
        "answer_tokens_per_call": calls["completion_tokens"] / calls["calls"],
        "answers": sum(f["answers"] for f in faults),
        "faulty": sum(f["unusable"] + f["partial"] for f in faults),
        "llm_ndcg@10": summary["metrics"]["llm"]["all"]["ndcg@10"],
    }


def report(runs: dict[str, dict[str, Any]], commands: list[list[str]]) -> None:
    base = runs["b1"]["seconds_per_call"]
    rows = "\n".join(
        f"| {run['batch_size']} | {'yes' if run['compact'] else 'no'} | {run['calls']} | "
        f"{run['seconds_per_call']:.2f} | {base / run['seconds_per_call']:.1f}× | "
        f"{run['answer_tokens_per_call']:.0f} | {run['faulty']} of {run['answers']} | "
        f"{run['same_order_as_one_at_a_time'][0]} of {run['same_order_as_one_at_a_time'][1]} | "
        f"{run['llm_ndcg@10']:.4f} |"
        for run in runs.values()
    )
    listed = "\n".join(f"    coldrec {shlex.join(c)}" for c in commands)
    markdown = f"""# Batched generation and compact answers in the transformers backend

`coldrec llm-rank` over E0's top 20 of Amazon Beauty (sequential prompt, no bootstrap),
SmolLM2-135M with bfloat16 weights on one thread, each setting from an empty answer
cache, one after the other in one run. Seconds per call: the command's wall seconds
(model loading included) over its calls; speed-up against batch 1 without compact. "Same
LLM order": users (test and validation) whose LLM order equals that of batch 1 with the
same `compact`.

{HEADER}
{rows}

Commands:

{listed}
"""
    write_results("llm_batching", {"runs": runs, "commands": commands}, markdown)


if __name__ == "__main__":
    main()
