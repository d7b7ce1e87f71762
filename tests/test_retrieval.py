"""FAISS recall: history never retrieved, exact search equals brute force, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coldrec._util.sparse import item_lists
from coldrec.cli import app
from coldrec.data import Dataset
from coldrec.data.candidates import Candidates
from coldrec.errors import ConfigError
from coldrec.retrieval.index import IndexConfig, build_index, search

runner = CliRunner()


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_equals_brute_force_without_history() -> None:
    items, users = vectors(300, 8, 0), vectors(40, 8, 1)
    history = item_lists(
        np.repeat(np.arange(40), 5), np.random.default_rng(2).integers(0, 300, 200), 40, 300
    )
    found = search(build_index(items), np.arange(40), users, 25, history, batch_size=16)
    scores = users @ items.T
    for row in range(40):
        seen = history[[row]].indices
        assert not np.isin(found.items[row], seen).any()
        ranked = [i for i in np.argsort(-scores[row], kind="stable") if i not in seen][:25]
        assert found.items[row].tolist() == ranked
        np.testing.assert_allclose(found.scores[row], scores[row, ranked], rtol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "hnsw"])
def test_approximate_indexes_find_most_of_the_exact_top(kind: str) -> None:
    items, users = vectors(2000, 16, 0), vectors(50, 16, 1)
    exact = search(build_index(items), np.arange(50), users, 20)
    config = IndexConfig(kind=kind, nlist=32, nprobe=8, pq_m=8)
    approx = search(build_index(items, config), np.arange(50), users, 20)
    overlap = np.mean(
        [len(np.intersect1d(a, b)) / 20 for a, b in zip(exact.items, approx.items, strict=True)]
    )
    assert overlap > 0.8
    assert (np.diff(approx.scores, axis=1) <= 1e-6).all()  # best first


def test_ivfpq_stores_codes_learnt_from_a_sample_and_refuses_what_it_cannot_do() -> None:
    items = vectors(3000, 16, 0)
    index = build_index(items, IndexConfig(kind="ivfpq", nlist=16, pq_m=4, train_size=500))
    assert index.ntotal == 3000 and index.code_size == 4  # 4 codes of 8 bits per item
    with pytest.raises(ConfigError, match="pq_m = 5 does not divide the vectors' dimension 16"):
        build_index(items, IndexConfig(kind="ivfpq", pq_m=5))
    with pytest.raises(ConfigError, match="needs at least 256 items"):
        build_index(items[:100], IndexConfig(kind="ivfpq", pq_m=4))


def test_short_catalogue_is_padded() -> None:
    found = search(build_index(vectors(5, 4, 0)), np.array([0]), vectors(1, 4, 1), 8,
                   item_lists(np.array([0]), np.array([2]), 1, 5))  # fmt: skip
    assert (found.items[0][:4] >= 0).all() and found.items[0][4:].tolist() == [-1] * 4
    assert 2 not in found.items[0]


def test_retrieve_command_writes_candidates_and_metrics(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    small_dataset.save(tmp_path / "ds")
    args = ["retrieve", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "tw"),
            "--top-m", "60", "--set", "model.dim=16", "--set", "model.training.epochs=2",
            "--set", "model.early_stopping=false"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    def strict(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    metrics = json.loads(
        (tmp_path / "tw" / "metrics-seed0.json").read_text(), parse_constant=strict
    )
    assert metrics["training"]["final"]["best_score"] is None  # no validation in the refit
    assert metrics["protocol"] == "candidates"
    assert "candidate_recall@50" in metrics["segments"]["cold"]
    assert "candidate_recall@100" not in metrics["segments"]["cold"]
    frame = pd.read_parquet(tmp_path / "tw" / "candidates.parquet")
    assert list(frame.columns) == ["user", "item", "score", "rank"]
    history = small_dataset.interactions[small_dataset.interactions["split"] != "test"]
    leaked = frame.merge(history, left_on=["user", "item"], right_on=["user_idx", "item_idx"])
    assert leaked.empty  # training items never appear in a user's candidates
    candidates = Candidates.load(tmp_path / "tw" / "candidates.parquet")
    assert candidates.width == 60
    for name in ("user_vectors.npy", "item_vectors.json", "model.safetensors", "model.json"):
        assert (tmp_path / "tw" / "model" / name).is_file()
