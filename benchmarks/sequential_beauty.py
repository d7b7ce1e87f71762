"""E0 and the sequential baselines on Amazon Beauty (global split), 3 seeds, mean ± std.

- E0 (``sasrec_hybrid`` in the tables): Two-Tower candidates re-ranked by SASRec (sampled
  softmax, the thesis's settings), fused with the Two-Tower scores in ``hybrid`` mode, α
  chosen on the validation view
  (``coldrec rank``, no labels);
- SASRec, GRU4Rec and BERT4Rec over the full catalogue, trained with full softmax
  cross-entropy (RecBole's ``CE`` setting) at lr 1e-3 (``coldrec evaluate``);
- Popularity and ItemKNN-content for scale (from ``beauty_baselines.py``).

Needs the prepared data and the Two-Tower run of ``two_tower_beauty.py``. A run whose
metrics file exists is not repeated, so the script resumes after an interruption, and
``--only NAME …`` runs a subset (two processes with disjoint subsets share the machine's
cores better than one). Writes ``benchmarks/results/sequential_beauty.{md,json}`` and
``e0_alpha_curve.png`` once every run is there. Run from the project root:
``.venv/bin/python benchmarks/sequential_beauty.py`` (about 3 hours on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from _common import RESULTS, ROOT, write_results
from beauty_baselines import COLDREC, RUNS

SEEDS = (0, 1, 2)
FULL_SOFTMAX = ["--set", "model.loss=full", "--set", "model.training.lr=0.001"]
BASELINES = {
    "sasrec_full": ["--model", "sasrec", *FULL_SOFTMAX],
    "gru4rec": ["--model", "gru4rec", *FULL_SOFTMAX],
    # BERT4Rec's validation curve bumps early (epoch 4), dips, and climbs past it after
    # ~16 epochs: with the default patience (3 validations, 6 epochs) two of three seeds
    # stopped at epoch 4, so it gets 6 validations (12 epochs; RecBole's default is 10).
    "bert4rec": ["--model", "bert4rec", *FULL_SOFTMAX, "--set", "model.training.patience=6"],
}
THESIS_E0 = {"warm": 0.0313, "cold": 0.0029}  # Recall@20 of the thesis's E0


def run_commands() -> list[list[str]]:
    data = ["--dataset", str(RUNS / "data")]
    e0 = [
        ["rank", *data, "--candidates", str(RUNS / "two_tower"), "--out", str(RUNS / "e0"),
         "--seed", str(seed)]
        for seed in SEEDS
    ]  # fmt: skip
    baselines = [
        ["evaluate", *data, *extra, "--name", name, "--out", str(RUNS / name), "--seed", str(seed)]
        for name, extra in BASELINES.items()
        for seed in SEEDS
    ]
    return [*baselines, *e0]


def report_command() -> list[str]:
    dirs = [str(RUNS / m) for m in ("popularity", "itemknn", "e0", *BASELINES)]
    return ["report", *dirs, "--out", str(RUNS / "report_sequential")]


def _metrics_file(command: list[str]) -> str:
    out, seed = command[command.index("--out") + 1], command[command.index("--seed") + 1]
    return f"{out}/metrics-seed{seed}.json"


def alpha_plot() -> list[dict]:
    """E0's validation trade-off curve (warm vs cold Recall@20 per α), one line per seed."""
    fig, ax = plt.subplots(figsize=(5, 4))
    chosen = []
    for seed in SEEDS:
        metrics = json.loads((ROOT / RUNS / "e0" / f"metrics-seed{seed}.json").read_text())
        curve = metrics["fusion"]["validation_curve"]
        ax.plot([p["warm"] for p in curve], [p["cold"] for p in curve], marker="o",
                label=f"seed {seed} (chosen α {metrics['fusion']['alpha']})")  # fmt: skip
        for point in curve[::2]:
            ax.annotate(f"{point['alpha']:.1f}", (point["warm"], point["cold"]), fontsize=7)
        chosen.append({"seed": seed, "alpha": metrics["fusion"]["alpha"], "curve": curve})
    ax.set_xlabel("warm Recall@20 (validation)")
    ax.set_ylabel("cold Recall@20 (validation)")
    ax.set_title("E0: SASRec weight α in the hybrid")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "e0_alpha_curve.png", dpi=120)
    plt.close(fig)
    return chosen


def epochs_table() -> str:
    rows = ["| method | seed | epochs chosen on validation | seconds per epoch (final fit) |",
            "|---|---|---|---|"]  # fmt: skip
    for name in ("e0", *BASELINES):
        for seed in SEEDS:
            metrics = json.loads((ROOT / RUNS / name / f"metrics-seed{seed}.json").read_text())
            training = metrics.get("training")
            if not training:
                rows.append(f"| {name} | {seed} | (not recorded) | (not recorded) |")
                continue
            final = training["final"]
            rows.append(f"| {name} | {seed} | {final['epochs_run']} | "
                        f"{final['seconds_per_epoch']:.1f} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["e0", *BASELINES], help="run these only")
    only = parser.parse_args().only
    commands = run_commands()
    for command in commands:
        name = Path(command[command.index("--out") + 1]).name
        if (ROOT / _metrics_file(command)).is_file() or (only and name not in only):
            continue
        subprocess.run([COLDREC, *command], cwd=ROOT, check=True)
    if not all((ROOT / _metrics_file(c)).is_file() for c in commands):
        print("some runs are missing: no report yet")
        return
    subprocess.run([COLDREC, *report_command()], cwd=ROOT, check=True)
    report = (ROOT / RUNS / "report_sequential" / "report.md").read_text()
    chosen = alpha_plot()
    lines = "\n".join(f"    coldrec {shlex.join(c)}" for c in [*commands, report_command()])
    alphas = ", ".join(f"seed {c['seed']}: {c['alpha']}" for c in chosen)
    markdown = f"""# E0 and sequential baselines on Amazon Beauty (global split)

{report}

Thesis E0 for comparison: warm Recall@20 {THESIS_E0["warm"]}, cold {THESIS_E0["cold"]}.
α chosen on the validation view: {alphas} (curve: `e0_alpha_curve.png`).

## Training

{epochs_table()}

## Commands

{lines}
"""
    write_results("sequential_beauty", {"alpha": chosen}, markdown)


if __name__ == "__main__":
    main()
