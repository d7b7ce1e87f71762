"""The synthetic Beauty-like source: determinism, shape, strict cold items, text signal."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pydantic import TypeAdapter, ValidationError

from coldrec.data.sources import SourceConfig
from coldrec.data.sources.synthetic import SyntheticSource

SMALL = {"n_users": 300, "n_items": 200}
TOPS = {"Makeup", "Skin Care", "Hair Care", "Fragrance", "Bath & Body", "Tools & Accessories"}
DAY = 86_400


@pytest.fixture(scope="module")
def frames():
    return SyntheticSource().load()


def global_split(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First 70% of interactions by time (stable on ties) as train, the rest as test."""
    ordered = interactions.sort_values("ts", kind="stable").reset_index(drop=True)
    cut = int(0.7 * len(ordered))
    return ordered.iloc[:cut], ordered.iloc[cut:]


def cold_items(train: pd.DataFrame, test: pd.DataFrame) -> set[str]:
    return set(test["item"]) - set(train["item"])


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames():
    a = SyntheticSource(seed=7, **SMALL).load()
    b = SyntheticSource(seed=7, **SMALL).load()
    assert_frame_equal(a.interactions, b.interactions)
    assert_frame_equal(a.items, b.items)


def test_different_seed_gives_different_frames():
    a = SyntheticSource(seed=7, **SMALL).load()
    b = SyntheticSource(seed=8, **SMALL).load()
    assert not a.interactions.equals(b.interactions)
    assert (a.items["title"] != b.items["title"]).mean() > 0.9


# ---------------------------------------------------------------- shape


def test_frames_provenance(frames):
    assert frames.source == "synthetic"
    assert frames.order_only is False
    assert frames.files == ()


def test_category_paths_are_three_or_four_levels_from_beauty(frames):
    paths = frames.items["categories"]
    assert all(len(p) == 1 for p in paths)
    paths = [tuple(p[0]) for p in paths]
    lengths = pd.Series([len(p) for p in paths]).value_counts()
    assert set(lengths.index) == {3, 4}
    assert lengths[4] > lengths[3]  # most paths have a subcategory
    assert {p[0] for p in paths} == {"Beauty"}
    assert {p[1] for p in paths} == TOPS
    assert 30 <= len(set(paths)) <= 50
    # Leaf sizes are uneven: the biggest leaf is many times the smallest.
    sizes = pd.Series(paths).value_counts()
    assert sizes.iloc[0] >= 5 * sizes.iloc[-1]


def test_item_metadata(frames):
    items = frames.items
    assert items["item"].is_unique
    assert items["title"].notna().all()
    assert items["title"].nunique() >= 0.95 * len(items)
    assert items["brand"].notna().all()
    assert 0.3 < items["description"].isna().mean() < 0.6
    prices = items["price"].astype(float)
    assert (prices > 0).all()
    # Fragrance is dearer than Bath & Body, as on Amazon.
    top = items["categories"].map(lambda p: p[0][1])
    assert prices[top == "Fragrance"].median() > 2 * prices[top == "Bath & Body"].median()


def test_interactions_are_well_formed(frames):
    inter = frames.interactions
    assert set(inter["item"]) <= set(frames.items["item"])
    assert inter.groupby("user").size().min() >= 5
    assert not inter.duplicated(["user", "item"]).any()
    ts = inter["ts"].to_numpy()
    assert (ts % DAY == 0).all()
    assert ts.min() >= datetime(2010, 1, 1, tzinfo=UTC).timestamp()
    assert ts.max() < datetime(2014, 7, 1, tzinfo=UTC).timestamp()
    assert inter["ts"].duplicated().any()  # same-day ties, as in Amazon data
    assert set(inter["rating"].astype(float)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # Ordered by user, then time.
    assert inter["user"].is_monotonic_increasing
    assert (inter.groupby("user")["ts"].diff().dropna() >= 0).all()


def test_activity_and_ratings_look_like_beauty_5core(frames):
    per_user = frames.interactions.groupby("user").size()
    assert 8.0 <= per_user.mean() <= 10.0
    assert per_user.median() <= 7  # heavy-tailed: most users near the minimum
    assert per_user.max() >= 40
    ratings = frames.interactions["rating"].astype(float)
    assert 0.7 <= (ratings >= 4).mean() <= 0.9
    assert 0.05 <= (ratings <= 2).mean() <= 0.15


def test_users_concentrate_on_few_leaves(frames):
    leaf = dict(zip(frames.items["item"], frames.items["categories"].map(str), strict=True))
    inter = frames.interactions.assign(leaf=frames.interactions["item"].map(leaf))
    heavy = inter.groupby("user").filter(lambda g: len(g) >= 10)
    top3 = heavy.groupby("user")["leaf"].agg(lambda s: s.value_counts().iloc[:3].sum() / len(s))
    # 80% favourites (2 to 3 leaves, one replaced once) vs 47 leaves when random.
    assert top3.mean() > 0.6


def test_parameters_size_the_output():
    frames = SyntheticSource(n_users=150, n_items=300, seed=3).load()
    assert frames.interactions["user"].nunique() == 150
    assert len(frames.items) == 300
    assert frames.interactions["item"].nunique() <= 300
    assert all(re.fullmatch(r"U\d{5}", u) for u in frames.interactions["user"].unique())
    assert all(re.fullmatch(r"I\d{5}", i) for i in frames.items["item"])


def test_mean_interactions_parameter_is_honoured():
    frames = SyntheticSource(n_users=1000, mean_interactions=15.0).load()
    assert 13.0 <= frames.interactions.groupby("user").size().mean() <= 17.0


@pytest.mark.parametrize(
    "bad",
    [
        {"n_users": 0},
        {"new_item_share": 1.5},
        {"min_favourites": 3, "max_favourites": 2},
        {"mean_interactions": 4.0},
        {"n_items": 100, "new_item_share": 0.9, "min_interactions": 50, "mean_interactions": 60},
        {"start": "2014-07-01", "end": "2014-07-10"},
        {"unknown": 1},
    ],
)
def test_invalid_parameters_are_rejected(bad):
    with pytest.raises(ValidationError):
        SyntheticSource(**bad)


def test_selected_by_kind_among_sources():
    config = TypeAdapter(SourceConfig).validate_python({"kind": "synthetic", "n_users": 50})
    assert config == SyntheticSource(n_users=50)


# ---------------------------------------------------------------- strict cold items


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_split_leaves_strict_cold_items(seed):
    frames = SyntheticSource(seed=seed).load()
    train, test = global_split(frames.interactions)
    cold = cold_items(train, test)
    assert not cold & set(train["item"])
    catalogue_share = len(cold) / len(frames.items)
    test_share = test["item"].isin(cold).mean()
    assert 0.05 <= catalogue_share <= 0.12
    assert 0.10 <= test_share <= 0.25


def test_cold_items_come_from_releases():
    frames = SyntheticSource(new_item_share=0.0).load()
    train, test = global_split(frames.interactions)
    cold = cold_items(train, test)
    # Without late releases only a few rarely bought old items are cold, and they carry
    # almost nothing of the test interactions (about 15% with the default releases).
    assert len(cold) / len(frames.items) < 0.03
    assert test["item"].isin(cold).mean() < 0.02


# ---------------------------------------------------------------- text signal


def tfidf(texts: list[str]) -> np.ndarray:
    """Row-normalised binary tf-idf vectors of lower-cased word tokens."""
    docs = [set(re.findall(r"[a-z0-9]+", t.lower())) for t in texts]
    vocab = {w: j for j, w in enumerate(sorted(set().union(*docs)))}
    matrix = np.zeros((len(docs), len(vocab)))
    for i, doc in enumerate(docs):
        matrix[i, [vocab[w] for w in doc]] = 1.0
    matrix *= np.log(len(docs) / matrix.sum(axis=0))
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def recall_at(scores: np.ndarray, targets: list[np.ndarray], k: int = 20) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([np.isin(t, row).mean() for row, t in zip(top, targets, strict=True)]))


def cold_recall(frames) -> dict[str, float]:
    """Recall@20 on each user's cold test items for content, popularity and random ranking."""
    items = frames.items
    index = {item: j for j, item in enumerate(items["item"])}
    train, test = global_split(frames.interactions)
    cold = cold_items(train, test)
    # Users with history (a content profile) and at least one cold test item.
    cold_test = test[test["item"].isin(cold) & test["user"].isin(set(train["user"]))]
    users = sorted(set(cold_test["user"]))
    row = {u: r for r, u in enumerate(users)}
    seen = np.zeros((len(users), len(items)))
    mine = train[train["user"].isin(row)]
    seen[mine["user"].map(row), mine["item"].map(index)] = 1.0
    targets = [g.map(index).to_numpy() for _, g in cold_test.groupby("user")["item"]]
    assert [u for u, _ in cold_test.groupby("user")] == users

    text = items["title"] + " " + items["categories"].map(lambda p: " ".join(p[0]))
    vectors = tfidf(text.tolist())
    profiles = seen @ vectors / seen.sum(axis=1, keepdims=True)
    train_counts = np.bincount(train["item"].map(index), minlength=len(items)).astype(float)
    rng = np.random.default_rng(0)
    rankings = {
        "content": profiles @ vectors.T,
        "popularity": np.tile(train_counts, (len(users), 1)),
        "random": rng.random(seen.shape),
    }
    return {
        name: recall_at(np.where(seen > 0, -np.inf, scores), targets)
        for name, scores in rankings.items()
    }


def test_text_carries_signal_for_cold_items(frames):
    recall = cold_recall(frames)
    print(f"cold Recall@20: {recall}")
    assert recall["popularity"] < 0.01  # cold items have no train count
    expected_random = 20 / len(frames.items)
    assert recall["content"] >= 3 * max(recall["random"], expected_random)
    assert recall["content"] > recall["popularity"] + 0.05
