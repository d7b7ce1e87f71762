"""Labelling on Ray with one and with two llama.cpp server replicas (SmolLM2-135M) on
this machine: users per minute of ``coldrec supervise --engine ray``.

The demo data (the built-in synthetic source at its defaults), a small Two-Tower run,
``--users`` users (default 12) through the five tree stages at small sizes (those of
``tests/test_supervise_ray.py``); each setting starts from an empty answer cache, one
after the other in one run, so every call reaches a server. Rows: one replica and two
with llama.cpp's default threads, two with one thread each. On 2 cores two replicas can
at best halve the time. Writes
``benchmarks/results/ray_labelling.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/ray_labelling.py`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from _common import RESULTS, write_results
from coldrec.config import validate
from coldrec.data.prepare import prepare
from coldrec.data.sources import SyntheticSource
from coldrec.llm.server import local_server
from coldrec.retrieval.retrieve import RetrieveConfig, run_retrieval

STAGES = {"history_items": 3, "categories": 1, "subcategories": 1, "local_candidates": 4,
          "picks": 2, "preselected": 3, "final": 3, "evidence": 0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--report", action="store_true", help="only rewrite the report")
    args = parser.parse_args()
    if args.report:
        report()
        return
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as servers:
        root = Path(scratch)
        prepare(SyntheticSource().load()).save(root / "ds")
        run_retrieval(validate(RetrieveConfig, {"top_m": 50, "model": {
            "dim": 16, "early_stopping": False, "training": {"epochs": 2}}}), root / "ds",
            root / "tw")  # fmt: skip
        urls = [servers.enter_context(local_server()) for _ in range(2)]
        single = [servers.enter_context(local_server(threads=1)) for _ in range(2)]
        rows = {
            "1 replica": timed(root, args.users, urls[:1]),
            "2 replicas": timed(root, args.users, urls),
            "2 replicas, 1 thread each": timed(root, args.users, single),
        }
    one = rows["1 replica"]["users_per_minute"]
    speed_up = {name: row["users_per_minute"] / one for name, row in rows.items()}
    figures = {"users": args.users, "stages": STAGES, "rows": rows, "speed_up": speed_up}
    write_results("ray_labelling", figures, markdown(figures))
    print(markdown(figures))


def report() -> None:
    """Rewrite the Markdown from the kept figures."""
    figures = json.loads((RESULTS / "ray_labelling.json").read_text())
    write_results("ray_labelling", figures, markdown(figures))


def timed(root: Path, users: int, urls: list[str]) -> dict[str, Any]:
    """One ``coldrec supervise --engine ray`` run from an empty cache on ``urls``."""
    out = root / f"out{len(list(root.glob('out*')))}"
    settings = {"n_users": users, "chunk_size": 2, "validation_view": False, "stages": STAGES,
                "taxonomy": {"interest_leaves": 1},
                "llm": {"backend": {"kind": "openai", "model": "smollm2"},
                        "cache_dir": str(out / "cache")}}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(settings))
    command = [str(Path(sys.executable).parent / "coldrec"), "supervise", "--dataset",
               str(root / "ds"), "--candidates", str(root / "tw"), "--config",
               str(root / "config.yaml"), "--out", str(out), "--engine", "ray"]  # fmt: skip
    for url in urls:
        command += ["--endpoint", url]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"].values()
    return {
        "seconds": round(seconds, 1),
        "stages_s": summary["stages_s"],
        "users_per_minute": round(60 * users / seconds, 2),
        "calls": sum(c["calls"] for c in stages),
        "fresh_calls": sum(c["calls"] - c["cached"] for c in stages),
        "fallbacks": sum(c["fallbacks"] for c in stages),
        "prompt_tokens": sum(c["prompt_tokens"] for c in stages),
        "completion_tokens": sum(c["completion_tokens"] for c in stages),
    }


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "# Labelling on Ray: one vs two llama.cpp replicas",
        "",
        f"{figures['users']} demo users, the five tree stages at small sizes, SmolLM2-135M "
        "behind `python -m llama_cpp.server`, a local Ray runtime, each row from an empty "
        "answer cache (`benchmarks/ray_labelling.py`). Wall time includes starting Ray and "
        "its actors. A replica with llama.cpp's default threads generates on half the cores "
        "(1 here) and reads prompts on all of them (2); `1 thread each` gives each replica "
        "one core for both.",
        "",
        "| replicas | wall s | stages s | users / minute | calls (fresh) | fallbacks "
        "| prompt tokens | completion tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in figures["rows"].items():
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['stages_s']:.1f} | "
                     f"{r['users_per_minute']:.2f} | {r['calls']} ({r['fresh_calls']}) | "
                     f"{r['fallbacks']} | {r['prompt_tokens']:,} | "
                     f"{r['completion_tokens']:,} |")  # fmt: skip
    ratios = ", ".join(f"{name}: {ratio:.2f}×" for name, ratio in figures["speed_up"].items())
    lines += ["", f"Users per minute against one replica: {ratios}. Most of the work is "
              "reading prompts, which one replica with the default threads already spreads "
              "over both cores; two such replicas run four prompt threads on two cores. Two "
              "one-thread replicas keep each core busy, generation included."]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
