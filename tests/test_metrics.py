"""Metrics: a differential test against ranx and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import ranx
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from coldrec._util.sparse import hit_matrix, item_lists, list_lengths
from coldrec.eval.metrics import METRICS, coverage, mean_metrics, recall


def csr(lists: list[list[int]], n_items: int = 1000) -> sparse.csr_array:
    """Item lists, one row per list (in any order; duplicates kept once)."""
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    items = np.array([i for x in lists for i in x], dtype=np.int64)
    return item_lists(rows, items, len(lists), n_items)


def test_agrees_with_ranx_on_random_rankings() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, depth = 1200, 300, 20
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(float)
    ranked = np.argsort(-scores, axis=1)[:, :depth]  # distinct scores: no ties
    targets = [
        rng.choice(n_items, size=rng.integers(1, 9), replace=False).tolist() for _ in range(n_users)
    ]
    lists = csr(targets)
    hits = hit_matrix(ranked, lists)

    qrels = ranx.Qrels({f"u{u}": {f"i{i}": 1 for i in t} for u, t in enumerate(targets)})
    run = ranx.Run(
        {f"u{u}": {f"i{i}": float(scores[u, i]) for i in ranked[u]} for u in range(n_users)}
    )
    names = {
        "recall": "recall",
        "ndcg": "ndcg",
        "mrr": "mrr",
        "precision": "precision",
        "hit_rate": "hit_rate",
    }
    for k in (1, 5, 10, 20):
        expected = ranx.evaluate(qrels, run, [f"{names[m]}@{k}" for m in names])
        ours = mean_metrics(hits, list_lengths(lists), [k])
        for metric in names:
            assert ours[f"{metric}@{k}"] == pytest.approx(
                expected[f"{names[metric]}@{k}"], abs=1e-9
            ), (metric, k)


def test_hand_worked_user() -> None:
    # Ranked: [7, 3, 9, 1, 4]; targets {3, 4, 8}: hits at ranks 1 and 4 (0-based).
    hits = hit_matrix(np.array([[7, 3, 9, 1, 4]]), csr([[3, 4, 8]]))
    assert hits.tolist() == [[False, True, False, False, True]]
    n = np.array([3])
    assert METRICS["recall"](hits, n, 5)[0] == pytest.approx(2 / 3)
    assert METRICS["recall"](hits, n, 2)[0] == pytest.approx(1 / 3)
    assert METRICS["precision"](hits, n, 5)[0] == pytest.approx(2 / 5)
    assert METRICS["hit_rate"](hits, n, 1)[0] == 0.0
    assert METRICS["hit_rate"](hits, n, 2)[0] == 1.0
    assert METRICS["mrr"](hits, n, 5)[0] == pytest.approx(1 / 2)
    assert METRICS["mrr"](hits, n, 1)[0] == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert METRICS["ndcg"](hits, n, 5)[0] == pytest.approx(dcg / idcg)
    # At k=2 the ideal has min(3, 2) = 2 hits.
    assert METRICS["ndcg"](hits, n, 2)[0] == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )


def test_ndcg_ideal_uses_min_of_targets_and_k() -> None:
    # One target, found first: perfect whatever k.
    hits = hit_matrix(np.array([[5, 1, 2]]), csr([[5]]))
    assert METRICS["ndcg"](hits, np.array([1]), 3)[0] == 1.0


def test_empty_slots_never_hit() -> None:
    hits = hit_matrix(np.array([[-1, 2, -1]]), csr([[0, 2]]))
    assert hits.tolist() == [[False, True, False]]


def test_means_over_users_and_empty_segments() -> None:
    hits = hit_matrix(np.array([[1, 2], [3, 4]]), csr([[1], [9, 8]]))
    means = mean_metrics(hits, np.array([1, 2]), [2])
    assert means["recall@2"] == pytest.approx((1 + 0) / 2)
    assert means["precision@2"] == pytest.approx((0.5 + 0) / 2)
    empty = mean_metrics(np.zeros((0, 2), dtype=bool), np.zeros(0, dtype=int), [2])
    assert all(math.isnan(v) for v in empty.values())


def test_candidate_recall_is_recall_of_the_candidate_list_and_coverage() -> None:
    candidates = np.array([[4, 2, 8, 1], [0, 5, -1, -1]])
    lists = csr([[1, 2, 3], [5]])
    retrieved = hit_matrix(candidates, lists)
    assert recall(retrieved, list_lengths(lists), 4).tolist() == pytest.approx([2 / 3, 1.0])
    assert recall(retrieved, list_lengths(lists), 1).tolist() == [0.0, 0.0]
    assert coverage(candidates, n_items=10, k=2) == pytest.approx(4 / 10)  # {4, 2, 0, 5}
    assert coverage(candidates, n_items=10, k=4) == pytest.approx(6 / 10)  # -1 is not an item


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_metrics_stay_in_unit_interval(data: st.DataObject) -> None:
    n_users = data.draw(st.integers(1, 6))
    n_items = data.draw(st.integers(3, 12))
    ranked = np.array([data.draw(st.permutations(range(n_items)))[:3] for _ in range(n_users)])
    targets = [data.draw(st.sets(st.integers(0, n_items - 1), min_size=1)) for _ in range(n_users)]
    lists = csr([list(t) for t in targets])
    hits = hit_matrix(ranked, lists)
    for value in mean_metrics(hits, list_lengths(lists), [1, 2, 3]).values():
        assert 0.0 <= value <= 1.0 + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_hit_matrix_is_a_per_user_membership_test(data: st.DataObject) -> None:
    n_users = data.draw(st.integers(1, 6))
    n_items = data.draw(st.integers(1, 9))
    width = data.draw(st.integers(1, 5))
    item = st.integers(-1, n_items - 1)
    ranked = np.array([[data.draw(item) for _ in range(width)] for _ in range(n_users)])
    # target lists in any order, some empty: a set check per user is the truth
    target = st.lists(st.integers(0, n_items - 1), unique=True)
    targets = [data.draw(target) for _ in range(n_users)]
    expected = [[r >= 0 and r in t for r in row] for row, t in zip(ranked, targets, strict=True)]
    assert hit_matrix(ranked, csr(targets, n_items)).tolist() == expected
