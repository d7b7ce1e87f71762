"""Delta item vectors and KNN residual transfer with a similarity gate, on hand-made
vectors with values worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from coldrec.data import Dataset, PrepareConfig, prepare
from coldrec.eval import evaluate
from coldrec.experiment.evaluate import EvaluateConfig, run_evaluation
from coldrec.rank.items import DeltaConfig, DeltaItems
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.transfer import TransferConfig, gate_value, knn_gate_transfer
from coldrec.training.loop import TrainingConfig
from coldrec.training.runs import seed_everything
from tests.helpers import frames_of


def unit(*rows: list[float]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_gate_at_chosen_similarities_and_the_hard_threshold() -> None:
    config = TransferConfig()  # τ 0.25, β 20, m_hard 0.05
    m = np.array([0.25, 0.35, 0.06, 0.0499, 1.0])
    expected = [0.5, 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(3.8)), 0.0, 1 / (1 + np.exp(-15))]
    np.testing.assert_allclose(gate_value(m, config), expected, rtol=1e-6)


def test_neighbour_weights_are_a_softmax_of_cosines_that_sums_to_one() -> None:
    # items 0, 1 warm with residuals e1, e2; item 2 cold, cosine 0.8 to item 0 and 0.6 to 1
    content = np.array([[1, 0, 0], [0, 1, 0], [0.8, 0.6, 0]], dtype=np.float32)
    residuals = np.array([[1, 0], [0, 1], [0, 0]], dtype=np.float32)
    cold, warm = np.array([False, False, True]), np.array([True, True, False])
    moved = knn_gate_transfer(residuals, content, cold, warm, TransferConfig(k=2))
    w0 = np.exp(0.8 / 0.07) / (np.exp(0.8 / 0.07) + np.exp(0.6 / 0.07))
    gate = 1 / (1 + np.exp(-20 * (0.8 - 0.25)))
    np.testing.assert_allclose(moved.residuals[2], gate * np.array([w0, 1 - w0]), rtol=1e-5)
    assert moved.residuals[2].sum() == pytest.approx(gate, rel=1e-5)  # weights sum to one
    np.testing.assert_array_equal(moved.residuals[:2], residuals[:2])  # warm rows untouched
    assert moved.max_similarity[0] == pytest.approx(0.8, rel=1e-6)
    assert residuals[2].tolist() == [0, 0]  # the input is not changed


def test_identical_warm_twin_gives_its_residual_and_a_shut_gate_keeps_the_own() -> None:
    content = unit([1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1])
    residuals = np.array([[0.3, -0.2], [0.9, 0.9], [0.0, 0.0], [0.1, 0.4]], dtype=np.float32)
    cold, warm = np.array([False, False, True, True]), np.array([True, True, False, False])
    moved = knn_gate_transfer(residuals, content, cold, warm, TransferConfig(k=1))
    np.testing.assert_allclose(moved.residuals[2], residuals[0], atol=1e-6)  # the twin's Δ
    # item 3 is orthogonal to every warm item: m = 0 < m_hard, the gate is shut
    np.testing.assert_array_equal(moved.residuals[3], residuals[3])
    np.testing.assert_allclose(moved.gates, [1.0, 0.0], atol=1e-6)


def test_half_open_gate_mixes_own_and_neighbour_residuals() -> None:
    cos = 0.25  # exactly τ: g = 0.5
    content = np.array([[1, 0], [cos, np.sqrt(1 - cos**2)]], dtype=np.float32)
    residuals = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    moved = knn_gate_transfer(residuals, content, np.array([False, True]), np.array([True, False]))
    np.testing.assert_allclose(moved.residuals[1], [0.5, 1.0], rtol=1e-5)


def test_an_item_cannot_give_and_receive() -> None:
    with pytest.raises(ValueError, match="both"):
        knn_gate_transfer(np.zeros((1, 2)), unit([1, 0]), np.array([True]), np.array([True]))


def test_delta_items_anchor_unseen_items_in_content_and_bound_the_residual() -> None:
    content = unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0])
    items = DeltaItems(content, 2, extra_tokens=1, config=DeltaConfig(max_norm=0.5))
    weight = items.weight
    assert weight.shape == (1 + 4 + 1, 2)
    assert weight[0].abs().sum() == 0  # padding
    expected = items.map(torch.as_tensor(content))
    torch.testing.assert_close(weight[1:5], expected)  # Δ starts at zero
    with torch.no_grad():
        items.delta[1] = torch.tensor([3.0, 4.0])  # norm 5 → rescaled to 0.5
    torch.testing.assert_close(items.residuals()[1], torch.tensor([0.3, 0.4]))
    pca = DeltaItems(content, 2, 0, DeltaConfig(map="pca"))
    assert [name for name, _ in pca.named_parameters()] == ["delta", "special"]  # map frozen


def test_transfer_needs_delta_vectors() -> None:
    with pytest.raises(ValidationError, match="delta"):
        SASRecConfig(transfer=TransferConfig())


def test_delta_model_scores_cold_items_and_transfer_moves_only_them(
    small_dataset: Dataset,
) -> None:
    config = SASRecConfig(
        dim=16, n_negatives=10, early_stopping=False, delta=DeltaConfig(map="pca"),
        training=TrainingConfig(epochs=2, batch_size=64, lr=1e-3),
    )  # fmt: skip
    seed_everything(0)
    model = config.build().fit(small_dataset)
    scores = model.score(np.arange(5))
    assert np.isfinite(scores).all()  # every item has a content-anchored vector
    assert evaluate(model, small_dataset)["segments"]["cold"]["recall@20"] > 0
    moved = model.transferred(small_dataset, TransferConfig(k=5))
    before, after = model.net.items.delta.detach(), moved.net.items.delta.detach()
    cold = torch.tensor(small_dataset.items["cold"].to_numpy())
    torch.testing.assert_close(before[~cold], after[~cold])
    assert not torch.allclose(before[cold], after[cold])
    assert len(moved.transfer.gates) == int(cold.sum())
    seed_everything(0)
    again = config.model_copy(update={"transfer": TransferConfig(k=5)}).build().fit(small_dataset)
    torch.testing.assert_close(again.net.items.delta.detach(), after)  # the config switch


def test_cold_by_training_frequency() -> None:
    # a: 2 rows before test, b: 1, c: 0 (strict cold); each also in test
    rows = [("u", "a", 1), ("v", "a", 2), ("u", "b", 3), ("w", "x", 4), ("u", "x", 5),
            ("v", "x", 6), ("w", "a", 7), ("v", "b", 8), ("u", "c", 9), ("x", "x", 10)]  # fmt: skip
    strict = prepare(frames_of(rows), PrepareConfig(train_share=0.6))
    names = strict.items["item"].tolist()
    assert [names[i] for i in strict.cold_items] == ["c"]
    frequency = prepare(frames_of(rows), PrepareConfig(train_share=0.6, cold_max_count=1))
    assert [names[i] for i in frequency.cold_items] == ["b", "c"]


def test_metrics_file_reports_the_transfer(small_dataset: Dataset, tmp_path: Path) -> None:
    small_dataset.save(tmp_path / "ds")
    model = SASRecConfig(
        dim=8, n_negatives=5, early_stopping=False, delta=DeltaConfig(map="pca"),
        transfer=TransferConfig(k=3), training=TrainingConfig(epochs=1, batch_size=64),
    )  # fmt: skip
    result = run_evaluation(EvaluateConfig(model=model), tmp_path / "ds", tmp_path / "r")
    cold = int(small_dataset.items["cold"].sum())
    assert result["transfer"]["cold_items"] == cold
    assert 0 <= result["transfer"]["mean_gate"] <= 1
    assert "transfer" not in run_evaluation(
        EvaluateConfig(model={"kind": "popularity"}), tmp_path / "ds", tmp_path / "p"
    )


def test_a_second_transfer_starts_from_the_trained_residuals(small_dataset: Dataset) -> None:
    config = SASRecConfig(
        dim=16, n_negatives=10, early_stopping=False, delta=DeltaConfig(map="pca"),
        transfer=TransferConfig(k=3, tau=0.9), training=TrainingConfig(epochs=1, batch_size=64),
    )  # fmt: skip
    seed_everything(0)
    model = config.build().fit(small_dataset)
    wide = TransferConfig(k=10, tau=0.25)
    direct = config.model_copy(update={"transfer": wide})
    seed_everything(0)
    expected = direct.build().fit(small_dataset).net.items.delta.detach()
    moved = model.transferred(small_dataset, wide)
    torch.testing.assert_close(moved.net.items.delta.detach(), expected)  # not compounded
    assert moved.config.transfer == wide  # items added later (serving) take it too
