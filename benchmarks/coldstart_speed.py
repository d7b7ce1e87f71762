"""Seconds per training epoch of coldrec's cold-start models beside the ColdRec toolkit's
(issue 29), side by side in one run on MovieLens-100K or Beauty (``--data``;
``peer_coldrec_toolkit.py``'s Dataset, converted data and venv): per model, the toolkit's
run of ``--epochs`` epochs (DropoutNet, Heater and ALDI from its BPR-MF backbone, trained
first when missing; CLCRec its own), then coldrec's, one thread each, the models' default
settings, no early stopping. Each side's figure is the median wall time of its training
epochs (the toolkit's from its worker; coldrec's from the model's training log: its BPR-MF
teacher, fitted once before, is not counted). The two sides run in turn, model by model,
so whatever else the machine does weighs on both alike; the ratio is the figure to read.

Writes ``benchmarks/results/coldstart_speed_<data>.{md,json}``. Run from the project root:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coldstart_speed.py [--data ml100k] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from _common import ROOT, write_results
from coldrec.coldstart import ALDIConfig, CLCRecConfig, DropoutNetConfig, HeaterConfig
from coldrec.data import Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldstart_baselines import DATA
from peer_coldrec_toolkit import (
    BACKBONE,
    ON_BACKBONE,
    WORK,
    convert,
    install,
    prepared,
    run_toolkit,
    toolkit_arguments,
)

CONFIGS = {"DropoutNet": DropoutNetConfig, "Heater": HeaterConfig, "CLCRec": CLCRecConfig,
           "ALDI": ALDIConfig}  # fmt: skip
SEED = 0


def coldrec_seconds(model: str, dataset: Dataset, epochs: int) -> float:
    """Median seconds of coldrec's ``model`` over ``epochs`` training epochs (its default
    settings, as ``configs/<data>/coldstart_<data>.yaml`` uses them; no early stopping)."""
    default = CONFIGS[model]()  # its own optimiser settings, only the epochs changed
    config = default.model_copy(update={"early_stopping": False, "training": default.training
                                        .model_copy(update={"epochs": epochs})})  # fmt: skip
    fitted = config.build().fit(dataset, generator=torch.Generator().manual_seed(SEED))
    return float(fitted.training_log.final.summary()["seconds_per_epoch"])


def toolkit_seconds(model: str, name: str, epochs: int) -> float:
    """Median seconds of the toolkit's ``model`` over ``epochs`` epochs (seed 0)."""
    # a folder of its own: a seed's folder holds the benchmark runs' lists (cold_slots.py)
    work = WORK / f"coldrec_toolkit_{name}" / f"speed-seed{SEED}"
    backbone = work / "emb" / f"{name}_cold_item_{BACKBONE}_item_emb.pt"
    if model in ON_BACKBONE and not backbone.is_file():
        run_toolkit(work, BACKBONE, toolkit_arguments(name, BACKBONE, SEED, 100))
    run = run_toolkit(work, model, toolkit_arguments(name, model, SEED, epochs))
    return float(statistics.median(run["epoch_seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, default="ml100k")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed on each side")
    parser.add_argument("--models", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    name, folder, commands = prepared(argparse.Namespace(data=args.data, dataset=None))
    dataset = Dataset.load(folder)
    vectors = TextEncoder(TextEncoderConfig()).encode(dataset.item_text, progress=False)
    convert(dataset, vectors, WORK / f"coldrec_toolkit_{name}", name)
    versions = install()
    figures: dict[str, Any] = {"epochs": args.epochs, "versions": versions, "models": {}}
    rows = []
    for model in args.models:
        start = time.strftime("%H:%M")
        theirs = toolkit_seconds(model, name, args.epochs)
        ours = coldrec_seconds(model, dataset, args.epochs)
        figures["models"][model] = {"coldrec": ours, "toolkit": theirs, "started": start}
        rows.append(f"| {model} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.1f}× |")
    markdown = f"""# Seconds per epoch: coldrec's cold-start models beside the ColdRec toolkit's

{DATA[args.data]}, coldrec's global time split (the toolkit's layout of it from
`peer_coldrec_toolkit.py`), the models' default settings on both sides, {args.epochs}
epochs each, one thread, no early stopping; median seconds of a training epoch (coldrec's
BPR-MF teacher and the toolkit's backbone not counted). Model by model, the toolkit's run
then coldrec's, so both sides share whatever else the machine was doing.

| model | coldrec s / epoch | toolkit s / epoch | toolkit / coldrec |
|---|---:|---:|---:|
{chr(10).join(rows)}

Data: {"; ".join(commands) or folder.relative_to(ROOT)}. Toolkit venv versions (torch,
numpy, faiss): {versions}.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coldstart_speed.py --data {args.data} \\
        --epochs {args.epochs} --models {" ".join(args.models)}
"""
    write_results(f"coldstart_speed_{args.data}", figures, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
