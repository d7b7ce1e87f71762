"""Two-Tower on Amazon Beauty (global split): quality next to the baselines, the
candidate Recall@M curve per segment, seconds per training epoch and seconds to
retrieve the top-2000 for every test user.

Runs the ``coldrec`` commands listed in the result, then writes
``benchmarks/results/two_tower_beauty.{md,json}`` and ``two_tower_recall_curve.png``.
Run from the project root: ``.venv/bin/python benchmarks/two_tower_beauty.py``
(about 15 minutes on 2 cores; text vectors come from the cache after the first run).
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from _common import RESULTS, ROOT, write_results
from beauty_baselines import COLDREC, MODELS, RUNS, commands

VARIANTS = {
    "two_tower": [],
    "two_tower_logq": ["--set", "model.logq_correction=true"],
}
MS = (50, 100, 200, 500, 1000, 2000)
SEGMENTS = ("all", "warm", "cold")


def retrieve_commands() -> list[list[str]]:
    data = ["retrieve", "--dataset", str(RUNS / "data")]
    return [[*data, "--name", n, *extra, "--out", str(RUNS / n)] for n, extra in VARIANTS.items()]


def report_command() -> list[str]:
    dirs = [str(RUNS / m) for m in (*MODELS, *VARIANTS)]
    return ["report", *dirs, "--out", str(RUNS / "report_two_tower")]


def curve_plot(runs: dict[str, dict]) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, segment in zip(axes, SEGMENTS, strict=True):
        for name, metrics in runs.items():
            values = [metrics["segments"][segment][f"candidate_recall@{m}"] for m in MS]
            ax.plot(MS, values, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_title(segment)
        ax.set_xlabel("M (candidates)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("candidate Recall@M")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "two_tower_recall_curve.png", dpi=120)
    plt.close(fig)


def main() -> None:
    all_commands = [*commands()[:-1], *retrieve_commands(), report_command()]
    for args in all_commands:
        subprocess.run([COLDREC, "-q", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    runs = {
        name: json.loads((ROOT / RUNS / name / "metrics-seed0.json").read_text())
        for name in VARIANTS
    }
    epoch_s = statistics.median(m["training"]["final"]["seconds_per_epoch"] for m in runs.values())
    report = (ROOT / RUNS / "report_two_tower" / "report.md").read_text()
    tables = report[report.index("### all") : report.index("### cold_users")].strip()
    curve_rows = []
    for name, metrics in runs.items():
        for segment in SEGMENTS:
            values = metrics["segments"][segment]
            recall = " | ".join(f"{values[f'candidate_recall@{m}']:.3f}" for m in MS)
            hits = values["candidate_hit_rate@2000"]
            curve_rows.append(f"| {name} | {segment} | {recall} | {hits:.3f} |")
    header = "| model | segment | " + " | ".join(f"R@{m}" for m in MS) + " | HitRate@2000 |"
    rule = "|---|---|" + "---:|" * (len(MS) + 1)
    timing_rows = "\n".join(
        f"| {name} | {m['timings']['fit_s']:.0f} | {m['training']['validation']['best_epoch']} "
        f"| {m['timings']['retrieve_s']:.1f} |"
        for name, m in runs.items()
    )
    shown = "\n".join(f"    coldrec {shlex.join(args)}" for args in all_commands)
    curve_plot(runs)
    markdown = (
        "# Two-Tower retrieval on Amazon Beauty 2014 (global 70/30 split)\n\n"
        "Two-Tower-only ranking (its own top-20 among its top-2,000 candidates, history "
        "excluded) next to the full-ranking baselines; one run each (seed 0).\n\n"
        f"{tables}\n\n"
        "## Candidate Recall@M (share of a user's targets among the first M candidates)\n\n"
        f"{header}\n{rule}\n" + "\n".join(curve_rows) + "\n\n"
        "![candidate recall curve](two_tower_recall_curve.png)\n\n"
        "## Time (seconds, this machine)\n\n"
        f"Training epoch on the whole Beauty history (138,951 rows, batch 1024): "
        f"**{epoch_s:.1f} s** (median over the refit epochs, which run without validation)."
        "\n\n| model | fit (validation run + refit) | epochs chosen "
        "| retrieve top-2000 for all test users |\n|---|---:|---:|---:|\n"
        f"{timing_rows}\n\n"
        "## Commands\n\n"
        f"{shown}\n"
    )
    write_results(
        "two_tower_beauty",
        {
            "seconds_per_epoch": epoch_s,
            "runs": {
                name: {
                    "segments": {s: m["segments"][s] for s in SEGMENTS},
                    "timings": m["timings"],
                    "training": m["training"],
                }
                for name, m in runs.items()
            },
            "median_retrieve_s": statistics.median(
                m["timings"]["retrieve_s"] for m in runs.values()
            ),
        },
        markdown,
    )
    print(markdown)


if __name__ == "__main__":
    main()
