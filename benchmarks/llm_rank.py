"""The LLM as ranker (issue 28) on Amazon Beauty: E0's top 20 for sampled test users,
ranked by the LLM with the LLMRank prompts, beside E0's own order, their fusion and a
random order (the chance line), with the invalid answers and what the calls cost.

Runs, with the commands printed in the result:

1. E0, seed 0 (``coldrec run configs/beauty/e0.yaml``, its two cheap baselines beside): its rank
   run writes the fused ranking of the test users and of the validation view
   (``ranked.parquet``, ``valid_ranked.parquet``);
2. ``coldrec llm-rank`` over that run for each backend × prompt × bootstrap of the grid
   (the same seeded users everywhere; α chosen on as many validation users):
   ``embedding`` (MiniLM similarity, no LLM), ``smollm2`` (SmolLM2-135M through the
   ``transformers`` backend, bfloat16 weights, compact answers, 8 calls a batch) and,
   with ``--server``, ``smollm2_http`` (the same model behind a local
   ``llama_cpp.server``, through the ``openai`` backend, sequential prompt without
   bootstrapping: the transport must not change the numbers beyond noise). Bootstrap
   3's first shuffle is bootstrap 1's, so the answer cache serves it;
3. with ``--judge``, ``coldrec judge`` on the same data and as many users: the
   ``embedding`` judge, then SmolLM2 against it (Cohen's κ, confusion matrix), each
   judge's grade AUC, pairwise accuracy and listwise AUC against the held-out
   interactions.

Each finished run's summary is kept in ``benchmarks/results/llm_rank_beauty/`` (committed:
a kept run is not repeated). Writes ``benchmarks/results/llm_rank_beauty.{md,json}``.
Run from the project root: ``.venv/bin/python benchmarks/llm_rank.py [--users 200] [--llm-users 20]
[--backends embedding smollm2] [--server] [--judge]``; ``--report`` rewrites the report from
whatever runs of the whole grid are kept (at ``--users``), running nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from _common import BEAUTY, RESULTS, ROOT, write_results
from beauty_baselines import kept_run, run_coldrec
from coldrec.experiment.llm_rank import figure

E0 = Path("runs") / "llm_rank_beauty" / "e0"
RUN = E0 / "rank" / "seed0"
KEPT = RESULTS / "llm_rank_beauty"
PROMPTS = ("sequential", "recency")
BOOTSTRAPS = (1, 3)  # the first: no bootstrapping
SMOLLM2 = ["--backend", "transformers", "--set", "llm.backend.dtype=bfloat16", "--set",
           "llm.backend.compact=true", "--set", "llm.backend.batch_size=8"]  # fmt: skip
BACKENDS = {
    "embedding": ["--backend", "embedding"],
    "smollm2": SMOLLM2,
    "smollm2_http": ["--backend", "openai", "--model", "smollm2"],  # + --base-url
}
SEGMENTS = ("all", "warm", "cold")
JUDGES = {"embedding": BACKENDS["embedding"], "smollm2": BACKENDS["smollm2"]}
COST_HEADER = ("| run | all NDCG@10 (LLM order) | users asked | calls | prompt tokens per user "
               "| completion tokens per user | seconds per user (1 thread, uncached) "
               "| tokens per 1,000 users | dollars per 1,000 users |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="test (and validation) users")
    parser.add_argument(
        "--llm-users", type=int, help="users of the LLM backends (default: --users)"
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=["embedding",
                        "smollm2"])  # fmt: skip
    parser.add_argument("--judge", action="store_true", help="also coldrec judge (two judges)")
    parser.add_argument("--server", action="store_true",
                        help="also SmolLM2 behind llama_cpp.server (openai backend)")  # fmt: skip
    parser.add_argument("--price", type=float, nargs=2, metavar=("PROMPT", "COMPLETION"),
                        help="dollars per million prompt / completion tokens for the cost "
                             "column (a price you pay; none: tokens only)")  # fmt: skip
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the report from the kept runs of the whole grid "
                             "(at --users / --llm-users)")  # fmt: skip
    args = parser.parse_args()
    e0 = ["run", "configs/beauty/e0.yaml", "--out", str(E0), "--set", "seeds=[0]"]
    judging = args.judge or args.report  # a report shows every kept run, judges included
    if args.report:
        backends = list(BACKENDS)
    else:
        if not BEAUTY.is_dir():
            raise SystemExit(f"Amazon Beauty not found at {BEAUTY}")
        run_coldrec(e0, ROOT / RUN / "valid_ranked.parquet")
        backends = [*args.backends, *(["smollm2_http"] if args.server else [])]
    commands = [e0]
    users = {b: args.users if b == "embedding" else args.llm_users or args.users for b in backends}
    summaries = {}
    for backend in backends:
        with served(backend, start=not args.report) as extra:
            for run in grid(backend):
                command = run.command(users[backend], extra)
                name = f"{run.name}_u{users[backend]}"
                found = kept_or_run(command, KEPT / f"{name}.json", run=not args.report)
                if found is not None:
                    commands.append(command)
                    summaries[name] = found
    judged = judge(args.llm_users or args.users, commands, not args.report) if judging else {}
    report(summaries, commands, judged, args.price)


def kept_or_run(command: list[str], kept: Path, run: bool) -> dict[str, Any] | None:
    """The kept summary of ``command``, run first when missing if ``run`` (else None)."""
    if not run and not kept.is_file():
        return None
    return kept_run(command, kept)


def judge(users: int, commands: list[list[str]], run: bool) -> dict[str, Any]:
    """The embedding judge, then SmolLM2 against it, on ``users`` test users; their kept
    summaries (without ``run``, those kept)."""
    outs = {name: E0.parent / f"judge_{name}_u{users}" for name in JUDGES}
    found = {}
    for name, flags in JUDGES.items():
        against = [] if name == "embedding" else ["--against", str(outs["embedding"])]
        command = ["judge", "--dataset", str(E0 / "data"), *flags, "--users", str(users),
                   *against, "--out", str(outs[name])]  # fmt: skip
        summary = kept_or_run(command, KEPT / f"judge_{name}_u{users}.json", run)
        if summary is not None:
            commands.append(command)
            found[name] = summary
    return found


@dataclass(frozen=True)
class Variant:
    """One ``coldrec llm-rank`` run of the grid."""

    backend: str
    prompt: str = "sequential"
    bootstrap: int = 1
    answer: str = "ranking"

    @property
    def name(self) -> str:
        scores = "_scores" if self.answer == "scores" else ""
        return f"{self.backend}_{self.prompt}_b{self.bootstrap}{scores}"

    def command(self, users: int, extra: list[str]) -> list[str]:
        return ["llm-rank", "--dataset", str(E0 / "data"), "--run", str(RUN), "--users",
                str(users), "--set", f"prompt={self.prompt}", "--set",
                f"bootstrap={self.bootstrap}", "--set", f"answer={self.answer}",
                *BACKENDS[self.backend], *extra, "--out",
                str(E0.parent / f"{self.name}_u{users}")]  # fmt: skip


def grid(backend: str) -> list[Variant]:
    """The runs of ``backend``: one for the embedding stand-in, which reads neither prompt
    nor bootstrap (its order is the similarity's); for an LLM each prompt with and without
    bootstrapping, and the 0–10 scores answer (which cannot repeat or miss a candidate);
    the cheaper runs first, each kept as it ends. The HTTP transport of SmolLM2 runs the
    sequential prompt alone: it checks the transport, not the prompts again (at 14 s a
    call, its whole grid of 3,600 calls would take 14 hours of one core)."""
    if backend in ("embedding", "smollm2_http"):
        return [Variant(backend)]
    single = [Variant(backend, prompt) for prompt in PROMPTS]
    bootstrapped = [Variant(backend, prompt, b) for b in BOOTSTRAPS[1:] for prompt in PROMPTS]
    return [*single, Variant(backend, answer="scores"), *bootstrapped]


@contextlib.contextmanager
def served(backend: str, start: bool = True) -> Iterator[list[str]]:
    """The extra flags of ``backend``: a local llama.cpp server's URL for the HTTP one
    (the server started unless ``start`` is false)."""
    if backend != "smollm2_http":
        yield []
        return
    if not start:
        yield ["--base-url", "<the local llama_cpp.server's URL>"]
        return
    from coldrec.llm.server import local_server

    log = ROOT / E0.parent / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with local_server(n_ctx=4096, log=log, threads=1) as base:  # one thread, as every run
        yield ["--base-url", base]


def report(
    summaries: dict[str, Any],
    commands: list[list[str]],
    judged: dict[str, Any],
    price: list[float] | None,
) -> None:
    rows = []
    for users in sorted({s["users"]["test"] for s in summaries.values()}):
        first = next(s for s in summaries.values() if s["users"]["test"] == users)
        rows += [row(f"E0 alone (its top 20), {users} users", first["metrics"]["model"]),
                 row(f"random order of the same 20 (expected), {users} users",
                     first["metrics"]["random"])]  # fmt: skip
    for name, summary in summaries.items():
        metrics = summary["metrics"]
        rows.append(row(f"{name}: LLM order", metrics["llm"],
                        versus(summary, "llm_vs_model", "llm_vs_random"),
                        invalid_share(summary)))  # fmt: skip
        rows.append(row(f"{name}: fused, α {summary['alpha']:g}", metrics["fused"],
                        versus(summary, "fused_vs_model", None)))  # fmt: skip
    cost = [cost_row(name, summary, price) for name, summary in summaries.items()]
    agreement = transport(max(s["users"]["test"] for s in summaries.values()))
    header = " | ".join(f"{s} NDCG@10 | {s} R@10" for s in SEGMENTS)
    listed = "\n".join(f"    coldrec {shlex.join(c)}" for c in commands)
    title = "The LLM as ranker on Amazon Beauty (E0's top 20)"
    markdown = f"""# {title}

Global time split; E0 (Two-Tower + SASRec, seed 0) ranks every test user's candidates; for
a seeded sample of test users with a history (a run's `_u<N>`: N users; a smaller sample
is the start of a larger one) its top 20 go to the LLM with the user's 50 most recent
items. α of the fusion is chosen on as many validation users (E0's validation twin),
never on test. The random line is the exact expectation over random orders of the same
20. Recall@20 is the same for every order of the same 20 items, so the table stops at 10.
The differences are means over the same users of the row's per-user NDCG@10 minus E0's
or chance's, ± their standard error (runs kept before they were recorded: empty).

| order | {header} | all NDCG@10 − E0's | all NDCG@10 − chance | invalid answers |
|---|{"---:|" * (2 * len(SEGMENTS) + 3)}
{chr(10).join(rows)}

Quality beside what it cost (every call of the run: test and validation users; cached
answers counted at what they cost when made; seconds from the calls made anew, "–" where
every answer came from the cache). {price_note(price)}

{COST_HEADER}
{chr(10).join(cost)}

`embedding` is no LLM: MiniLM similarity of the user's mean history vector with each
candidate. SmolLM2-135M follows the answer schema but ranks poorly; it proves the
plumbing, and the same commands measure a capable model behind any OpenAI-compatible
server (`--backend openai --base-url …`, `--set llm.price_per_million=[P,C]` for its cost).

{transport_markdown(agreement)}{judge_markdown(judged)}Commands:

{listed}
"""
    figures = {"summaries": summaries, "judges": judged, "transport": agreement,
               "commands": commands, "price": price}  # fmt: skip
    write_results("llm_rank_beauty", figures, markdown)


def order_agreement(first: Path, other: Path) -> dict[str, Any]:
    """How alike the LLM orders of two ``llm-rank`` runs over the same users are (their
    ``rankings.parquet``): users, users given the same points (for a ranking answer: the
    same order), and the mean Kendall τ between a user's two sets of points."""
    runs = [pd.read_parquet(out / "rankings.parquet") for out in (first, other)]
    both = runs[0].merge(runs[1], on=["split", "user_idx", "model_position"])
    users = [(g["llm_points_x"].to_numpy(), g["llm_points_y"].to_numpy())
             for _, g in both.groupby(["split", "user_idx"])]  # fmt: skip
    return {
        "users": len(users),
        "same_order": sum(bool((a == b).all()) for a, b in users),
        "mean_kendall_tau": float(np.mean([kendalltau(a, b).statistic for a, b in users])),
    }


def transport(users: int) -> dict[str, Any]:
    """SmolLM2 in this process against behind llama_cpp.server (sequential, B = 1), when
    both runs are here (empty otherwise)."""
    names = ("smollm2_sequential_b1", "smollm2_http_sequential_b1")
    outs = [ROOT / E0.parent / f"{name}_u{users}" for name in names]
    if not all((out / "rankings.parquet").is_file() for out in outs):
        return {}
    return order_agreement(*outs)


def transport_markdown(agreement: dict[str, Any]) -> str:
    if not agreement:
        return ""
    return f"""The transport check, SmolLM2 in this process (`transformers`, bfloat16) against the
same GGUF behind `llama_cpp.server` (`openai` backend), sequential prompt, B = 1, test and
validation users: the same order for {agreement["same_order"]} of {agreement["users"]}
users, mean Kendall τ between a user's two orders {agreement["mean_kendall_tau"]:.2f}.

"""


def judge_markdown(judged: dict[str, Any]) -> str:
    """The judges' agreement with the held-out interactions and with each other."""
    if not judged:
        return ""
    rows = [f"| {name} ({s['backend']['note']}) | {s['users']} | {s['grade_auc']:.3f} | "
            f"{s['pairwise_accuracy']:.3f} | {s['listwise_auc']:.3f} | "
            f"{s['listwise_tau_b']:.3f} |" for name, s in judged.items()]  # fmt: skip
    return f"""## The LLM as judge (`coldrec judge`, the same data)

Per sampled test user: 5 held-out items and 5 never-touched trained items, judged
pointwise (grade 0-3), pairwise (held-out against random) and listwise.

| judge | users | grade AUC | pairwise accuracy | listwise AUC | listwise τ_b |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

{agreement_markdown(judged["smollm2"]["against"]) if "smollm2" in judged else ""}"""


def agreement_markdown(against: dict[str, Any]) -> str:
    """SmolLM2's grades against the embedding judge's: κ and the confusion matrix."""
    matrix = "\n".join(f"| {grade} | {' | '.join(str(n) for n in counts)} |"
                       for grade, counts in enumerate(against["confusion"]))  # fmt: skip
    return f"""SmolLM2 against the embedding judge: Cohen's κ {against["kappa"]:.3f} over
{against["rows"]:,} graded pairs; confusion (rows SmolLM2's grade, columns the embedding
judge's):

| grade | 0 | 1 | 2 | 3 |
|---|---:|---:|---:|---:|
{matrix}

"""


def row(
    label: str,
    table: dict[str, dict[str, float]],
    versus: tuple[dict[str, float] | None, ...] = (None, None),
    invalid: str = "",
) -> str:
    """A table row: NDCG and Recall at 10 per segment, the all NDCG@10 differences
    ``versus`` E0's and chance (mean ± standard error), the invalid answers."""
    cells = [f"{figure(table[s]['ndcg@10'])} | {figure(table[s]['recall@10'])}" for s in SEGMENTS]
    cells += [f"{d['mean']:+.4f} ± {d['se']:.4f}" if d else "" for d in versus]
    return f"| {label} | {' | '.join(cells)} | {invalid} |"


def versus(summary: dict[str, Any], *names: str | None) -> tuple[dict[str, float] | None, ...]:
    """The all NDCG@10 differences ``names`` of a summary (None: none; an older summary
    has none)."""
    differences = summary.get("differences", {})
    return tuple(differences[n]["all"]["ndcg@10"] if n in differences else None for n in names)


def invalid_share(summary: dict[str, Any]) -> str:
    """The share of the LLM's answers that were unusable or partly invalid."""
    if not summary["backend"]["llm"]:
        return ""
    faults = [summary["answer_faults"][split] for split in ("test", "valid")]
    answers = sum(f["answers"] for f in faults)
    bad = sum(f["unusable"] + f["partial"] for f in faults)
    return f"{bad / max(1, answers):.1%} of {answers:,}"


def price_note(price: list[float] | None) -> str:
    if price is None:
        return "No price given (`--price`): the cost column is empty."
    return (f"Dollars at ${price[0]:g} per million prompt tokens and ${price[1]:g} per million "
            "completion tokens, a price given to the benchmark (`--price`), not measured: "
            "SmolLM2 here costs CPU time only; the column shows what the same tokens would cost "
            "at a hosted model's price.")  # fmt: skip


def cost_row(name: str, summary: dict[str, Any], price: list[float] | None) -> str:
    """Quality (the LLM's order, all users), tokens, seconds and dollars per user asked
    (the seconds as if no answer had been cached: the wall seconds of the calls made,
    per call made, times the calls)."""
    stages = summary["calls"].values()
    keys = ("calls", "cached", "answer_prompt_tokens", "answer_completion_tokens")
    total = {key: sum(stage[key] for stage in stages) for key in keys}
    # absent from older summaries, whose added per-call seconds overstate batched calls
    busy = [stage.get("busy_s") for stage in stages]
    asked = summary["users"]["test"] + summary["users"]["valid"]
    prompt, completion = (
        total[f"answer_{kind}_tokens"] / asked for kind in ("prompt", "completion")
    )
    made = total["calls"] - total["cached"]
    known = made and None not in busy
    seconds = f"{sum(busy) / made * total['calls'] / asked:.2f}" if known else "–"
    dollars = (
        "–"
        if price is None
        else f"${1000 * (prompt * price[0] + completion * price[1]) / 1e6:,.2f}"
    )
    quality = figure(summary["metrics"]["llm"]["all"]["ndcg@10"])
    return (f"| {name} | {quality} | {asked:,} | {total['calls']:,} | {prompt:,.0f} | "
            f"{completion:,.0f} | {seconds} | {1000 * (prompt + completion):,.0f} | "
            f"{dollars} |")  # fmt: skip


if __name__ == "__main__":
    main()
