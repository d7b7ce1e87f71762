"""Pseudo labels: filtering with counts, L_sim and L_pair moving their items, hard negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from coldrec._util.sparse import item_lists
from coldrec.data import Dataset, PrepareConfig, prepare
from coldrec.data.candidates import Candidates
from coldrec.errors import DataError
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.supervision.labels import LabelFiles, read_labels
from coldrec.training.loop import TrainingConfig
from coldrec.training.negatives import PoolSampler, UniformSampler
from tests.helpers import frames_of


def write(path: Path, **columns: list) -> None:
    pd.DataFrame(columns).to_parquet(path)


@pytest.fixture
def tiny() -> Dataset:
    # u: 3 history items, v: 1, w: 2; items a..e → 0..4 (e only in test: cold).
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("v", "a", 4), ("w", "b", 5),
            ("w", "c", 6), ("u", "e", 7), ("w", "d", 8), ("v", "e", 9), ("w", "a", 10)]  # fmt: skip
    return prepare(frames_of(rows), PrepareConfig(train_share=0.6))


def test_labels_keep_mapped_rows_of_users_with_history_and_count_the_rest(
    tiny: Dataset, tmp_path: Path
) -> None:
    u, v, w = (tiny.users["user"].tolist().index(x) for x in "uvw")
    write(tmp_path / "edges.parquet", user=[u, v, w, 99, u], item=[4, 4, 3, 1, 77],
          weight=[1.0, 0.5, 0.8, 1.0, 1.0], source=["stage4"] * 5)  # fmt: skip
    write(tmp_path / "triplets.parquet", user=[u, w], pos=[4, 3], neg=[0, -1],
          weight=[1.0, 1.0], source=["stage5"] * 2)  # fmt: skip
    labels = read_labels(tiny, tmp_path / "edges.parquet", tmp_path / "triplets.parquet")
    assert labels.edges[["user", "item"]].values.tolist() == [[u, 4], [w, 3]]
    assert labels.triplets[["user", "pos", "neg"]].values.tolist() == [[u, 4, 0]]
    assert labels.dropped == {
        "edges_unknown_user": 1, "edges_unknown_item": 1, "edges_short_history": 1,
        "triplets_unknown_user": 0, "triplets_unknown_item": 1, "triplets_short_history": 0,
    }  # fmt: skip
    assert labels.items.tolist() == [0, 3, 4]
    with pytest.raises(DataError, match="label file not found"):
        read_labels(tiny, tmp_path / "missing.parquet")


def _score_of(
    dataset: Dataset, config: SASRecConfig, user: int, item: int, labels: LabelFiles | None = None
) -> float:
    model = SequentialRecommender(config, labels).fit(
        dataset, generator=torch.Generator().manual_seed(0)
    )
    return float(model.score(np.array([user]))[0, item])


def test_l_sim_and_l_pair_move_their_items(small_dataset: Dataset, tmp_path: Path) -> None:
    base = SASRecConfig(dim=16, n_negatives=10, early_stopping=False,
                        training=TrainingConfig(epochs=4, batch_size=64, lr=3e-3))  # fmt: skip
    history = small_dataset.sequences("train")
    user = int(np.argmax([len(s) for s in history]))
    cold = int(small_dataset.cold_items[0])
    write(tmp_path / "edges.parquet", user=[user], item=[cold], weight=[1.0], source=["test"])
    assert np.isnan(_score_of(small_dataset, base, user, cold))
    with_edge = base.model_copy(update={"lambda_sim": 5.0})
    edges = LabelFiles(edges=tmp_path / "edges.parquet")
    scores = SequentialRecommender(with_edge, edges).fit(small_dataset).score(np.array([user]))[0]
    assert np.isfinite(scores[cold])  # the pseudo edge trains the cold item's embedding
    assert (scores > scores[cold]).mean() < 0.05  # and ranks it near the top for its user

    pos, neg = (int(i) for i in np.flatnonzero(~np.isnan(scores))[:2])
    triplet = {"user": [user], "pos": [neg], "neg": [pos], "weight": [1.0], "source": ["t"]}
    write(tmp_path / "triplets.parquet", **triplet)
    plain = _score_of(small_dataset, base, user, neg) - _score_of(small_dataset, base, user, pos)
    paired = base.model_copy(update={"lambda_pair": 5.0})
    triplets = LabelFiles(triplets=tmp_path / "triplets.parquet")
    moved = _score_of(small_dataset, paired, user, neg, triplets) - _score_of(
        small_dataset, paired, user, pos, triplets
    )
    assert moved > plain  # the triplet's positive gains on its negative


def test_hard_negatives_come_from_the_pool_without_seen_or_cold_items() -> None:
    candidates = Candidates(np.array([0, 2]), np.array([[5, 1, 2, -1], [3, 4, 0, 1]]),
                            np.zeros((2, 4), dtype=np.float32))  # fmt: skip
    removed = np.zeros(6, dtype=bool)
    removed[4] = True  # a cold item
    seen = item_lists(np.array([0, 2]), np.array([1, 0]), 3, 6)  # user 0 saw 1, user 2 saw 0
    fallback = UniformSampler(torch.tensor([9]))  # marks fallback draws
    sampler = PoolSampler.from_candidates(candidates, 3, removed, seen, fallback)
    assert sampler.pools.tolist() == [[5, -1, 2, -1], [-1, -1, -1, -1], [3, -1, -1, 1]]
    drawn = sampler.sample(torch.tensor([0, 1, 2]), 200, torch.Generator().manual_seed(0))
    assert set(drawn[0].tolist()) == {5, 2, 9}
    assert set(drawn[1].tolist()) == {9}  # no pool: uniform fallback
    assert set(drawn[2].tolist()) == {3, 1, 9}


def test_edge_cap_keeps_each_items_highest_weighted_edges(tiny: Dataset, tmp_path: Path) -> None:
    u, v, w = (tiny.users["user"].tolist().index(x) for x in "uvw")
    # v's edge goes for its short history before any cap
    write(tmp_path / "edges.parquet", user=[u, w, u, w, v], item=[4, 4, 3, 3, 4],
          weight=[0.2, 0.8, 0.6, 0.6, 0.9], source=["stage4"] * 5)  # fmt: skip
    one = LabelFiles(edges=tmp_path / "edges.parquet", edge_cap=1).read(tiny)
    # item 4: w (0.8) beats u (0.2); item 3: a tie, the lower user id; file order kept
    assert one.edges[["user", "item"]].values.tolist() == [[w, 4], [min(u, w), 3]]
    assert one.dropped["edges_over_item_cap"] == 2 and one.dropped["edges_short_history"] == 1
    two = LabelFiles(edges=tmp_path / "edges.parquet", edge_cap=2).read(tiny)
    assert len(two.edges) == 4 and two.dropped["edges_over_item_cap"] == 0


def test_a_ranker_counts_the_evidence_behind_each_item(tiny: Dataset, tmp_path: Path) -> None:
    u, w = (tiny.users["user"].tolist().index(x) for x in "uw")
    write(tmp_path / "edges.parquet", user=[u, w], item=[4, 4], weight=[1.0, 1.0],
          source=["stage4"] * 2)  # fmt: skip
    write(tmp_path / "triplets.parquet", user=[u], pos=[4], neg=[0], weight=[1.0],
          source=["stage5"])  # fmt: skip
    labels = LabelFiles(tmp_path / "edges.parquet", tmp_path / "triplets.parquet")
    config = SASRecConfig(dim=8, n_negatives=2, early_stopping=False,
                          training=TrainingConfig(epochs=1, batch_size=4))  # fmt: skip
    model = SequentialRecommender(config, labels).fit(tiny)
    # history (train + valid): a ×2 (u, v), b ×2 (u, w), c ×2 (u, w); d and e none
    names = tiny.items["item"].tolist()
    history = {"a": 2, "b": 2, "c": 2, "d": 0, "e": 0}
    assert model.item_interactions.tolist() == [history[n] for n in names]
    mentions = {"a": 1, "e": 3}  # a: a triplet's negative; e: two edges and a positive
    assert model.item_label_rows.tolist() == [mentions.get(n, 0) for n in names]
    expected = [history[n] + 0.5 * mentions.get(n, 0) for n in names]
    np.testing.assert_allclose(model.evidence(0.5), expected)
    model.save(tmp_path / "model")
    loaded = SequentialRecommender.load(tmp_path / "model", tiny)
    np.testing.assert_allclose(loaded.evidence(0.5), expected)


def test_label_quality_against_held_out_interactions_and_a_random_control(tiny: Dataset) -> None:
    from coldrec.supervision.quality import label_quality

    u, w = (tiny.users["user"].tolist().index(x) for x in "uw")
    # held out (test, not in history): u {e}, w {d, a}; v {e} has no edges
    edges = pd.DataFrame({"user": [u, u, w, w], "item": [4, 3, 3, 4]})  # u: e hit, d miss
    quality = label_quality(edges, tiny, seed=0)
    assert quality["edges"] == 4 and quality["users"] == 2 and quality["held_out_pairs"] == 3
    assert (quality["hits"], quality["precision"], quality["recall"]) == (2, 0.5, 2 / 3)
    # the control draws 2 items per user outside their history: u can only get d and e
    # (one hit); w two of a, d, e (a and d are hits)
    assert quality["random_hits"] in (2, 3)
    assert quality["random_precision"] == quality["random_hits"] / 4
    assert quality["random_recall"] == quality["random_hits"] / 3
    assert label_quality(edges, tiny, seed=0) == quality  # seeded
