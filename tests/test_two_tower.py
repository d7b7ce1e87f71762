"""Two-Tower: the loss by hand, the cold-item export (eq. 4.4), determinism, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coldrec.data import Dataset
from coldrec.encode import TextEncoder
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig, in_batch_softmax_loss
from coldrec.training.loop import TrainingConfig
from coldrec.training.runs import seed_everything

FAST = TwoTowerConfig(
    dim=16, early_stopping=False, training=TrainingConfig(epochs=3, batch_size=256)
)


def test_loss_of_a_hand_made_batch() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    item_ids = torch.tensor([7, 3, 7])  # rows 0 and 2 share item 7
    weights = torch.tensor([1.0, 0.3, 1.0])
    got = in_batch_softmax_loss(users, items, item_ids, weights, 0.5).item()

    logits = users.numpy() @ items.numpy().T / 0.5
    logits[0, 2] = logits[2, 0] = -np.inf  # the same item is not a negative of itself
    rows = [np.log(np.exp(row).sum()) - row[r] for r, row in enumerate(logits)]
    expected = (1.0 * rows[0] + 0.3 * rows[1] + 1.0 * rows[2]) / 2.3
    assert got == pytest.approx(expected, rel=1e-6)


def test_a_shard_of_rows_is_its_part_of_the_hand_made_loss() -> None:
    """Data-parallel training: rows 2 (the shard) against every column give the third
    row's weighted term of the batch's mean; the two shards' parts sum to the whole."""
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    item_ids, weights = torch.tensor([7, 3, 7]), torch.tensor([1.0, 0.3, 1.0])
    logits = users.numpy() @ items.numpy().T / 0.5
    logits[0, 2] = logits[2, 0] = -np.inf
    rows = [np.log(np.exp(row).sum()) - row[r] for r, row in enumerate(logits)]
    tail = in_batch_softmax_loss(users[2:], items, item_ids, weights, 0.5, rows=slice(2, 3))
    assert tail.item() == pytest.approx(1.0 * rows[2] / 2.3, rel=1e-6)
    head = in_batch_softmax_loss(users[:2], items, item_ids, weights, 0.5, rows=slice(0, 2))
    whole = in_batch_softmax_loss(users, items, item_ids, weights, 0.5)
    assert (head + tail).item() == pytest.approx(whole.item(), rel=1e-6)


def test_logq_correction_subtracts_log_share_from_every_logit() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    ids, weights = torch.tensor([1, 2]), torch.tensor([1.0, 1.0])
    log_q = torch.log(torch.tensor([0.5, 0.1]))
    got = in_batch_softmax_loss(users, items, ids, weights, 1.0, log_q).item()
    logits = (users @ items.T).numpy() - log_q.numpy()[None, :]
    expected = np.mean([np.log(np.exp(row).sum()) - row[r] for r, row in enumerate(logits)])
    assert got == pytest.approx(expected, rel=1e-6)


def test_cold_items_export_their_normalised_content_projection(small_dataset: Dataset) -> None:
    seed_everything(0)
    model = TwoTower(FAST).fit(small_dataset)
    net = model.net
    content = torch.from_numpy(TextEncoder().encode(small_dataset.item_text))
    with torch.no_grad():
        projected = torch.nn.functional.normalize(net.item_content(content), dim=-1).numpy()
        with_id = torch.nn.functional.normalize(
            net.item_id.weight + net.item_content(content), dim=-1
        ).numpy()
    cold = small_dataset.cold_items
    assert len(cold) > 0
    np.testing.assert_allclose(model.item_vectors[cold], projected[cold], atol=1e-6)
    warm = np.setdiff1d(np.arange(small_dataset.n_items), cold)[:20]
    np.testing.assert_allclose(model.item_vectors[warm], with_id[warm], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(model.item_vectors, axis=1), 1.0, atol=1e-5)


def test_same_seed_same_vectors(small_dataset: Dataset) -> None:
    runs = []
    for seed in (3, 3, 4):
        seed_everything(seed)
        runs.append(TwoTower(FAST).fit(small_dataset))
    np.testing.assert_array_equal(runs[0].item_vectors, runs[1].item_vectors)
    np.testing.assert_array_equal(runs[0].user_vectors, runs[1].user_vectors)
    assert not np.array_equal(runs[0].item_vectors, runs[2].item_vectors)


def test_training_lowers_the_loss_and_early_stopping_picks_the_epochs(
    small_dataset: Dataset,
) -> None:
    seed_everything(0)
    config = FAST.model_copy(update={
        "early_stopping": True,
        "training": TrainingConfig(epochs=6, batch_size=256, eval_every=1, patience=2),
    })  # fmt: skip
    model = TwoTower(config).fit(small_dataset)
    validation, final = model.training_log.validation, model.training_log.final
    assert validation.losses[-1] < validation.losses[0]
    assert set(validation.scores) == set(range(1, validation.epochs_run + 1))
    assert validation.best_score == max(validation.scores.values())
    assert final.epochs_run == validation.best_epoch  # refit for the chosen number of epochs
