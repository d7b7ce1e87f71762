"""Batched generation in the ``transformers`` backend: the same SmolLM2 ranking calls of
``coldrec llm-rank`` (E0's top 20 of Beauty test and validation users) answered one at a
time and in batches, side by side in one run, each from an empty answer cache.

For each batch size B (``llm.backend.batch_size=B``: 2B calls in flight, bfloat16
weights, one thread): seconds per call, answers that break the schema, and how many users'
LLM orders equal those of the calls made alone (bfloat16 rounding differs with the
batch's shapes, which can flip a near tie of the greedy choice). Reads E0's run of
``llm_rank.py`` (run that first). Writes ``benchmarks/results/llm_batching.{md,json}``.
Run from the project root: ``.venv/bin/python benchmarks/llm_batching.py [--users 16]
[--batches 1 4 8]``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from _common import ROOT, write_results
from beauty_baselines import run_coldrec
from llm_rank import E0, RUN

OUT = Path("runs") / "llm_batching"
HEADER = ("| batch size | calls | seconds per call | speed-up | faulty answers | same LLM order "
          "| LLM order all NDCG@10 |\n|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16, help="test (and validation) users")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    if not (ROOT / RUN / "valid_ranked.parquet").is_file():
        raise SystemExit(f"{RUN} not found: run benchmarks/llm_rank.py first (E0, seed 0)")
    commands, runs = [], {}
    for batch in args.batches:
        out = OUT / f"b{batch}"
        shutil.rmtree(ROOT / out, ignore_errors=True)  # an empty answer cache each time
        command = ["llm-rank", "--dataset", str(E0 / "data"), "--run", str(RUN), "--users",
                   str(args.users), "--backend", "transformers", "--set",
                   "llm.backend.dtype=bfloat16", "--set", f"llm.backend.batch_size={batch}",
                   "--set", f"llm.cache_dir={out / 'answers'}", "--out", str(out)]  # fmt: skip
        start = time.perf_counter()
        run_coldrec(command)
        commands.append(command)
        runs[batch] = figures(ROOT / out, time.perf_counter() - start)
    first = args.batches[0]
    for batch, run in runs.items():
        run["same_order_as_first"] = same_orders(ROOT / OUT / f"b{first}", ROOT / OUT / f"b{batch}")
    report(runs, commands, first)


def figures(out: Path, seconds: float) -> dict[str, Any]:
    """Calls, wall seconds per call and schema faults of a run that took ``seconds``."""
    summary = json.loads((out / "summary.json").read_text())
    calls = summary["calls"]["rank_sequential"]
    faults = [summary["answer_faults"][split] for split in ("test", "valid")]
    return {
        "calls": calls["calls"],
        "seconds_per_call": seconds / calls["calls"],
        "answers": sum(f["answers"] for f in faults),
        "faulty": sum(f["unusable"] + f["partial"] for f in faults),
        "llm_ndcg@10": summary["metrics"]["llm"]["all"]["ndcg@10"],
    }


def same_orders(first: Path, other: Path) -> list[int]:
    """[users whose LLM order is the same in both runs, users]."""
    keys = ["split", "user_idx", "llm_points", "model_position"]  # the LLM's points first
    orders = [
        pd.read_parquet(out / "rankings.parquet")
        .sort_values(keys, ascending=[True, True, False, True])
        .groupby(["split", "user_idx"])["item_idx"]
        .apply(tuple)
        for out in (first, other)
    ]
    return [int((orders[0] == orders[1]).sum()), len(orders[0])]


def report(runs: dict[int, dict[str, Any]], commands: list[list[str]], first: int) -> None:
    base = runs[first]["seconds_per_call"]
    rows = "\n".join(
        f"| {batch} | {run['calls']} | {run['seconds_per_call']:.2f} | "
        f"{base / run['seconds_per_call']:.1f}× | {run['faulty']} of {run['answers']} | "
        f"{run['same_order_as_first'][0]} of {run['same_order_as_first'][1]} | "
        f"{run['llm_ndcg@10']:.4f} |"
        for batch, run in runs.items()
    )
    listed = "\n".join(f"    coldrec {shlex.join(c)}" for c in commands)
    markdown = f"""# Batched generation in the transformers backend (SmolLM2 ranking calls)

`coldrec llm-rank` over E0's top 20 of Amazon Beauty (sequential prompt, no bootstrap),
SmolLM2-135M with bfloat16 weights on one thread, each batch size from an empty answer
cache, one after the other in one run. Seconds per call: the command's wall seconds
(model loading included) over its calls. "Same LLM order": users (test and
validation) whose LLM order equals that of batch {first}.

{HEADER}
{rows}

Commands:

{listed}
"""
    write_results("llm_batching", {"runs": runs, "commands": commands}, markdown)


if __name__ == "__main__":
    main()
