"""Models: one shared suite every model passes (baselines, Two-Tower, the sequential
rankers, with and without delta vectors, and the fused ranker), then each baseline's own
known answers. The trained models' known answers, saving and seeding are in
``test_trained_models.py``."""

from __future__ import annotations

from collections.abc import Callable

import bm25s
import numpy as np
import pytest
import torch

from coldrec.baselines.bm25 import BM25, BM25Config
from coldrec.baselines.bm25_dense import BM25Dense, BM25DenseConfig
from coldrec.baselines.content import ItemKNNContent
from coldrec.baselines.popularity import Popularity, PopularityConfig
from coldrec.data import Dataset
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.encode import TextEncoder, user_content_vectors
from coldrec.eval.protocol import Scorer
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.fusion import FusedRanker
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.items import DeltaConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.rank.transfer import TransferConfig
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig
from coldrec.training.loop import TrainingConfig
from coldrec.training.model import Recommender, Trainable
from coldrec.training.scores import minmax

FAST = TrainingConfig(epochs=2, batch_size=128)
SASREC = SASRecConfig(dim=16, n_negatives=10, early_stopping=False, training=FAST)
TWO_TOWER = TwoTowerConfig(dim=16, early_stopping=False, training=FAST)


def trained(model: Trainable, dataset: Dataset) -> Trainable:
    return model.fit(dataset, generator=torch.Generator().manual_seed(7))


MODELS: dict[str, Callable[[Dataset], Scorer]] = {
    "popularity": lambda data: Popularity().fit(data),
    "itemknn": lambda data: ItemKNNContent().fit(data),
    "bm25": lambda data: BM25().fit(data),
    "bm25_dense": lambda data: BM25Dense().fit(data),
    "two_tower": lambda data: trained(TwoTower(TWO_TOWER), data),
    "sasrec": lambda data: trained(SequentialRecommender(SASREC), data),
    "gru4rec": lambda data: trained(
        SequentialRecommender(GRU4RecConfig(dim=16, early_stopping=False, training=FAST)), data
    ),
    "bert4rec": lambda data: trained(
        SequentialRecommender(BERT4RecConfig(dim=16, early_stopping=False, training=FAST)), data
    ),
    "sasrec_delta": lambda data: trained(
        SequentialRecommender(
            SASREC.model_copy(update={"delta": DeltaConfig(), "transfer": TransferConfig()})
        ),
        data,
    ),
    "fused": lambda data: FusedRanker(
        MODELS["sasrec"](data), MODELS["two_tower"](data), "hybrid", 0.5
    ),
}
CANDIDATES_ONLY = {"fused"}
"""Scorers of retrieved candidates only."""
PER_USER_SCALE = {"bm25_dense", "fused"}
"""Scorers that normalise each user's scores over the items asked for."""
ID_ONLY = {"sasrec", "gru4rec", "bert4rec"}
"""Models that cannot score an item they never trained (NaN)."""
CONTENT_OF_HISTORY = {"itemknn", "bm25", "bm25_dense"}
"""Models that cannot score a user without history (NaN: a fallback takes their place)."""


@pytest.fixture(scope="module", params=list(MODELS))
def named(request: pytest.FixtureRequest, small_dataset: Dataset) -> tuple[str, Scorer]:
    return request.param, MODELS[request.param](small_dataset)


def candidates(dataset: Dataset, users: np.ndarray, width: int = 9) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([rng.permutation(dataset.n_items)[:width] for _ in users])


def test_model_follows_the_protocol(named: tuple[str, Scorer], small_dataset: Dataset) -> None:
    name, model = named
    assert isinstance(model, Scorer)
    users = np.array([0, 5, 7])
    if name in CANDIDATES_ONLY:
        with pytest.raises(ValueError, match="candidates only"):
            model.score(users)
        return
    assert isinstance(model, Recommender)
    full = model.score(users)
    assert full.shape == (3, small_dataset.n_items)
    assert full.dtype == np.float32


def test_only_what_a_model_cannot_know_is_unscored(
    named: tuple[str, Scorer], small_dataset: Dataset
) -> None:
    name, model = named
    users = np.arange(small_dataset.n_users)
    items = candidates(small_dataset, users, small_dataset.n_items)  # every item, shuffled
    scores = model.score(users, items)
    cold = small_dataset.items["cold"].to_numpy()[items]
    history = small_dataset.interactions["split"].isin(HISTORY_SPLITS)
    with_history = np.isin(users, small_dataset.interactions.loc[history, "user_idx"])
    assert not with_history.all()  # the data have users without history
    if name in CONTENT_OF_HISTORY:  # no history, no query: NaN, not ties broken by item id
        assert np.isnan(scores[~with_history]).all()
        scores, cold = scores[with_history], cold[with_history]
    if name in ID_ONLY:  # a cold item has no trained vector: NaN, never a guess
        assert np.isnan(scores[cold]).all() and np.isfinite(scores[~cold]).all()
    else:
        assert np.isfinite(scores).all()


def test_candidate_scores_equal_full_scores(
    named: tuple[str, Scorer], small_dataset: Dataset
) -> None:
    name, model = named
    users = np.array([1, 2, 3, 4])
    items = candidates(small_dataset, users)
    padded = np.concatenate([items, np.full((4, 2), -1)], axis=1)
    picked = model.score(users, padded)
    assert picked.shape == (4, 11) and np.isnan(picked[:, 9:]).all()  # padding is unscored
    if name in PER_USER_SCALE:  # normalised over the items asked for, padding left out
        np.testing.assert_allclose(picked[:, :9], model.score(users, items), atol=1e-6)
        return
    full = model.score(users)
    np.testing.assert_allclose(picked[:, :9], np.take_along_axis(full, items, axis=1), atol=1e-6)


def test_a_users_scores_do_not_depend_on_who_else_is_scored(
    named: tuple[str, Scorer], small_dataset: Dataset
) -> None:
    _, model = named
    users = np.arange(40)
    items = candidates(small_dataset, users)
    together = model.score(users, items)
    alone = np.concatenate([model.score(users[[u]], items[[u]]) for u in users])
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_scores_are_deterministic(named: tuple[str, Scorer], small_dataset: Dataset) -> None:
    name, model = named
    users = np.arange(20)
    items = candidates(small_dataset, users)
    again = MODELS[name](small_dataset)
    np.testing.assert_array_equal(model.score(users, items), again.score(users, items))


def test_popularity_counts_weighted_history(small_dataset: Dataset) -> None:
    history = small_dataset.interactions[small_dataset.interactions["split"] != "test"]
    expected = history.groupby("item_idx")["weight"].sum()
    scores = Popularity().fit(small_dataset).score(np.array([0]))[0]
    np.testing.assert_allclose(scores[expected.index], expected.to_numpy(), rtol=1e-6)
    assert scores[small_dataset.cold_items].max() == 0.0  # cold items never seen before test
    counted = Popularity(PopularityConfig(weighted=False)).fit(small_dataset).score(np.array([0]))
    assert counted[0][expected.index].tolist() == history.groupby("item_idx").size().tolist()


def test_itemknn_is_cosine_of_user_and_item_vectors(small_dataset: Dataset) -> None:
    model = ItemKNNContent().fit(small_dataset)
    vectors = TextEncoder().encode(small_dataset.item_text)
    users = user_content_vectors(small_dataset, vectors, ("train", "valid"), 50)
    np.testing.assert_allclose(model.score(np.array([3])), users[[3]] @ vectors.T, atol=1e-6)
    assert np.linalg.norm(users[3]) == pytest.approx(1.0, abs=1e-5)


def test_bm25_equals_bm25s_scores_for_the_history_query(small_dataset: Dataset) -> None:
    model = BM25(BM25Config(last_n=5)).fit(small_dataset)
    tokens = bm25s.tokenize(small_dataset.item_text, stopwords="en", show_progress=False)
    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    index.index(tokens, show_progress=False)
    recent = small_dataset.recent_items(5)
    for user in (0, 11, 42):
        query = [t for item in recent[user].indices for t in tokens.ids[item]]
        expected = index.get_scores(query) if query else np.zeros(small_dataset.n_items)
        np.testing.assert_allclose(model.score(np.array([user]))[0], expected, rtol=1e-5, atol=1e-6)


def test_recent_items_keeps_the_last_distinct(small_dataset: Dataset) -> None:
    recent = small_dataset.recent_items(3, ("train",))
    for user, sequence in enumerate(small_dataset.sequences("train")):
        last = list(dict.fromkeys(reversed(sequence.tolist())))[:3]
        assert sorted(recent[user].indices.tolist()) == sorted(last)


def test_hybrid_mixes_normalised_scores(small_dataset: Dataset) -> None:
    users = np.arange(10)
    dense = ItemKNNContent().fit(small_dataset).score(users)
    lexical = BM25().fit(small_dataset).score(users)
    for alpha in (0.0, 0.3, 1.0):
        mixed = BM25Dense(BM25DenseConfig(alpha=alpha)).fit(small_dataset).score(users)
        expected = alpha * minmax(dense) + (1 - alpha) * minmax(lexical)
        np.testing.assert_allclose(mixed, expected, atol=1e-6)


def test_minmax_by_hand() -> None:
    got = minmax(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]]))
    assert got.tolist() == [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]


def test_padding_is_unscored_and_does_not_move_the_hybrid(small_dataset: Dataset) -> None:
    model = BM25Dense().fit(small_dataset)
    users = np.arange(30)
    items = np.random.default_rng(1).permutation(small_dataset.n_items)[:8][None].repeat(30, 0)
    padded = np.concatenate([items, np.full((30, 2), -1)], axis=1)
    plain, with_pads = model.score(users, items), model.score(users, padded)
    assert np.isnan(with_pads[:, 8:]).all()
    np.testing.assert_allclose(with_pads[:, :8], plain, atol=1e-6)
    assert minmax(np.array([[2.0, np.nan, 4.0]])).tolist()[0][::2] == [0.0, 1.0]
