"""What torch's deterministic kernels cost coldrec's training on Amazon Beauty.

Every trained model trains with ``torch.use_deterministic_algorithms(True)``
(``coldrec.training.model``): with two threads, gradient sums of some kernels otherwise
vary in the last bits between runs, and a seed no longer fixes the model. This times the
median training epoch of E0's SASRec (sampled softmax), the full-softmax SASRec and the
Two-Tower model with the deterministic kernels and without them, in one run, alternating
(without, with, without, with) so that drift in the machine's load hits both alike.

Run ``.venv/bin/python benchmarks/deterministic_training.py``; figures go to
``benchmarks/results/deterministic_training.{json,md}``.
"""

from __future__ import annotations

import contextlib
import statistics
from unittest import mock

import torch

import coldrec.training.model as trained_model
from _common import load_beauty, write_results
from coldrec.data import prepare
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig
from coldrec.training.loop import TrainingConfig
from coldrec.training.model import TrainedModel

EPOCHS = 3
MODELS = {
    "SASRec, sampled softmax (E0)": lambda: SequentialRecommender(
        SASRecConfig(early_stopping=False, training=TrainingConfig(epochs=EPOCHS, batch_size=256))
    ),
    "SASRec, full softmax": lambda: SequentialRecommender(
        SASRecConfig(
            early_stopping=False,
            loss="full",
            training=TrainingConfig(epochs=EPOCHS, batch_size=256, lr=1e-3),
        )
    ),
    "Two-Tower": lambda: TwoTower(
        TwoTowerConfig(early_stopping=False, training=TrainingConfig(epochs=EPOCHS))
    ),
}


def epoch_seconds(model: TrainedModel, dataset: object, deterministic: bool) -> list[float]:
    """Seconds of each training epoch, with or without the deterministic kernels."""
    patch = (
        contextlib.nullcontext()
        if deterministic
        else mock.patch.object(trained_model, "_deterministic", contextlib.nullcontext)
    )
    with patch:
        model.fit(dataset, generator=torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    assert model.training_log.final is not None
    return model.training_log.final.seconds


def main() -> None:
    dataset = prepare(load_beauty())
    figures = {}
    for name, build in MODELS.items():
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for deterministic in (False, True, False, True):
            seconds[deterministic] += epoch_seconds(build(), dataset, deterministic)
        plain, fixed = statistics.median(seconds[False]), statistics.median(seconds[True])
        figures[name] = {"plain_s": plain, "deterministic_s": fixed, "ratio": fixed / plain}
        print(f"{name}: {plain:.2f} s plain, {fixed:.2f} s deterministic", flush=True)
    rows = "\n".join(
        f"| {name} | {f['plain_s']:.2f} | {f['deterministic_s']:.2f} | {f['ratio']:.2f} |"
        for name, f in figures.items()
    )
    threads = torch.get_num_threads()
    write_results(
        "deterministic_training",
        {"benchmark": "training epoch, Amazon Beauty", "threads": threads, "figures": figures},
        "# Deterministic kernels: the cost per training epoch on Amazon Beauty\n\n"
        f"Median seconds of a training epoch ({EPOCHS} epochs per fit, two fits per setting, "
        f"alternating; {threads} torch threads), global split, 138,951 history rows.\n\n"
        "| model | plain (s) | deterministic (s) | ratio |\n|---|---:|---:|---:|\n"
        f"{rows}\n",
    )


if __name__ == "__main__":
    main()
