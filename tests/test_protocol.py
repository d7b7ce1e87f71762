"""Evaluation protocol: segments, masking, candidates and ranking, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.data import PrepareConfig, prepare
from coldrec.data.candidates import Candidates
from coldrec.eval.protocol import evaluate, top_k
from coldrec.training.scores import scores_at
from tests.helpers import frames_of


class FixedScores:
    """A model whose scores are a given users × items matrix."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def fit(self, dataset: object) -> FixedScores:
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return scores_at(self.scores[users], items)


@pytest.fixture
def data():
    # Items a..f → ids 0..5. Global split, 7 of 10 rows in train (ts 1..7).
    # u1: train a, b; test c (warm), f (cold).  u2: train a; test d (warm).
    # u3: train c; test e (cold).               u4: no train; test c.
    rows = [
        ("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u3", "c", 4), ("u2", "c", 5),
        ("u1", "d", 6), ("u3", "d", 7),
        ("u1", "c", 8), ("u1", "f", 9), ("u2", "d", 10), ("u3", "e", 11), ("u4", "c", 12),
    ]  # fmt: skip
    dataset = prepare(frames_of(rows), PrepareConfig(train_share=7 / 12 + 1e-9))
    assert dataset.items.loc[dataset.cold_items, "item"].tolist() == ["e", "f"]
    return dataset


def test_segments_follow_the_thesis_rules(data) -> None:
    # Scores rank items e, f, c, d, b, a for everyone (history masked); the model ranks
    # for the user without history too (the fallback has a test of its own).
    order = np.array([0.1, 0.2, 0.6, 0.5, 0.9, 0.8])
    model = FixedScores(np.tile(order, (data.n_users, 1)))
    result = evaluate(model, data, ks=(1, 2), cold_users="model")
    counts = result["counts"]
    assert counts["all"] == {"users": 3, "targets": 4}  # u1{c,f}, u2{d}, u3{e}
    assert counts["warm"] == {"users": 2, "targets": 2}  # u1{c}, u2{d}; u3 has none
    assert counts["cold"] == {"users": 2, "targets": 2}  # u1{f}, u3{e}; u2 left out
    assert counts["cold_users"] == {"users": 1, "targets": 1}  # u4 has no history
    assert result["excluded"] == {
        "users_without_history": 1,
        "targets_in_history": 0,
        "users_with_only_repeat_targets": 0,
    }
    seg = result["segments"]
    # Top-2 after masking: u1 (history a,b,d) → e, f; u2 (a,c) → e, f; u3 (c,d) → e, f.
    assert seg["all"]["recall@2"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert seg["cold"]["recall@1"] == pytest.approx((0 + 1) / 2)  # u1 top-1 e, u3 top-1 e
    assert seg["warm"]["recall@2"] == 0.0
    assert seg["cold_users"]["recall@2"] == 0.0  # u4 gets e, f; target c


def test_masked_history_items_never_count_as_hits(data) -> None:
    # Scores put u1's history items first, then its targets.
    scores = np.zeros((data.n_users, data.n_items))
    u1 = data.users["user"].tolist().index("u1")
    scores[u1] = [9, 8, 5, 7, 0, 4]  # a, b (train) and d (train) highest
    result = evaluate(FixedScores(scores), data, ks=(1, 2))
    # u1: a, b, d masked → c (5), f (4): both targets. u2 (all zero, a and c masked):
    # ties go to the lower id → b, d: d is a target. u3 (c, d masked) → a, b: miss.
    assert result["segments"]["all"]["recall@2"] == pytest.approx((1 + 1 + 0) / 3)
    ranked_u1 = top_k(np.where(np.isin(np.arange(6), [0, 1, 3]), -np.inf, scores[u1])[None], 2)
    assert ranked_u1.tolist() == [[2, 5]]


def test_repeat_targets_in_history_are_excluded_and_counted() -> None:
    rows = [("u", "a", 1), ("u", "b", 2), ("v", "a", 3), ("u", "a", 4), ("v", "b", 5)]
    dataset = prepare(frames_of(rows), PrepareConfig(train_share=0.6))
    result = evaluate(FixedScores(np.ones((2, 2))), dataset, ks=(1,))
    assert result["excluded"]["targets_in_history"] == 1  # u buys a again
    assert result["excluded"]["users_with_only_repeat_targets"] == 1  # … and nothing else
    assert result["counts"]["all"] == {"users": 1, "targets": 1}  # only v → b


def test_candidate_protocol_scores_only_candidates(data) -> None:
    order = np.array([0.1, 0.2, 0.6, 0.5, 0.9, 0.8])
    model = FixedScores(np.tile(order, (data.n_users, 1)))
    u1, u3 = (data.users["user"].tolist().index(u) for u in ("u1", "u3"))
    items = np.array([[2, 0, -1], [3, 4, 5]])  # u1: c, a (history → masked); u3: d (history), e, f
    candidates = Candidates(np.array([u1, u3]), items, np.zeros(items.shape, dtype=np.float32))
    result = evaluate(model, data, ks=(1, 2), candidates=candidates, candidate_ms=(1, 2, 3, 50))
    seg = result["segments"]
    assert result["protocol"] == "candidates"
    # u1 ranks c first (hit); u2 has no candidates; u3 ranks e first (hit).
    assert seg["all"]["recall@1"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert seg["all"]["candidate_recall@2"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert seg["all"]["candidate_recall@1"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert seg["all"]["candidate_hit_rate@2"] == pytest.approx(2 / 3)  # u1 and u3
    assert "candidate_recall@50" not in seg["all"]  # wider than the candidate lists


def test_top_k_breaks_ties_by_lower_index_and_skips_unrankable() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [np.nan, -np.inf, 1.0, np.nan, 0.5]])
    assert top_k(scores, 3).tolist() == [[1, 2, 4], [2, 4, -1]]
    assert top_k(scores, 2).tolist() == [[1, 2], [2, 4]]
    many = np.zeros((3, 50))
    many[:, 30] = 1
    assert top_k(many, 4).tolist() == [[30, 0, 1, 2]] * 3


def test_candidates_round_trip_through_parquet(tmp_path) -> None:
    items = np.array([[4, 2, -1], [7, 1, 3]])
    scores = np.array([[0.9, 0.5, -np.inf], [0.8, 0.7, 0.1]], dtype=np.float32)
    candidates = Candidates(np.array([5, 2]), items, scores)
    frame = candidates.to_frame()
    assert frame.values.tolist() == [[5, 4, 0.8999999761581421, 1], [5, 2, 0.5, 2],
                                     [2, 7, 0.800000011920929, 1], [2, 1, 0.699999988079071, 2],
                                     [2, 3, 0.10000000149011612, 3]]  # fmt: skip
    back = Candidates.load(candidates.save(tmp_path / "candidates.parquet"))
    assert back.users.tolist() == [2, 5]
    assert back.items.tolist() == [[7, 1, 3], [4, 2, -1]]
    assert back.for_users(np.array([5, 9])).tolist() == [[4, 2, -1], [-1, -1, -1]]


def test_users_without_history_get_the_recent_popularity_fallback() -> None:
    day = 86_400
    # history (7 rows): a ×3 long ago, b ×2 and c ×2 in the last 30 days of it;
    # test: x (no history) b and d, y (no history) a
    rows = [("u", "a", 1), ("v", "a", 2), ("w", "a", 3), ("u", "b", 60 * day),
            ("v", "b", 61 * day), ("w", "c", 62 * day), ("u", "c", 63 * day),
            ("x", "b", 64 * day), ("x", "d", 65 * day), ("y", "a", 66 * day)]  # fmt: skip
    data = prepare(frames_of(rows), PrepareConfig(train_share=0.7))
    names = data.items["item"].tolist()
    order = {"d": 4.0, "a": 3.0, "c": 2.0, "b": 1.0}  # the model: d, a, c, b for everyone
    model = FixedScores(np.tile([order[n] for n in names], (data.n_users, 1)))
    fallback = evaluate(model, data, ks=(1, 2))
    assert fallback["cold_users"] == "popularity of the last 30 days"
    assert fallback["counts"]["cold_users"] == {"users": 2, "targets": 3}
    # recent popularity: b 2, c 2 (tie: lower id), then a and d at 0 → b, c, a, d
    # x {b, d}: @1 1/2, @2 1/2; y {a}: @1 0, @2 0 (all-time popularity would put a first)
    cold = fallback["segments"]["cold_users"]
    assert (cold["recall@1"], cold["recall@2"]) == pytest.approx((1 / 4, 1 / 4))
    own = evaluate(model, data, ks=(1, 2), cold_users="model")
    assert own["cold_users"] == "model"
    # the model's own d, a, c, b: x @1 1/2, @2 1/2; y @1 0, @2 1
    mine = own["segments"]["cold_users"]
    assert (mine["recall@1"], mine["recall@2"]) == pytest.approx((1 / 4, 3 / 4))
