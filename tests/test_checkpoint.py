"""A training stopped part way resumes from its checkpoint and ends exactly as an
uninterrupted one: for each model family (graph, sequential with dropout, Two-Tower,
content cold-start over its BPR-MF teacher), stopped in the validation training or in
the final one; and a ``coldrec run`` step killed mid-training resumes from where it was."""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from coldrec.coldstart import DropoutNetConfig, base
from coldrec.coldstart.mf import BPRMFConfig
from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.run import run_experiment
from coldrec.graph import XSimGCLConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.retrieval.two_tower import TwoTowerConfig
from coldrec.training import checkpoint, loop
from coldrec.training.checkpoint import checkpoints

VALIDATED = {"epochs": 6, "batch_size": 256, "eval_every": 1, "patience": 3, "lr": 0.01}
CONFIGS: dict[str, Any] = {
    "xsimgcl": XSimGCLConfig(dim=8, training={**VALIDATED, "lr": 0.001}, rank_level={}),
    "sasrec": SASRecConfig(dim=16, n_negatives=5, dropout=0.3, training=VALIDATED),
    "two_tower": TwoTowerConfig(dim=16, training={**VALIDATED, "lr": 0.001}),
    "dropoutnet": DropoutNetConfig(
        backbone=BPRMFConfig(dim=8, early_stopping=False, training={"epochs": 3}),
        training=VALIDATED,
    ),
}


class Killed(Exception):
    """Stands for the process being killed."""


def fitted(kind: str, dataset: Dataset) -> Any:
    return CONFIGS[kind].build().fit(dataset, generator=torch.Generator().manual_seed(0))


def logs(model: Any) -> dict[str, Any]:
    """The training logs without wall times."""
    return {name: {k: v for k, v in run.items() if k != "seconds"}
            for name, run in model.training_log.to_json().items()}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.parametrize("killed_in", ["first", "last"])
def test_a_killed_training_resumes_to_the_same_model(
    kind: str, killed_in: str, small_dataset: Dataset, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Killed at the second epoch of the model's first training (a content model's
    teacher's) or at the last epoch of its final training."""
    monkeypatch.setattr(base, "_TEACHERS", OrderedDict())  # each fit trains its teachers
    real, epochs = loop._one_epoch, itertools.count(1)
    never = kill_after = 10**9

    def one_epoch(*args: Any) -> None:
        if next(epochs) > kill_after:
            raise Killed
        real(*args)

    monkeypatch.setattr(loop, "_one_epoch", one_epoch)
    plain = fitted(kind, small_dataset)
    total, epochs = next(epochs) - 1, itertools.count(1)
    assert plain.training_log.final.epochs_run > 1
    kill_after = 1 if killed_in == "first" else total - 1
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(base, "_TEACHERS", OrderedDict())
    with checkpoints(tmp_path):
        with pytest.raises(Killed):
            fitted(kind, small_dataset)
        assert list(tmp_path.glob("*.pt"))
        kill_after = never
        monkeypatch.setattr(base, "_TEACHERS", OrderedDict())
        resumed = fitted(kind, small_dataset)
    users = np.arange(small_dataset.n_users)
    np.testing.assert_array_equal(resumed.score(users), plain.score(users))
    assert logs(resumed) == logs(plain)


def test_no_checkpoint_is_written_outside_a_checkpoint_folder(
    small_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fitted("xsimgcl", small_dataset)
    assert not list(tmp_path.rglob("*.pt"))


def test_a_run_step_killed_mid_training_resumes_and_drops_its_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = {"kind": "lightgcn", "dim": 8, "early_stopping": False, "training": {"epochs": 4}}
    config = validate(ExperimentConfig, {
        "name": "killed", "seeds": [0], "rank": None,
        "data": {"source": {"kind": "synthetic", "n_users": 300, "n_items": 200, "seed": 5}},
        "baselines": {"graph": {"model": graph}},
    })  # fmt: skip
    run_experiment(config, tmp_path / "clean" / "run")
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)
    real, epochs = loop._one_epoch, itertools.count(1)

    def killed_after_two(*args: Any) -> None:
        if next(epochs) > 2:
            raise Killed
        real(*args)

    monkeypatch.setattr(loop, "_one_epoch", killed_after_two)
    out = tmp_path / "killed" / "run"
    with pytest.raises(Killed):
        run_experiment(config, out)
    kept = list((out.parent / ".store").glob(".baselines-*.checkpoints/*.pt"))
    assert len(kept) == 1
    monkeypatch.setattr(loop, "_one_epoch", real)
    run_experiment(config, out)
    assert not kept[0].parent.exists()
    found, clean = (
        json.loads((run / "baselines" / "graph" / "seed0" / "metrics-seed0.json").read_text())
        for run in (out, tmp_path / "clean" / "run")
    )
    assert found["segments"] == clean["segments"]
    assert found["training"]["final"]["epochs_run"] == 4
