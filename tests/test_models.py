"""Models: one shared suite every model passes, then each model's own known answers."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest

from coldrec.baselines.bm25 import BM25, BM25Config
from coldrec.baselines.bm25_dense import BM25Dense, BM25DenseConfig
from coldrec.baselines.content import ItemKNNContent
from coldrec.baselines.popularity import Popularity, PopularityConfig
from coldrec.data import Dataset
from coldrec.encode import TextEncoder, user_content_vectors
from coldrec.training.model import Recommender
from coldrec.training.scores import minmax

MODELS = {
    "popularity": Popularity,
    "itemknn": ItemKNNContent,
    "bm25": BM25,
    "bm25_dense": BM25Dense,
}


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request: pytest.FixtureRequest, small_dataset: Dataset) -> Recommender:
    return MODELS[request.param]().fit(small_dataset)


def test_model_follows_the_protocol(fitted: Recommender, small_dataset: Dataset) -> None:
    assert isinstance(fitted, Recommender)
    users = np.array([0, 5, 7])
    full = fitted.score(users)
    assert full.shape == (3, small_dataset.n_items)
    assert full.dtype == np.float32
    assert np.isfinite(full).all()


def test_candidate_scores_equal_full_scores(fitted: Recommender, small_dataset: Dataset) -> None:
    users = np.array([1, 2, 3, 4])
    rng = np.random.default_rng(0)
    items = rng.integers(0, small_dataset.n_items, size=(4, 9))
    full = fitted.score(users)
    picked = fitted.score(users, items)
    if isinstance(fitted, BM25Dense):  # per-user normalisation runs over the scored set
        assert picked.shape == (4, 9)
        return
    np.testing.assert_allclose(
        picked, np.take_along_axis(full, items, axis=1), rtol=1e-6, atol=1e-6
    )


def test_scores_are_deterministic(small_dataset: Dataset) -> None:
    for cls in MODELS.values():
        a = cls().fit(small_dataset).score(np.arange(20))
        b = cls().fit(small_dataset).score(np.arange(20))
        np.testing.assert_array_equal(a, b)


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
