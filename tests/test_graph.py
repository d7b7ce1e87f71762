"""Graph rankers: the normalised adjacency and LightGCN's propagation on a hand-worked toy
graph, XSimGCL's noise, BPR negatives, the text map of cold items, learning, saving."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from coldrec.data import Dataset
from coldrec.graph import GraphRecommender, LightGCNConfig, XSimGCLConfig
from coldrec.graph.adjacency import normalised_adjacency, spread
from coldrec.graph.lightgcn import GraphNet, RankLevel, _dominant, _Trainer
from coldrec.graph.losses import adaptive_info_nce, in_batch_adaptive_info_nce, labpr, same_group


def test_the_adjacency_of_a_three_user_toy_graph_is_normalised_by_hand() -> None:
    # users 0, 1, 2; items 0, 1: edges u0-i0, u1-i0, u1-i1, u2-i1 (u1-i0 given twice)
    adjacency = normalised_adjacency(np.array([0, 1, 1, 1, 2]), np.array([0, 0, 0, 1, 1]), 3, 2)
    dense = adjacency.to_dense().numpy()
    # degrees: u0 1, u1 2, u2 1, i0 2, i1 2; entry = 1 / sqrt(d_u d_i)
    expected = np.zeros((5, 5))
    for u, i, value in [(0, 0, 1 / math.sqrt(2)), (1, 0, 1 / 2), (1, 1, 1 / 2),
                        (2, 1, 1 / math.sqrt(2))]:  # fmt: skip
        expected[u, 3 + i] = expected[3 + i, u] = value
    assert dense == pytest.approx(expected)


def test_spread_multiplies_by_the_adjacency_and_back_propagates_its_transpose() -> None:
    adjacency = normalised_adjacency(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), 3, 2)
    a = adjacency.to_dense()
    assert torch.equal(a, a.T)
    x = torch.randn(5, 4, requires_grad=True)
    weights = torch.randn(5, 4)
    (spread(adjacency, spread(adjacency, x)) * weights).sum().backward()
    expected = torch.autograd.grad(((a @ a @ x) * weights).sum(), x)[0]
    assert x.grad is not None and torch.allclose(x.grad, expected, atol=1e-6)


def test_lightgcn_averages_the_propagated_layers_and_xsimgcl_leaves_out_the_ego() -> None:
    adjacency = normalised_adjacency(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), 3, 2)
    a = adjacency.to_dense()
    net = GraphNet(3, 2, LightGCNConfig(dim=4, n_layers=2))
    e0 = net.ego.weight.detach()
    final, _ = net.propagate(adjacency)
    assert final.detach() == pytest.approx(((e0 + a @ e0 + a @ a @ e0) / 3).numpy(), abs=1e-6)
    xsim = GraphNet(3, 2, XSimGCLConfig(dim=4, n_layers=2, cl_layer=1))
    with torch.no_grad():
        xsim.ego.weight.copy_(e0)
    final, layer = xsim.propagate(adjacency)  # no generator: no noise
    assert final.detach() == pytest.approx(((a @ e0 + a @ a @ e0) / 2).numpy(), abs=1e-6)
    assert layer.detach() == pytest.approx((a @ e0).numpy(), abs=1e-6)
    noisy, _ = xsim.propagate(adjacency, torch.Generator().manual_seed(0))
    draws = torch.Generator().manual_seed(0)  # the same uniform draws, layer by layer
    layers, current = [], e0
    for _ in range(2):
        current = a @ current
        unit = torch.rand(current.shape, generator=draws)
        current = current + torch.sign(current) * unit / unit.norm(dim=1, keepdim=True) * 0.2
        layers.append(current)
    assert noisy.detach() == pytest.approx(((layers[0] + layers[1]) / 2).numpy(), abs=1e-6)


def drawn_negatives(
    model: GraphRecommender, dataset: Dataset
) -> tuple[_Trainer, torch.Tensor, torch.Tensor]:
    """A trainer, its training pairs' positives and the negatives it draws for them,
    checked never to be one of the user's own items."""
    trainer = model._start(dataset, torch.Generator().manual_seed(0))
    assert isinstance(trainer, _Trainer)
    pairs = trainer.history.pairs
    users, positives = pairs // dataset.n_items, pairs % dataset.n_items
    drawn = trainer.negatives(users, positives)
    assert not torch.isin(users[:, None] * dataset.n_items + drawn, pairs).any()
    return trainer, positives, drawn


def test_negatives_are_never_the_users_own_items(small_dataset: Dataset) -> None:
    model = GraphRecommender(LightGCNConfig(dim=8))
    _, positives, drawn = drawn_negatives(model, small_dataset)
    assert drawn.shape == (len(positives), 1)
    assert model._linked[drawn.numpy()].all()  # only items with edges


@pytest.fixture(scope="module")
def lightgcn(small_dataset: Dataset) -> GraphRecommender:
    config = LightGCNConfig(dim=16, training={"epochs": 30, "eval_every": 5, "lr": 0.01})
    return GraphRecommender(config).fit(small_dataset, generator=torch.Generator().manual_seed(0))


def test_cold_items_are_the_text_map_of_their_vectors(
    lightgcn: GraphRecommender, small_dataset: Dataset
) -> None:
    cold = small_dataset.cold_items
    assert len(cold) and not lightgcn._linked[cold].any()
    content = lightgcn._content
    assert content is not None
    mapped = lightgcn.new_item_vectors(content[cold])
    assert lightgcn.item_vectors[cold].numpy() == pytest.approx(mapped, abs=1e-5)
    # the map is the ridge solution on the trained items: its normal equations hold
    x = np.hstack([content, np.ones((len(content), 1))])[lightgcn._linked]
    y = lightgcn.item_vectors[lightgcn._linked].numpy()
    w = lightgcn.text_map.numpy()
    residual = x.T @ (x @ w - y) + lightgcn.config.ridge * w
    assert np.abs(residual).max() < 1e-3


def test_lightgcn_ranks_held_out_items_above_chance(
    lightgcn: GraphRecommender, small_dataset: Dataset
) -> None:
    from coldrec.eval.protocol import evaluate

    warm = evaluate(lightgcn, small_dataset, ks=(20,))["segments"]["warm"]["recall@20"]
    chance = 20 / small_dataset.n_items
    assert warm > 2 * chance


def test_a_saved_graph_model_scores_the_same(lightgcn: GraphRecommender, tmp_path: Path) -> None:
    lightgcn.save(tmp_path / "model")
    loaded = GraphRecommender.load(tmp_path / "model")
    users = np.arange(10)
    assert np.array_equal(loaded.score(users), lightgcn.score(users))


def test_labpr_weighs_hard_negatives_on_a_hand_made_case() -> None:
    positive = torch.tensor([2.0, 0.5])
    negatives = torch.tensor([[1.0, 3.0], [0.0, 0.5]])
    hard = torch.tensor([[True, False], [False, True]])

    def term(d: float) -> float:  # −log σ(d)
        return math.log(1 + math.exp(-d))

    # weights 3 (hard) and 1: (3·t(1) + t(-1) + t(0.5) + 3·t(0)) / 8
    expected = (3 * term(1.0) + term(-1.0) + term(0.5) + 3 * term(0.0)) / 8
    assert labpr(positive, negatives, hard, 3.0).item() == pytest.approx(expected, rel=1e-6)
    plain = (term(1.0) + term(-1.0) + term(0.5) + term(0.0)) / 4  # w_h = 1: plain BPR
    assert labpr(positive, negatives, hard, 1.0).item() == pytest.approx(plain, rel=1e-6)


def test_adaptive_info_nce_uses_each_temperature_and_the_hard_weight() -> None:
    positive = torch.tensor([0.8])
    negatives = torch.tensor([[0.5, 0.2]])
    hard = torch.tensor([[True, False]])
    # τ_p 0.5, τ_h 0.1 (weight 2), τ_e 0.2
    top = math.exp(0.8 / 0.5)
    expected = -math.log(top / (top + 2 * math.exp(0.5 / 0.1) + math.exp(0.2 / 0.2)))
    got = adaptive_info_nce(positive, negatives, hard, 0.5, 0.1, 0.2, 2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="tau_hard < tau_easy <= tau_positive"):
        adaptive_info_nce(positive, negatives, hard, 0.5, 0.3, 0.2, 2.0)


def test_in_batch_adaptive_info_nce_takes_the_other_rows_as_negatives() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])  # cosines read off by hand
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    groups = torch.tensor([0, 0, -1])  # rows 0 and 1 share a group; row 2 has none
    root = math.sqrt(0.5)
    cosine = [[1.0, root, 0.0], [0.0, root, -1.0], [0.6, 0.7 * root * 2, -0.8]]
    tau_p, tau_h, tau_e, w_h = 0.5, 0.1, 0.2, 2.0

    def anchor(k: int) -> float:
        top = math.exp(cosine[k][k] / tau_p)
        rest = sum(w_h * math.exp(cosine[k][j] / tau_h) if groups[k] >= 0 and groups[j] == groups[k]
                   else math.exp(cosine[k][j] / tau_e) for j in range(3) if j != k)  # fmt: skip
        return -math.log(top / (top + rest))

    expected = sum(anchor(k) for k in range(3)) / 3
    got = in_batch_adaptive_info_nce(a, b, groups, tau_p, tau_h, tau_e, w_h)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_hard_and_easy_negatives_split_by_group_on_a_hand_made_grouping() -> None:
    anchors = torch.tensor([0, 1, -1])
    others = torch.tensor([[0, 1], [1, 1], [-1, 0]])
    assert same_group(anchors, others).tolist() == [[True, False], [True, True], [False, False]]
    # users 0, 1, 2 with item groups: user 0 → 3, 3, 5 (3); user 1 → 5, 2 (tie: 2); user 2 none
    users = np.array([0, 0, 0, 1, 1, 2])
    groups = np.array([3, 3, 5, 5, 2, -1])
    assert _dominant(users, groups, 4).tolist() == [3, 2, -1, -1]


def test_the_rank_level_draws_hard_negatives_from_the_positives_group(
    small_dataset: Dataset,
) -> None:
    level = RankLevel(n_negatives=4, hard_share=0.5)
    model = GraphRecommender(XSimGCLConfig(dim=8, rank_level=level))
    trainer, positives, drawn = drawn_negatives(model, small_dataset)
    assert drawn.shape == (len(positives), 4)
    hard = same_group(trainer.item_group[positives], trainer.item_group[drawn])
    # the first two from the leaf (unless it has no other item, or one was the user's own
    # and was redrawn uniformly), the last two uniform
    from_leaf, uniform = hard[:, :2].float().mean(), hard[:, 2:].float().mean()
    assert from_leaf > 0.6 and from_leaf > 3 * uniform
    pairs = trainer.history.pairs[:256]
    loss = trainer.batch_loss(pairs // small_dataset.n_items, pairs % small_dataset.n_items)
    assert torch.isfinite(loss) and loss.requires_grad
