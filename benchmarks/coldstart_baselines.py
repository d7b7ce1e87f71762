"""The item cold-start literature's own models (issue 29) on Amazon Beauty and
MovieLens-100K, global time split, full ranking, 3 seeds: coldrec's BPR-MF (the warm
teacher alone), DeepMusic, DropoutNet, Heater, CLCRec and ALDI over it, and content kNN
(``configs/<data>/coldstart_<data>.yaml``, run with ``coldrec run``: its steps cached,
a stopped run resumes); beside them the ColdRec toolkit's runs of the same split
(``peer_coldrec_toolkit.py``'s kept figures, when it has run) and, on Beauty, E0 and the
best thesis-pipeline configuration of ``beauty_e0_e3.json``.

Each finished model's metrics are kept in ``benchmarks/results/coldstart_<data>/``
(committed) as soon as it is written; a kept model is not run again (the run goes seed by
seed over the models not kept). Writes ``benchmarks/results/coldstart_baselines.{md,json}``
from whatever is kept for either data set. Run from the project root:
``.venv/bin/python benchmarks/coldstart_baselines.py --data ml100k`` (or ``beauty``;
``--report`` only rewrites the report).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from _common import RESULTS, ROOT, mean_std, write_results
from beauty_baselines import run_coldrec
from lagcl import keep_metrics

DATA = {"beauty": "Amazon Beauty 2014 5-core", "ml100k": "MovieLens-100K"}
MODELS = ("bprmf", "deepmusic", "dropoutnet", "heater", "clcrec", "aldi", "itemknn")
ALONE = ("clcrec",)  # no teacher to share, and the longest fit by far (run_missing)
SEGMENTS = ("all", "warm", "cold")
METRICS = ("recall@20", "ndcg@20")
HEADER = ("| model | " + " | ".join(f"{s} R@20 | {s} NDCG@20" for s in SEGMENTS)
          + " | s / epoch | teacher s / epoch | epochs (teacher) |\n|---|"
          + "---:|" * (2 * len(SEGMENTS) + 3))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, nargs="*", default=[])
    parser.add_argument("--report", action="store_true", help="only rewrite the report")
    args = parser.parse_args()
    for data in [] if args.report else args.data:
        run_missing(data)
    report()


def command(data: str) -> list[str]:
    return ["run", f"configs/{data}/coldstart_{data}.yaml", "--out", f"runs/coldstart_{data}"]


def run_missing(data: str) -> None:
    """Run, seed by seed, the models of ``data``'s config whose metrics are not kept yet,
    keeping each model's as soon as it is written (a stopped machine loses no finished
    model; the models of one command share their teacher, fitted once in the process).
    ``ALONE`` models get a command of their own: a run's checkpoints belong to its step,
    whose key covers the command's models, so a long fit resumes after a stop only if
    its command names the same models as before, however many others were kept since."""
    out, kept = Path("runs") / f"coldstart_{data}", RESULTS / f"coldstart_{data}"
    config = yaml.safe_load((ROOT / command(data)[1]).read_text())
    for seed in config["seeds"]:
        missing = {model: settings for model, settings in config["baselines"].items()
                   if not (kept / model / f"seed{seed}").is_dir()}  # fmt: skip
        together = [m for m in missing if m not in ALONE]
        groups = ([together] if together else []) + [[m] for m in missing if m in ALONE]
        for models in groups:
            flags = ["--set", f"seeds=[{seed}]", "--set", "baselines={}"]
            for model in models:
                flags += ["--set", f"baselines.{model}={json.dumps(missing[model])}"]
            run_coldrec(command(data) + flags, every_minute=lambda: keep_metrics(out, kept))


def kept_runs(data: str) -> dict[str, list[dict[str, Any]]]:
    """Each kept model's metrics files, seed by seed."""
    kept = RESULTS / f"coldstart_{data}"
    runs = {}
    for model in MODELS:
        paths = sorted((kept / model).glob("seed*/metrics-seed*.json"))
        if paths:
            runs[model] = [json.loads(path.read_text()) for path in paths]
    return runs


def figure_cells(seeds: list[dict[str, Any]]) -> list[str]:
    """The table's metric cells from the seeds' ``segments``."""
    return [mean_std([s[segment][metric] for s in seeds]) for segment in SEGMENTS
            for metric in METRICS]  # fmt: skip


def model_row(name: str, runs: list[dict[str, Any]]) -> str:
    """A coldrec model's row: metrics, the student's and the teacher's median seconds
    per epoch of the final fits, the epochs of the final fits."""
    final = [(r.get("training") or {}).get("final") or {} for r in runs]
    teacher = [(r.get("teacher") or {}).get("final") or {} for r in runs]
    seconds = [f["seconds_per_epoch"] for f in final if f.get("seconds_per_epoch")]
    teacher_seconds = [t["seconds_per_epoch"] for t in teacher if t.get("seconds_per_epoch")]
    epochs = ", ".join(
        f"{f['epochs_run']}" + (f" ({t['epochs_run']})" if t else "")
        for f, t in zip(final, teacher, strict=True)
        if f
    )
    timing = [f"{np.median(s):.2f}" if s else "–" for s in (seconds, teacher_seconds)]
    return f"| {name} | {' | '.join(figure_cells([r['segments'] for r in runs]))} | " \
           f"{' | '.join(timing)} | {epochs or '–'} |"  # fmt: skip


def toolkit_rows(data: str) -> list[str]:
    """The ColdRec toolkit's runs, as ``peer_coldrec_toolkit.py`` kept them."""
    path = RESULTS / f"coldstart_toolkit_{data}.json"
    if not path.is_file():
        return []
    rows = []
    for model, seeds in json.loads(path.read_text())["runs"].items():
        seconds = [s["seconds_per_epoch"] for s in seeds if s.get("seconds_per_epoch")]
        timing = f"{np.median(seconds):.2f}" if seconds else "–"
        cells = " | ".join(figure_cells([s["segments"] for s in seeds]))
        epochs = "/".join(dict.fromkeys(str(s["settings"]["epochs"]) for s in seeds))
        rows.append(f"| toolkit {model} | {cells} | {timing} | | {epochs} |")
    return rows


def thesis_rows() -> list[str]:
    """E0 and the thesis pipeline's best configuration on Beauty (all Recall@20)."""
    summary = json.loads((RESULTS / "beauty_e0_e3.json").read_text())["summary"]
    pipeline = [name for name in summary if name.startswith("e") and "smollm2" not in name]
    best = max(pipeline, key=lambda name: summary[name]["segments"]["all"]["recall@20"][0])
    rows = []
    for name in dict.fromkeys(["e0", best]):
        segments = summary[name]["segments"]
        cells = [f"{segments[s][m][0]:.4f} ± {segments[s][m][1]:.4f}" for s in SEGMENTS
                 for m in METRICS]  # fmt: skip
        rows.append(f"| {name} (beauty_e0_e3) | {' | '.join(cells)} | | | |")
    return rows


def report() -> None:
    sections, figures = [], {}
    for data, title in DATA.items():
        runs = kept_runs(data)
        if not runs:
            continue
        figures[data] = {model: [r["segments"] for r in seeds] for model, seeds in runs.items()}
        rows = [model_row(model, seeds) for model, seeds in runs.items()]
        rows += toolkit_rows(data) + (thesis_rows() if data == "beauty" else [])
        sections.append(f"## {title}\n\n{HEADER}\n" + "\n".join(rows) + "\n\n    coldrec "
                        + shlex.join(command(data)) + "\n\n(seed by seed, with `--set seeds=[N]` "
                        "and the models of the seed not kept yet: `--set baselines={} "
                        "--set baselines.<model>=...`)\n")  # fmt: skip
    markdown = f"""# The item cold-start literature's models beside coldrec

Global 70/30 time split, full ranking over warm and cold items in one list, mean ± sample
std over the seeds kept (3 planned). Content = each item's MiniLM text vector. coldrec's
models are its own implementations from the papers (`coldrec.coldstart`); BPR-MF is their
teacher alone (cold items unscored). Seconds per epoch: medians of the final fits (one
thread); the teacher's are BPR-MF's (fitted once per Dataset and seed, shared by the models
of a run). Epochs: of each seed's final fit (the teacher's in brackets), chosen on the
validation carve-out.

{chr(10).join(sections)}"""
    write_results("coldstart_baselines", {"runs": figures}, markdown)


if __name__ == "__main__":
    main()
