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
from coldrec.eval.protocol import Selection, evaluate
from coldrec.rank.fusion import EvidenceBlend, FusedRanker, choose_fusion
from coldrec.rank.run import pick_label_setting

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


def retrieved(tmp_path: Path, dataset: Dataset) -> None:
    """``dataset`` saved in ``tmp_path/ds`` and a small retrieve run over it in ``tw``
    (with early stopping: it has validation candidates)."""
    dataset.save(tmp_path / "ds")
    retrieve = ["retrieve", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "tw"),
                "--top-m", "60", *settings("model.dim=16", "model.training.epochs=2")]  # fmt: skip
    assert runner.invoke(app, retrieve).exit_code == 0


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
        "model.training.eval_every=1", "alphas=[0.0,0.5,1.0]", "kappas=[0.0,3.0]",
    )  # fmt: skip
    rank = ["rank", "--dataset", str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw")]
    result = runner.invoke(app, [*rank, "--out", str(tmp_path / "hy"), *fast_sas])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "hy" / "metrics-seed0.json").read_text())
    curve = metrics["fusion"]["validation_curve"]
    assert [(p["kappa"], p["alpha"]) for p in curve] == [
        (kappa, alpha) for kappa in (0.0, 3.0) for alpha in (0.0, 0.5, 1.0)]  # fmt: skip
    best = max(curve, key=lambda point: point["score"])
    assert metrics["fusion"]["alpha"] == best["alpha"]
    assert metrics["fusion"]["blend"]["kappa"] == best["kappa"]
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
    retrieved(tmp_path, small_dataset)
    cold = np.flatnonzero(small_dataset.items["cold"].to_numpy())
    users = np.arange(20)
    pd.DataFrame({"user": users, "item": cold[users % len(cold)], "weight": 1.0,
                  "source": "test"}).to_parquet(tmp_path / "edges.parquet")  # fmt: skip
    rank = ["rank", "--dataset", str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw"),
            "--edges", str(tmp_path / "edges.parquet"), "--out", str(tmp_path / "r"),
            *settings("model.dim=16", "model.n_negatives=10", "model.training.epochs=3",
                      "model.training.eval_every=1", "alphas=[0.0,0.5,1.0]",
                      "label_weights=[0.1,3.0]", "edge_caps=[1,null]")]  # fmt: skip
    result = runner.invoke(app, rank)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics-seed0.json").read_text())
    points = metrics["label_settings"]["validation"]
    assert [(p["weight"], p["edge_cap"]) for p in points] == [
        (0.0, None), (0.1, 1), (0.1, None), (3.0, 1), (3.0, None)]  # fmt: skip
    floors = {s: points[0][s] * 0.98 for s in ("warm", "cold")}  # the guard, default 2%
    assert metrics["label_settings"]["guard"] == pytest.approx({"tolerance": 0.02, **floors})
    admitted = [p for p in points if all(p[s] >= floors[s] for s in floors)]
    assert [p["admitted"] for p in points] == [p in admitted for p in points]
    best = max(admitted, key=lambda point: point["score"])
    assert metrics["label_settings"]["chosen"] == {"weight": best["weight"],
                                                   "edge_cap": best["edge_cap"]}  # fmt: skip
    # the final model is the chosen weight's: its validation training, α and epochs
    assert metrics["fusion"]["alpha"] == best["alpha"]
    assert metrics["training"]["validation"]["best_epoch"] == best["epochs"]
    assert metrics["training"]["final"]["epochs_run"] == max(1, best["epochs"])
    result = runner.invoke(app, [*rank[:5], *rank[9:], "--out", str(tmp_path / "none")])
    assert result.exit_code == 2 and "give edges or triplets" in result.stderr


def test_label_guard_admits_only_settings_no_worse_than_no_labels() -> None:
    points = [
        {"warm": 0.040, "cold": 0.050},  # no labels: floors 0.036 and 0.045 at 10%
        {"warm": 0.030, "cold": 0.080},  # best mean, but warm below the floor
        {"warm": 0.041, "cold": 0.046},  # admitted, mean 0.0435 < 0.045 of no labels
        {"warm": 0.037, "cold": 0.055},
    ]  # admitted, best admitted mean 0.046
    best, guard = pick_label_setting(points, 0.1, Selection())
    assert best == 3 and guard == pytest.approx({"tolerance": 0.1, "warm": 0.036, "cold": 0.045})
    assert [p["admitted"] for p in points] == [True, False, True, True]
    assert pick_label_setting(points[:3], 0.1, Selection())[0] == 0  # nothing better passes
    assert pick_label_setting(points, None, Selection()) == (1, {})  # no guard: the mean
    # maximising warm with cold >= 0.05 among admitted: only no labels and the last pass
    assert pick_label_setting(points, 0.1, Selection(maximise="warm", floor=0.05))[0] == 0


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
    choice = choose_fusion(swept, small_dataset, candidates, alphas)
    curve = choice.curve
    assert swept.calls == once.calls  # not once per α
    for point, alpha in zip(curve, alphas, strict=True):
        fused = FusedRanker(Counting(small_dataset.n_users, small_dataset.n_items), candidates,
                            "hybrid", alpha)  # fmt: skip
        segments = evaluate(fused, small_dataset, (20,), candidates)["segments"]
        assert point["warm"] == segments["warm"]["recall@20"]
        assert point["cold"] == segments["cold"]["recall@20"]
    assert choice.alpha == max(curve, key=lambda point: point["score"])["alpha"]


class WithEvidence(Fixed):
    def __init__(self, scores: np.ndarray, interactions: np.ndarray, label_rows: np.ndarray):
        super().__init__(scores)
        self.interactions, self.label_rows = interactions, label_rows

    def evidence(self, label_share: float) -> np.ndarray:
        return (self.interactions + label_share * self.label_rows).astype(np.float32)


def test_evidence_blend_moves_from_the_content_path_to_the_ranker_as_evidence_grows() -> None:
    # items 0..3: no evidence, 1 interaction, 10 interactions, only 5 label rows
    candidates = Candidates(np.array([0]), np.array([[0, 1, 2, 3]]),
                            np.array([[0.0, 1.0, 2.0, 4.0]], dtype=np.float32))  # fmt: skip
    ranker = WithEvidence(np.array([[4.0, 0.0, 2.0, 3.0]], dtype=np.float32),
                          np.array([0, 1, 10, 0]), np.array([0, 0, 0, 5]))  # fmt: skip
    items = candidates.for_users(np.array([0]))
    tw = np.array([0.0, 0.25, 0.5, 1.0])  # min-max of 0, 1, 2, 4
    sas = np.array([1.0, 0.0, 0.5, 0.75])  # min-max of 4, 0, 2, 3
    alpha, kappa = 0.6, 2.0
    w = np.array([0 / 2, 1 / 3, 10 / 12, 0.5 / 2.5])  # e/(e+κ), a label row counting 0.1
    fused = FusedRanker(ranker, candidates, "hybrid", alpha, EvidenceBlend(kappa, 0.1))
    got = fused.score(np.array([0]), items)[0]
    expected = alpha * (w * sas + (1 - w) * tw) + (1 - alpha) * tw
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0] == pytest.approx(tw[0])  # no evidence: the content path alone
    # κ = 0 is the binary fusion: every scored item takes the ranker's score
    binary = FusedRanker(ranker, candidates, "hybrid", alpha, EvidenceBlend(0.0))
    np.testing.assert_allclose(binary.score(np.array([0]), items)[0],
                               alpha * sas + (1 - alpha) * tw, atol=1e-6)  # fmt: skip
    # a label-only item counts less than real interactions: 5 rows are 0.5 of one
    assert w[3] < w[1]


def test_selection_with_a_floor_prefers_points_that_meet_it() -> None:
    points = [(0.05, 0.01), (0.04, 0.035), (0.03, 0.04)]  # (warm, cold); means .03 .0375 .035
    mean = Selection()
    assert max(points, key=lambda p: mean.key(*p)) == (0.04, 0.035)
    warm = Selection(maximise="warm", floor=0.03)
    assert max(points, key=lambda p: warm.key(*p)) == (0.04, 0.035)
    assert max(points, key=lambda p: Selection(maximise="warm").key(*p)) == (0.05, 0.01)
    cold = Selection(maximise="cold", floor=0.045)
    assert max(points, key=lambda p: cold.key(*p)) == (0.05, 0.01)
    unreachable = Selection(maximise="warm", floor=0.9)  # nobody meets it: nearest wins
    assert max(points, key=lambda p: unreachable.key(*p)) == (0.03, 0.04)


def test_transfer_k_and_tau_are_the_argmax_of_the_recorded_validation_grid(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    retrieved(tmp_path, small_dataset)
    rank = ["rank", "--dataset", str(tmp_path / "ds"), "--candidates", str(tmp_path / "tw"),
            "--out", str(tmp_path / "r"),
            *settings("model.dim=16", "model.n_negatives=10", "model.training.epochs=2",
                      "model.training.eval_every=1", "alphas=[0.0,1.0]", "kappas=[0.0]",
                      "model.delta.map=pca", "model.transfer.k=10",
                      "transfer_grid.k=[2,20]", "transfer_grid.tau=[0.1,0.6,0.95]")]  # fmt: skip
    result = runner.invoke(app, rank)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics-seed0.json").read_text())
    grid = metrics["transfer_choice"]["grid"]
    assert [(p["k"], p["tau"]) for p in grid] == [
        (k, tau) for k in (2, 20) for tau in (0.1, 0.6, 0.95)]  # fmt: skip
    assert len({p["mean_gate"] for p in grid}) > 1  # the pairs differ where it matters
    best = max(grid, key=lambda point: point["score"])
    assert metrics["transfer_choice"]["chosen"] == {"k": best["k"], "tau": best["tau"]}
    saved = json.loads((tmp_path / "r" / "model" / "model.json").read_text())
    assert saved["config"]["transfer"]["k"] == best["k"]
    assert saved["config"]["transfer"]["tau"] == best["tau"]
