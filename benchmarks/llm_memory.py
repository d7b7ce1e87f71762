"""Resident memory of SmolLM2 ranking calls in the ``transformers`` backend, with and
without handing the freed C heap back after each batch (glibc's ``malloc_trim``, which the
backend calls since 2026-12-05: a 1,200-call ``llm-rank`` run had grown to 14 GB).

The same ``coldrec llm-rank`` calls (E0's top 20 of ``--users`` Beauty test and as many
validation users; sequential prompt, bfloat16 weights, compact answers, batches of 8, one
thread), each arm from an empty answer cache, one after the other in one run: the
``untrimmed`` arm runs the same command with the backend's trim replaced by a no-op. Peak
resident memory of each process (its own ``rusage``), wall seconds, and whether both arms
gave the same LLM orders. Reads E0's run of ``llm_rank.py`` (run that first). Writes
``benchmarks/results/llm_memory.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/llm_memory.py [--users 48]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, write_results
from beauty_baselines import COLDREC
from llm_rank import E0, RUN, SMOLLM2, order_agreement

OUT = Path("runs") / "llm_memory"
UNTRIMMED = ("import coldrec.llm.backends.transformers as backend; "
             "backend._return_freed_memory = lambda: None; "
             "from coldrec.cli import app; app()")  # fmt: skip
ARMS = {"trimmed": [COLDREC], "untrimmed": [sys.executable, "-c", UNTRIMMED]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=48, help="test (and validation) users")
    args = parser.parse_args()
    if not (ROOT / RUN / "valid_ranked.parquet").is_file():
        raise SystemExit(f"{RUN} not found: run benchmarks/llm_rank.py first (E0, seed 0)")
    runs, commands = {}, []
    for arm, program in ARMS.items():
        out = OUT / arm
        shutil.rmtree(ROOT / out, ignore_errors=True)  # an empty answer cache each time
        command = ["llm-rank", "--dataset", str(E0 / "data"), "--run", str(RUN), "--users",
                   str(args.users), *SMOLLM2, "--set", f"llm.cache_dir={out / 'answers'}",
                   "--out", str(out)]  # fmt: skip
        commands.append(f"{arm}: coldrec {shlex.join(command)}")
        runs[arm] = measured([*program, "-q", *command])
    same = order_agreement(ROOT / OUT / "trimmed", ROOT / OUT / "untrimmed")
    report(runs, same, commands, args.users)


def measured(argv: list[str]) -> dict[str, float]:
    """Peak resident MB and wall seconds of the process ``argv`` (one thread)."""
    print(shlex.join(argv), flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), argv)
    return {"peak_mb": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - start}


def report(
    runs: dict[str, dict[str, float]], same: dict[str, Any], commands: list[str], users: int
) -> None:
    rows = "\n".join(f"| {arm} | {run['peak_mb']:,.0f} | {run['seconds']:.0f} |"
                     for arm, run in runs.items())  # fmt: skip
    ratio = runs["untrimmed"]["peak_mb"] / runs["trimmed"]["peak_mb"]
    listed = "\n".join(f"    {c}" for c in commands)
    markdown = f"""# Resident memory of the transformers backend's ranking calls

`coldrec llm-rank`, SmolLM2-135M (bfloat16, compact answers, batches of 8, one thread),
{users} Beauty test and {users} validation users ({2 * users} calls), each arm from an
empty answer cache, one after the other. `untrimmed`: the backend's `malloc_trim` after
each batch replaced by a no-op. Peak resident memory of the process, and its wall seconds
(comparable between the arms only when the machine ran the same beside both):

| arm | peak resident MB | seconds |
|---|---:|---:|
{rows}

Untrimmed / trimmed peak: {ratio:.1f}×. The same LLM order in both arms for
{same["same_order"]} of {same["users"]} users (trimming frees memory, it changes no number).

Commands:

{listed}
"""
    write_results("llm_memory", {"runs": runs, "same_orders": same, "users": users}, markdown)


if __name__ == "__main__":
    main()
