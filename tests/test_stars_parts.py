"""STARS: the popularity prior, subclass-aware negatives, the round-robin interleave of
two lists, and the model's scoring (cold items, context offset, modes, saving)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from coldrec.data import Dataset
from coldrec.rank.interleave import round_robin
from coldrec.rank.items import DeltaItems
from coldrec.rank.prior import popularity_prior
from coldrec.rank.stars import StarsConfig, StarsRecommender
from coldrec.rank.transfer import TransferConfig
from coldrec.training.negatives import SubclassSampler


def test_prior_on_hand_counts() -> None:
    # counts 0, 1, 3 with smoothing 1: π = (1, 2, 4) / (4 + 3) = 1/7, 2/7, 4/7
    prior = popularity_prior(np.array([0, 1, 3]), gamma=0.5)
    expected = [-0.5 * math.log(share) for share in (1 / 7, 2 / 7, 4 / 7)]
    assert prior == pytest.approx(expected, rel=1e-6)
    assert prior[0] > prior[1] > prior[2]  # the cold item gets the largest prior
    assert popularity_prior(np.array([0, 1, 3]), gamma=0.0) == pytest.approx([0, 0, 0])
    with pytest.raises(ValueError, match="gamma"):
        popularity_prior(np.array([1, 2]), gamma=-1)


def test_subclass_negatives_come_from_the_leaf_and_never_equal_the_positive() -> None:
    # leaves: 0 → items 0, 1, 2; 1 → item 3 alone; 2 → items 4, 5; item 6 has no leaf
    leaf = np.array([0, 0, 0, 1, 2, 2, -1])
    sampler = SubclassSampler(leaf, pool=np.arange(7), share=1.0)
    generator = torch.Generator().manual_seed(0)
    positives = torch.tensor([0, 1, 4, 3, 6] * 200)
    negatives = sampler.sample_for(positives, 6, generator)
    assert negatives.shape == (1000, 6)
    assert not (negatives == positives[:, None]).any()
    rows = {int(p): negatives[positives == p].flatten().tolist() for p in (0, 1, 4, 3, 6)}
    assert set(rows[0]) == {1, 2} and set(rows[1]) == {0, 2}  # the leaf's others
    assert set(rows[4]) == {5}
    assert set(rows[3]) == {0, 1, 2, 4, 5, 6}  # alone in its leaf: the whole pool
    assert set(rows[6]) == {0, 1, 2, 3, 4, 5}  # no leaf: the whole pool
    counts = np.bincount(rows[0], minlength=3)[1:]
    assert counts.min() > 0.4 * counts.sum()  # uniform over the two siblings


def test_subclass_share_splits_leaf_and_uniform_draws() -> None:
    leaf = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    sampler = SubclassSampler(leaf, pool=np.arange(8), share=0.25)
    negatives = sampler.sample_for(torch.tensor([0] * 500), 4, torch.Generator().manual_seed(1))
    assert (negatives[:, 0] == 1).all()  # round(0.25 · 4) = 1 from the leaf: item 1
    assert set(negatives[:, 1:].flatten().tolist()) == set(range(1, 8))
    # items outside the pool are never drawn, even from the positive's leaf
    pooled = SubclassSampler(leaf, pool=np.array([0, 2, 3, 4]), share=1.0)
    drawn = pooled.sample_for(torch.tensor([5] * 100), 3, torch.Generator().manual_seed(2))
    assert set(drawn.flatten().tolist()) == {2, 3, 4}


def test_round_robin_alternates_and_skips_repeats() -> None:
    first = np.array([[1, 2, 3, 4], [7, -1, -1, -1]])
    second = np.array([[2, 5, 1, 6], [8, 9, 7, 10]])
    # row 0: 1, 2, (2 taken), 5, 3, (1 taken), 4, 6; row 1: 7, 8, 9, (7 taken), 10
    assert round_robin(first, second, 6).tolist() == [[1, 2, 5, 3, 4, 6], [7, 8, 9, 10, -1, -1]]
    assert round_robin(first, second, 3).tolist() == [[1, 2, 5], [7, 8, 9]]


@pytest.fixture(scope="module")
def stars(small_dataset: Dataset) -> StarsRecommender:
    """A small STARS model with random tags, trained a few epochs."""
    tags = (np.random.default_rng(0).random((small_dataset.n_items, 8)) < 0.3).astype(np.float32)
    config = StarsConfig(dim=32, n_negatives=20, gamma=0.5,
                         training={"epochs": 3, "eval_every": 1})  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    return StarsRecommender(config, tags).fit(small_dataset, generator=generator)


def test_a_cold_item_is_scored_from_its_content_and_tags_alone(
    stars: StarsRecommender, small_dataset: Dataset
) -> None:
    net = stars.net
    assert net is not None and isinstance(net.items, DeltaItems) and net.attr is not None
    cold = small_dataset.cold_items
    content = net.items.content[cold]
    with torch.no_grad():
        expected = torch.cat([net.items.map(content), net.attr(net.tags[cold + 1])], dim=1)
        assert torch.allclose(net.item_vectors()[cold], expected, atol=1e-6)  # Δ = 0: untrained
    users = np.arange(5)
    with torch.no_grad():
        h_next, _ = stars.vectors(stars.history[users], stars._side(torch.as_tensor(users)),
                                  {n: v[users] for n, v in stars.request.items()})  # fmt: skip
    by_hand = (h_next @ expected.T).numpy() + popularity_prior(
        stars.item_interactions.numpy(), 0.5)[cold]  # fmt: skip
    assert stars.score(users)[:, cold] == pytest.approx(by_hand, abs=1e-5)
    # the prior: every cold item has no interactions, so the largest bias of all
    assert np.allclose(net.prior[cold].numpy(), net.prior.max().item())


def test_the_context_offset_moves_scores_only_through_the_user_vector(
    stars: StarsRecommender,
) -> None:
    assert stars.net is not None
    users = torch.arange(6)
    history, side = stars.history[users], stars._side(users)
    monday = {"day": torch.full((6,), 1), "week": torch.full((6,), 3),
              "hour": torch.zeros(6, dtype=torch.long)}  # fmt: skip
    saturday = {**monday, "day": torch.full((6,), 6), "week": torch.full((6,), 40)}
    with torch.no_grad():
        a, _ = stars.vectors(history, side, monday)
        b, _ = stars.vectors(history, side, saturday)
        plain, _ = stars.vectors(history, side, None)
        offset = stars.net.context_offset(saturday) - stars.net.context_offset(monday)
        assert torch.allclose(b - a, offset, atol=1e-6)
        assert torch.allclose(a - plain, stars.net.context_offset(monday), atol=1e-6)
        table = stars.net.item_vectors()
        assert torch.allclose(b @ table.T - a @ table.T, offset @ table.T, atol=1e-5)


def test_round_robin_scoring_interleaves_the_two_vectors_lists(
    stars: StarsRecommender, small_dataset: Dataset
) -> None:
    users = np.arange(4)
    config = stars.config
    scores = {}
    for mode in ("next", "general", "round_robin"):
        stars.config = config.model_copy(update={"scoring": mode})
        scores[mode] = stars.score(users)
    stars.config = config
    seen = stars.history[torch.as_tensor(users)].numpy() - 1
    for row in range(len(users)):
        lists = []
        for mode in ("next", "general"):
            s = scores[mode][row].copy()
            s[seen[row][seen[row] >= 0]] = -np.inf
            lists.append(np.argsort(-s, kind="stable")[:100])
        expected = round_robin(lists[0][None], lists[1][None], 100)[0]
        got = np.argsort(-np.nan_to_num(scores["round_robin"][row], nan=-np.inf), kind="stable")
        assert got[:100].tolist() == expected.tolist()


def test_stars_saves_and_loads_to_the_same_scores(stars: StarsRecommender, tmp_path: Path) -> None:
    stars.save(tmp_path / "model")
    loaded = StarsRecommender.load(tmp_path / "model")
    users = np.arange(10)
    assert np.array_equal(loaded.score(users), stars.score(users), equal_nan=True)


def test_stars_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="needs user_token"):
        StarsConfig(scoring="general", user_token=False)
    with pytest.raises(ValueError, match="sampled"):
        StarsConfig(loss="full")


def test_static_user_features_enter_the_user_token_only(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    groups = np.array(["young", "old", None] * 100, dtype=object)[: small_dataset.n_users]
    users = small_dataset.users.assign(**{"feature.age": pd.array(groups, dtype="string")})
    dataset = dataclasses.replace(small_dataset, users=users)
    config = StarsConfig(dim=16, n_negatives=5, training={"epochs": 1, "eval_every": 1})
    model = StarsRecommender(config).fit(dataset, generator=torch.Generator().manual_seed(0))
    assert model.user_codes[:3, 0].tolist() == [2, 1, 0]  # old < young; None is unknown
    rows = torch.arange(6)
    history, side = model.history[rows], model._side(rows)
    swapped = model.user_codes[rows].clone()
    swapped[:, 0] = torch.tensor([1, 2, 1, 1, 2, 1])
    with torch.no_grad():
        next_a, gen_a = model.vectors(history, side, None, model.user_codes[rows])
        next_b, gen_b = model.vectors(history, side, None, swapped)
    assert gen_a is not None and gen_b is not None
    assert torch.equal(next_a, next_b)  # item positions never read the token
    changed = (model.user_codes[rows, 0] != swapped[:, 0]).numpy()
    assert not torch.allclose(gen_a[changed], gen_b[changed])
    assert torch.allclose(gen_a[~changed], gen_b[~changed])
    model.save(tmp_path / "model")
    loaded = StarsRecommender.load(tmp_path / "model")
    assert torch.equal(loaded.user_codes, model.user_codes)
    without = StarsRecommender(config.model_copy(update={"user_features": False}))
    without.fit(dataset, generator=torch.Generator().manual_seed(0))
    assert without.user_codes.shape == (dataset.n_users, 0)


def test_the_knn_transfer_moves_deltas_to_cold_items_only(small_dataset: Dataset) -> None:
    config = StarsConfig(dim=16, n_negatives=10, delta_frozen_epochs=0, early_stopping=False,
                         training={"epochs": 2})  # fmt: skip
    model = StarsRecommender(config).fit(small_dataset, generator=torch.Generator().manual_seed(0))
    moved = model.transferred(small_dataset, TransferConfig(tau=-1.0))  # every gate open
    assert model.net is not None and moved.net is not None
    with torch.no_grad():
        before, after = model.net.item_vectors(), moved.net.item_vectors()
    cold = torch.tensor(small_dataset.items["cold"].to_numpy())
    assert torch.equal(before[~cold], after[~cold])
    assert not torch.equal(before[cold], after[cold])
    assert moved.transfer is not None and model.transfer is None
