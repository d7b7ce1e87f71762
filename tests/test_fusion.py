"""Fusion over candidates, α chosen on validation, and the rank command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.data import Dataset
from coldrec.data.candidates import Candidates
from coldrec.eval.protocol import evaluate
from coldrec.rank.fusion import FusedRanker, choose_alpha

runner = CliRunner()


class Fixed:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def fit(self, dataset: object) -> Fixed:
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return self.scores


def test_hybrid_lets_unscored_items_compete_on_the_retriever_score() -> None:
    candidates = Candidates(
        np.array([0]), np.array([[3, 5, 7]]), np.array([[0.9, 0.5, 0.1]], dtype=np.float32)
    )
    ranker = Fixed(np.array([[1.0, np.nan, 3.0]], dtype=np.float32))  # item 5 unknown to it
    items = candidates.for_users(np.array([0]))
    tw = [1.0, 0.5, 0.0]  # min-max of 0.9, 0.5, 0.1
    sas = [0.0, tw[1], 1.0]  # min-max of 1, 3; the NaN takes the retriever's value
    for alpha in (0.0, 0.3, 1.0):
        got = FusedRanker(ranker, candidates, "hybrid", alpha).score(np.array([0]), items)[0]
        expected = [alpha * s + (1 - alpha) * t for s, t in zip(sas, tw, strict=True)]
        np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(
        FusedRanker(ranker, candidates, "tw", 0).score(np.array([0]), items)[0], [0.9, 0.5, 0.1]
    )
    with pytest.raises(ValueError, match="candidates only"):
        FusedRanker(ranker, candidates, "tw", 0).score(np.array([0]))


def settings(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def test_retrieve_then_rank_chooses_alpha_on_validation(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    small_dataset.save(tmp_path / "ds")
    fast_tw = [
        "--set",
        "model.dim=16",
        "--set",
        "model.training.epochs=2",
        "--set",
        "model.training.eval_every=1",
    ]
    retrieve = [
        "retrieve",
        "--dataset",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "tw"),
        "--top-m",
        "60",
    ]
    assert runner.invoke(app, [*retrieve, *fast_tw]).exit_code == 0
    assert (tmp_path / "tw" / "valid_candidates.parquet").is_file()
    fast_sas = settings(
        "model.dim=16", "model.n_negatives=10", "model.training.epochs=2",
        "model.training.eval_every=1", "alphas=[0.0,0.5,1.0]",
    )  # fmt: skip
    rank = ["rank", "--dataset", str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw")]
    result = runner.invoke(app, [*rank, "--out", str(tmp_path / "hy"), *fast_sas])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "hy" / "metrics-seed0.json").read_text())
    curve = metrics["fusion"]["validation_curve"]
    assert [point["alpha"] for point in curve] == [0.0, 0.5, 1.0]
    best = max(curve, key=lambda point: point["score"])
    assert metrics["fusion"]["alpha"] == best["alpha"]
    # tw mode reproduces the retrieve run's Two-Tower-only ranking exactly.
    result = runner.invoke(
        app, [*rank, "--out", str(tmp_path / "twonly"), *fast_sas, "--set", "mode=tw"]
    )
    assert result.exit_code == 0, result.output
    tw_only = json.loads((tmp_path / "twonly" / "metrics-seed0.json").read_text())["segments"]
    retrieved = json.loads((tmp_path / "tw" / "metrics-seed0.json").read_text())["segments"]
    for segment in ("all", "warm", "cold"):
        assert tw_only[segment]["recall@20"] == pytest.approx(retrieved[segment]["recall@20"])
    # any sequential ranker plugs in by kind
    other = [*fast_sas, "--set", "model.kind=gru4rec", "--set", "alpha=0.5"]
    result = runner.invoke(app, [*rank, "--out", str(tmp_path / "gru"), *other])
    assert result.exit_code == 0, result.output
    gru = json.loads((tmp_path / "gru" / "metrics-seed0.json").read_text())
    assert gru["method"] == "gru4rec_hybrid" and gru["fusion"]["alpha"] == 0.5


def test_rank_refuses_before_training_when_alpha_cannot_be_chosen(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    small_dataset.save(tmp_path / "ds")
    retrieve = ["retrieve", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "tw"),
                "--top-m", "20", *settings("model.dim=8", "model.training.epochs=1",
                                           "model.early_stopping=false")]  # fmt: skip
    assert runner.invoke(app, retrieve).exit_code == 0
    assert not (tmp_path / "tw" / "valid_candidates.parquet").exists()  # no validation run
    args = ["rank", "--dataset", str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw"),
            "--out", str(tmp_path / "r"), "--set", "model.training.epochs=50"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "valid_candidates.parquet" in result.stderr
    assert not (tmp_path / "r").exists()


def test_label_weight_is_chosen_on_validation_and_its_training_reused(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    small_dataset.save(tmp_path / "ds")
    retrieve = ["retrieve", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "tw"),
                "--top-m", "60", *settings("model.dim=16", "model.training.epochs=2")]  # fmt: skip
    assert runner.invoke(app, retrieve).exit_code == 0
    cold = np.flatnonzero(small_dataset.items["cold"].to_numpy())
    users = np.arange(20)
    pd.DataFrame({"user": users, "item": cold[users % len(cold)], "weight": 1.0,
                  "source": "test"}).to_parquet(tmp_path / "edges.parquet")  # fmt: skip
    rank = ["rank", "--dataset", str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw"),
            "--edges", str(tmp_path / "edges.parquet"), "--out", str(tmp_path / "r"),
            *settings("model.dim=16", "model.n_negatives=10", "model.training.epochs=3",
                      "model.training.eval_every=1", "alphas=[0.0,0.5,1.0]",
                      "label_weights=[0.1,3.0]")]  # fmt: skip
    result = runner.invoke(app, rank)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics-seed0.json").read_text())
    points = metrics["label_weight"]["validation"]
    assert [point["weight"] for point in points] == [0.1, 3.0]
    best = max(points, key=lambda point: point["score"])
    assert metrics["label_weight"]["chosen"] == best["weight"]
    # the final model is the chosen weight's: its validation training, α and epochs
    assert metrics["fusion"]["alpha"] == best["alpha"]
    assert metrics["training"]["validation"]["best_epoch"] == best["epochs"]
    assert metrics["training"]["final"]["epochs_run"] == max(1, best["epochs"])
    result = runner.invoke(app, [*rank[:5], *rank[9:], "--out", str(tmp_path / "none")])
    assert result.exit_code == 2 and "give edges or triplets" in result.stderr


class Counting:
    """Scores from a fixed random users × items table; counts its score calls."""

    def __init__(self, n_users: int, n_items: int) -> None:
        self.table = np.random.default_rng(1).random((n_users, n_items)).astype(np.float32)
        self.calls = 0

    def fit(self, dataset: object) -> Counting:
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        assert items is not None
        return np.take_along_axis(self.table[users], np.maximum(items, 0), axis=1)


def test_alpha_sweep_scores_each_query_once_and_matches_separate_evaluations(
    small_dataset: Dataset,
) -> None:
    rng = np.random.default_rng(0)
    users = np.arange(small_dataset.n_users)
    items = np.stack([rng.choice(small_dataset.n_items, 30, replace=False) for _ in users])
    candidates = Candidates(users, items, rng.random(items.shape).astype(np.float32))
    alphas = (0.0, 0.4, 1.0)
    once = Counting(small_dataset.n_users, small_dataset.n_items)
    evaluate(FusedRanker(once, candidates, "hybrid", 0.0), small_dataset, (20,), candidates)
    swept = Counting(small_dataset.n_users, small_dataset.n_items)
    best, curve = choose_alpha(swept, small_dataset, candidates, alphas)
    assert swept.calls == once.calls  # not once per α
    for point, alpha in zip(curve, alphas, strict=True):
        fused = FusedRanker(Counting(small_dataset.n_users, small_dataset.n_items), candidates,
                            "hybrid", alpha)  # fmt: skip
        segments = evaluate(fused, small_dataset, (20,), candidates)["segments"]
        assert point["warm"] == segments["warm"]["recall@20"]
        assert point["cold"] == segments["cold"]["recall@20"]
    assert best == max(curve, key=lambda point: point["score"])["alpha"]
