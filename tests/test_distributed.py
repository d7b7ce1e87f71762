"""Data-parallel training (``coldrec rank/retrieve --nproc 2``: torchrun, gloo): without
dropout two processes take the steps one process takes, to float rounding; rank 0 alone
writes, and the saved model loads like any other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.rank.fusion import FusedRanker
from coldrec.retrieval.retrieve import RetrieveConfig, run_retrieval
from coldrec.training import distributed


@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_shards_cover_each_batch_once(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: size)
    for n in range(8):
        rows = []
        for me in range(size):
            monkeypatch.setattr(distributed, "rank", lambda me=me: me)
            rows.append(list(range(n))[distributed.shard(n)])
        assert [row for shard in rows for row in shard] == list(range(n))
        assert max(map(len, rows)) - min(map(len, rows)) <= 1


def test_two_processes_train_as_one(tmp_path: Path, small_dataset: Dataset) -> None:
    small_dataset.save(tmp_path / "ds")
    run_retrieval(validate(RetrieveConfig, {"top_m": 60, "model": {
        "dim": 16, "early_stopping": False, "training": {"epochs": 2}}}), tmp_path / "ds",
        tmp_path / "tw")  # fmt: skip
    command = [str(Path(sys.executable).parent / "coldrec"), "-q", "rank", "--dataset",
               str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw"), "--set", "alpha=0.5",
               "--set", "model.early_stopping=false", "--set", "model.training.epochs=3",
               "--set", "model.training.batch_size=64", "--set", "model.dropout=0"]  # fmt: skip
    subprocess.run([*command, "--out", str(tmp_path / "one")], check=True, capture_output=True)
    subprocess.run([*command, "--out", str(tmp_path / "two"), "--nproc", "2"], check=True,
                   capture_output=True)  # fmt: skip
    losses = {}
    for run in ("one", "two"):
        saved = json.loads((tmp_path / run / "model" / "model.json").read_text())
        losses[run] = saved["training"]["final"]["losses"]
    np.testing.assert_allclose(losses["two"], losses["one"], rtol=1e-5)
    metrics = {run: json.loads((tmp_path / run / "metrics-seed0.json").read_text())["segments"]
               for run in ("one", "two")}  # fmt: skip
    processes = {run: json.loads((tmp_path / run / "metrics-seed0.json").read_text())[
        "training_processes"] for run in ("one", "two")}  # fmt: skip
    assert processes == {"one": 1, "two": 2}
    for segment, figures in metrics["one"].items():
        assert metrics["two"][segment]["recall@20"] == pytest.approx(figures["recall@20"], abs=1e-3)
    loaded = FusedRanker.load(tmp_path / "two" / "model", small_dataset)
    alone = FusedRanker.load(tmp_path / "one" / "model", small_dataset)
    users, items = np.arange(5), np.tile(np.arange(20), (5, 1))
    np.testing.assert_allclose(loaded.score(users, items), alone.score(users, items), rtol=1e-3,
                               atol=1e-4)  # fmt: skip


def test_two_processes_train_the_two_tower_as_one(tmp_path: Path, small_dataset: Dataset) -> None:
    """Each process its users against every item of the batch (the in-batch negatives
    stay whole): the same losses and candidates as one process."""
    small_dataset.save(tmp_path / "ds")
    command = [str(Path(sys.executable).parent / "coldrec"), "-q", "retrieve", "--dataset",
               str(tmp_path / "ds"), "--top-m", "60", "--set", "model.dim=16",
               "--set", "model.early_stopping=false", "--set", "model.training.epochs=3",
               "--set", "model.training.batch_size=128"]  # fmt: skip
    subprocess.run([*command, "--out", str(tmp_path / "one")], check=True, capture_output=True)
    subprocess.run([*command, "--out", str(tmp_path / "two"), "--nproc", "2"], check=True,
                   capture_output=True)  # fmt: skip
    losses = [json.loads((tmp_path / run / "model" / "model.json").read_text())["training"][
        "final"]["losses"] for run in ("one", "two")]  # fmt: skip
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    figures = [json.loads((tmp_path / run / "metrics-seed0.json").read_text())["segments"]["all"]
               for run in ("one", "two")]  # fmt: skip
    assert figures[1]["recall@20"] == pytest.approx(figures[0]["recall@20"], abs=1e-3)
    processes = [json.loads((tmp_path / run / "metrics-seed0.json").read_text())[
        "training_processes"] for run in ("one", "two")]  # fmt: skip
    assert processes == [1, 2]
