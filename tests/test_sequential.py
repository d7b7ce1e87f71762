"""Sequential models (SASRec, GRU4Rec, BERT4Rec) and the ranking losses: causality,
masking, losses by hand, cold items, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coldrec.data import Dataset
from coldrec.errors import ConfigError
from coldrec.eval import evaluate
from coldrec.rank.batching import length_batches, padded_sequences, target_weights
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.losses import (
    full_softmax_loss,
    pairwise_loss,
    sampled_softmax_loss,
    sequence_softmax_loss,
)
from coldrec.rank.network import SequentialConfig
from coldrec.rank.sasrec import SASRecConfig, SASRecNet
from coldrec.retrieval.two_tower import TwoTowerConfig
from coldrec.training.loop import TrainingConfig
from coldrec.training.runs import seed_everything

FAST = SASRecConfig(
    dim=16, n_negatives=10, early_stopping=False,
    training=TrainingConfig(epochs=3, batch_size=64, lr=1e-3),
)  # fmt: skip


KINDS = {
    "sasrec": FAST,
    "gru4rec": GRU4RecConfig(**FAST.model_dump(exclude={"kind", "n_layers", "n_heads"})),
    "bert4rec": BERT4RecConfig(**FAST.model_dump(exclude={"kind"}), mask_prob=0.3),
}


@pytest.mark.parametrize(
    "config", [SASRecConfig(dim=16, n_heads=2, max_len=8), GRU4RecConfig(dim=16, max_len=8)]
)
def test_output_at_a_step_ignores_later_items(config: SequentialConfig) -> None:
    torch.manual_seed(0)
    net = config.network(30).eval()
    sequence = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 2]])
    changed = sequence.clone()
    changed[0, 5:] = torch.tensor([11, 12, 13])
    with torch.no_grad():
        before, after = net(sequence), net(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])
    assert torch.isfinite(before).all()  # padded positions do not produce NaN


def test_bert4rec_sees_both_directions() -> None:
    torch.manual_seed(0)
    net = BERT4RecConfig(dim=16, n_heads=2, max_len=8).network(30).eval()
    sequence = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 2]])
    changed = sequence.clone()
    changed[0, 6:] = torch.tensor([12, 13])
    with torch.no_grad():
        before, after = net(sequence), net(changed)
    assert not torch.allclose(before[:, 2:6], after[:, 2:6])  # earlier steps see later items
    assert torch.isfinite(before).all()


def test_training_examples_by_hand() -> None:
    sequences = torch.tensor([[0, 0, 4, 5, 6, 8], [3, 4, 5, 6, 7, 9]])
    generator = torch.Generator().manual_seed(0)
    inputs, targets = SASRecNet(10, SASRecConfig(dim=8, max_len=5)).examples(sequences, generator)
    assert inputs.tolist() == [[0, 0, 4, 5, 6], [3, 4, 5, 6, 7]]
    assert targets.tolist() == [[0, 0, 5, 6, 8], [4, 5, 6, 7, 9]]
    every = BERT4RecConfig(dim=8, max_len=5, mask_prob=1.0).network(10)  # [mask] = 11
    inputs, targets = every.examples(sequences, generator)
    assert inputs.tolist() == [[0, 11, 11, 11, 11], [11] * 5]  # padding is never masked
    assert targets.tolist() == [[0, 4, 5, 6, 8], [4, 5, 6, 7, 9]]
    rare = BERT4RecConfig(dim=8, max_len=5, mask_prob=1e-9).network(10)
    inputs, targets = rare.examples(sequences, generator)
    assert inputs.tolist() == [[0, 4, 5, 6, 11], [4, 5, 6, 7, 11]]  # at least the last one
    assert targets.tolist() == [[0, 0, 0, 0, 8], [0, 0, 0, 0, 9]]


def test_padding_is_left_and_shifted() -> None:
    got = padded_sequences([np.array([4, 0, 2]), np.array([], dtype=int), np.arange(6)], 4)
    assert got.tolist() == [[0, 5, 1, 3], [0, 0, 0, 0], [3, 4, 5, 6]]


def test_sampled_softmax_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    context = torch.tensor([[2.0, 0.5], [0.0, 1.0]])
    positives, negatives = torch.tensor([1, 2]), torch.tensor([[2, 3], [1, 3]])
    weights = torch.tensor([1.0, 3.0])
    got = sampled_softmax_loss(context, positives, negatives, emb, weights).item()
    rows = [[2.0, 0.5, 2.5], [1.0, 0.0, 1.0]]  # positive first, then the negatives
    losses = [np.log(np.exp(r).sum()) - r[0] for r in rows]
    assert got == pytest.approx((1 * losses[0] + 3 * losses[1]) / 4, rel=1e-6)


def test_full_softmax_and_pairwise_by_hand() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    context = torch.tensor([[1.0, 2.0]])
    expected = F.cross_entropy(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([1])).item()
    assert full_softmax_loss(context, torch.tensor([1]), emb).item() == pytest.approx(expected)
    got = pairwise_loss(
        torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.5])
    )
    expected = (np.log1p(np.exp(-1.0)) + 0.5 * np.log1p(np.exp(1.0))) / 1.5
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_pairwise_loss_pushes_the_positive_above_the_negative() -> None:
    scores = torch.tensor([0.0, 0.0], requires_grad=True)
    pairwise_loss(scores[:1], scores[1:]).backward()
    assert scores.grad[0] < 0 < scores.grad[1]  # descent raises s⁺ and lowers s⁻


@pytest.mark.parametrize("kind", KINDS)
def test_model_trains_scores_and_leaves_cold_items_unranked(
    small_dataset: Dataset, kind: str
) -> None:
    seed_everything(0)
    model = KINDS[kind].build().fit(small_dataset)
    losses = model.training_log.final.losses
    assert losses[-1] < losses[0]
    scores = model.score(np.arange(5))
    assert np.isnan(scores[:, small_dataset.cold_items]).all()
    warm = np.setdiff1d(np.arange(small_dataset.n_items), small_dataset.cold_items)
    assert np.isfinite(scores[:, warm]).all()
    result = evaluate(model, small_dataset)
    assert result["segments"]["cold"]["recall@20"] == 0.0
    seed_everything(0)
    again = evaluate(KINDS[kind].build().fit(small_dataset), small_dataset)
    assert again["segments"] == result["segments"]  # same seed, same metrics


def test_full_softmax_setting_trains(small_dataset: Dataset) -> None:
    seed_everything(1)
    model = FAST.model_copy(update={"loss": "full"}).build().fit(small_dataset)
    assert model.training_log.final.losses[-1] < model.training_log.final.losses[0]


@pytest.mark.parametrize("config", [SASRecConfig, TwoTowerConfig])
def test_partial_training_settings_keep_the_model_defaults(config: type) -> None:
    # `--set model.training.lr=…` must not reset batch size, eval_every and patience
    default = config().training
    got = config.model_validate({"training": {"lr": 1e-3}}).training
    assert got == default.model_copy(update={"lr": 1e-3})
    assert default != TrainingConfig()  # the model has defaults of its own to keep


def test_sequence_softmax_shares_each_sequences_negatives() -> None:
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    hidden = torch.tensor([[[2.0, 0.5], [0.0, 1.0]], [[1.0, 1.0], [3.0, 3.0]]])
    targets = torch.tensor([[1, 2], [0, 3]])  # 0: no target at that position
    negatives = torch.tensor([[2, 3], [1, 2]])
    got = sequence_softmax_loss(hidden, targets, negatives, emb).item()
    rows = [[2.0, 0.5, 2.5], [1.0, 1.0, 1.0], [6.0, 3.0, 3.0]]  # positive, then negatives
    expected = np.mean([np.log(np.exp(r).sum()) - r[0] for r in rows])
    assert got == pytest.approx(expected, rel=1e-6)
    flat = sampled_softmax_loss(hidden[targets > 0], targets[targets > 0],
                                negatives[[0, 0, 1]], emb).item()  # fmt: skip
    assert got == pytest.approx(flat, rel=1e-6)


def test_length_batches_hold_every_row_once_and_group_lengths() -> None:
    lengths = torch.as_tensor(np.random.default_rng(0).integers(2, 52, size=1000))
    batches = length_batches(lengths, 64, torch.Generator().manual_seed(1))
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spans = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert max(spans) <= 4  # sorted by length (~20 rows a length): near-equal lengths
    again = length_batches(lengths, 64, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))


def test_weighted_batch_means_count_every_target_of_the_epoch_alike() -> None:
    # Three batches with 2, 6 and 1 targets (0 = no target); per-target losses by hand.
    targets = [torch.tensor([[0, 3], [0, 4]]), torch.tensor([[1, 2, 3], [4, 5, 6]]),
               torch.tensor([[0, 0, 7]])]  # fmt: skip
    losses = [[1.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0, 8.0], [5.0]]
    weights = target_weights(targets)
    assert weights == pytest.approx([2 / 3, 2.0, 1 / 3])  # count / (9 targets / 3 batches)
    epoch = sum(w * np.mean(batch) for w, batch in zip(weights, losses, strict=True))
    # the epoch's summed objective is the mean over all 9 targets, once per batch
    assert epoch == pytest.approx(3 * 27.0 / 9)
    assert sum(np.mean(batch) for batch in losses) != pytest.approx(3 * 27.0 / 9)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_dropping_padding_columns_changes_no_attention_output(kind: str) -> None:
    torch.manual_seed(0)
    net = KINDS[kind].model_copy(update={"max_len": 12}).network(30).eval()
    history = padded_sequences([np.array([3, 7, 1]), np.array([5, 2, 9, 9, 4])], 12)
    trimmed = net.fit_width(history)
    assert trimmed.shape == (2, 6)  # the longest row (5 items) plus one padding column
    with torch.no_grad():
        assert torch.allclose(net.context(trimmed), net.context(history), atol=1e-5)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec", "gru4rec"])
def test_contexts_in_length_groups_equal_one_call_in_row_order(kind: str) -> None:
    torch.manual_seed(0)
    net = KINDS[kind].model_copy(update={"max_len": 12}).network(30).eval()
    rng = np.random.default_rng(3)
    history = padded_sequences([rng.integers(0, 30, size=n) for n in (1, 9, 2, 12, 4, 3, 7)], 12)
    with torch.no_grad():
        grouped = net.contexts(history, parts=3)
        assert torch.allclose(grouped, net.context(history), atol=1e-5)
        assert torch.allclose(net.contexts(history[:2], parts=4), net.context(history[:2]),
                              atol=1e-5)  # fmt: skip


def test_a_gru_keeps_its_padding_columns() -> None:
    net = KINDS["gru4rec"].network(30)
    history = padded_sequences([np.array([3, 7, 1])], 12)
    assert net.fit_width(history).shape == (1, 12)  # a GRU steps through the padding


def test_validate_then_fit_equals_fit_and_trains_the_validation_view_once(
    small_dataset: Dataset,
) -> None:
    config = FAST.model_copy(update={"early_stopping": True})
    seed_everything(0)
    plain = config.build().fit(small_dataset)
    seed_everything(0)
    staged = config.build().validate(small_dataset)
    validation_log = staged.training_log.validation
    staged.fit(small_dataset)
    assert staged.training_log.validation is validation_log  # reused, not retrained
    assert staged.training_log.final.epochs_run == max(1, validation_log.best_epoch)
    users = np.arange(small_dataset.n_users)
    np.testing.assert_array_equal(staged.score(users), plain.score(users))
    with pytest.raises(ConfigError, match="early_stopping"):
        FAST.build().validate(small_dataset)


@pytest.mark.parametrize("config", [SASRecConfig(), BERT4RecConfig()])
def test_position_vectors_start_at_the_item_vectors_scale(config: SequentialConfig) -> None:
    torch.manual_seed(0)
    net = config.network(5000)
    item_scale = float(net.item_vectors().detach().std()) * np.sqrt(
        config.dim
    )  # as the input adds them
    position_scale = float(net.positions.weight.detach().std())
    assert position_scale == pytest.approx(0.02, rel=0.1)
    assert position_scale < item_scale  # the item, not its position, dominates the input
