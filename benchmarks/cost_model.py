"""The cost model of ``docs/scaling.md`` (issue 30): tokens per user of each LLM workload,
measured here by coldrec's accounting (prompt and completion tokens per stage, counted
with SmolLM2's tokenizer: ``label_cost.py``'s ``tokens_*.json`` for the label pipelines,
``llm_rank.py``'s kept summaries for the LLM ranker), times a user count, then GPU-hours at
the prompt and generation throughputs you give (``--prompt-rate``, ``--completion-rate``,
tokens per second of one GPU across a large batch) and dollars at a price per million
tokens (``--price``). The defaults are assumptions, stated as such in the result; no
throughput is measured here (this machine has no GPU).

Writes ``benchmarks/results/cost_model.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/cost_model.py [--users 9612 10000000]
[--prompt-rate 20000] [--completion-rate 2500] [--price 0.15 0.6]``.
"""

from __future__ import annotations

import argparse
import json

from _common import RESULTS, write_results

LABELS = {
    "tree default (thesis sizes)": "tokens_tree_default",
    "tree medium": "tokens_tree_medium",
    "tree small": "tokens_tree_small",
    "flat default": "tokens_flat_default",
    "flat small": "tokens_flat_small",
}
RANKERS = {"LLM ranker, E0's top 20 (sequential, B 1)": "smollm2_sequential_b1_u20",
           "LLM ranker, E0's top 20 (sequential, B 3)": "smollm2_sequential_b3_u20"}  # fmt: skip


def label_tokens(name: str) -> tuple[float, float]:
    """Prompt and completion tokens per user of a label pipeline (all its stages)."""
    stages = json.loads((RESULTS / "label_cost" / f"{name}.json").read_text())
    return (sum(s["prompt"] for s in stages.values()),
            sum(s["completion"] for s in stages.values()))  # fmt: skip


def ranker_tokens(name: str) -> tuple[float, float]:
    """Prompt and completion tokens per user asked (test and validation users alike) of a
    kept ``coldrec llm-rank`` run: one ranking of one user's candidates."""
    summary = json.loads((RESULTS / "llm_rank_beauty" / f"{name}.json").read_text())
    stages = summary["calls"].values()
    asked = summary["users"]["test"] + summary["users"]["valid"]
    return tuple(sum(s[f"answer_{kind}_tokens"] for s in stages) / asked
                 for kind in ("prompt", "completion"))  # type: ignore[return-value]  # fmt: skip


def tokens(count: float) -> str:
    """A token count in millions, or billions past a billion."""
    return f"{count / 1e9:,.1f} B" if count >= 1e9 else f"{count / 1e6:,.1f} M"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[9_612, 10_000_000])
    parser.add_argument("--prompt-rate", type=float, default=20_000.0)
    parser.add_argument("--completion-rate", type=float, default=2_500.0)
    parser.add_argument("--price", type=float, nargs=2, default=[0.15, 0.60],
                        metavar=("PROMPT", "COMPLETION"))  # fmt: skip
    args = parser.parse_args()
    workloads = {name: label_tokens(file) for name, file in LABELS.items()}
    workloads |= {name: ranker_tokens(run) for name, run in RANKERS.items()}
    rows, figures = [], {}
    for name, (prompt, completion) in workloads.items():
        seconds = prompt / args.prompt_rate + completion / args.completion_rate
        dollars = (prompt * args.price[0] + completion * args.price[1]) / 1e6
        figures[name] = {"prompt_per_user": prompt, "completion_per_user": completion,
                         "gpu_seconds_per_user": seconds, "dollars_per_user": dollars}  # fmt: skip
        cells = [f"{tokens(n * (prompt + completion))} / {n * seconds / 3600:,.1f} h / "
                 f"${n * dollars:,.0f}" for n in args.users]  # fmt: skip
        rows.append(f"| {name} | {prompt:,.0f} | {completion:,.0f} | {' | '.join(cells)} |")
    write_results("cost_model", {"args": vars(args), "workloads": figures},
                  markdown(args, rows))  # fmt: skip


def markdown(args: argparse.Namespace, rows: list[str]) -> str:
    users = " | ".join(f"{n:,} users: tokens / GPU-hours / dollars" for n in args.users)
    return f"""# What the LLM work costs per user, and for a whole catalogue's users

Tokens per user: measured by coldrec's accounting on Amazon Beauty (SmolLM2's tokenizer;
`label_cost.md`, `llm_rank_beauty.md`). GPU-hours: at an **assumed**
{args.prompt_rate:,.0f} prompt and {args.completion_rate:,.0f} generated tokens per second
of one GPU across a large batch (a few-billion-parameter model served by vLLM; not
measured here: give your server's rates with `--prompt-rate` / `--completion-rate`).
Dollars: at an **example** price of ${args.price[0]:g} per million prompt and
${args.price[1]:g} per million completion tokens (`--price`), what a hosted model of that
size might charge; a self-hosted GPU costs its hours instead.

| workload | prompt tokens per user | completion tokens per user | {users} |
|---|---:|---:|{"---:|" * len(args.users)}
{chr(10).join(rows)}

    .venv/bin/python benchmarks/cost_model.py --users {" ".join(str(n) for n in args.users)} \\
        --prompt-rate {args.prompt_rate:g} --completion-rate {args.completion_rate:g} \\
        --price {args.price[0]:g} {args.price[1]:g}
"""


if __name__ == "__main__":
    main()
