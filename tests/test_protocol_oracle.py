"""The protocol against a plain-Python oracle written from the rules in its docstring,
on random data with ties, NaN, a validation split, small batches and candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coldrec.data import PrepareConfig, prepare
from coldrec.data.candidates import Candidates
from coldrec.errors import ConfigError, DataError
from coldrec.eval.protocol import evaluate, top_k
from coldrec.training.scores import scores_at
from tests.helpers import frames_of


class Table:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores.astype(np.float32)

    def fit(self, dataset: object) -> Table:
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return scores_at(self.scores[users], items)


def oracle(dataset, scores, ks, candidates=None):
    """Recall and NDCG per segment, one user at a time, straight from the definitions."""
    rows = dataset.interactions
    history, tests = {}, {}
    for u, i, split in zip(
        rows["user_idx"], rows["item_idx"], rows["split"].astype(str), strict=True
    ):
        (tests if split == "test" else history).setdefault(u, set()).add(i)
    cold = set(np.flatnonzero(dataset.items["cold"]))
    out = {
        seg: {f"{m}@{k}": [] for m in ("recall", "ndcg") for k in ks}
        for seg in ("all", "warm", "cold")
    }
    for user, tested in tests.items():
        seen = history.get(user, set())
        targets = tested - seen
        if not seen or not targets:
            continue
        pool = range(dataset.n_items) if candidates is None else [
            i for i in candidates.get(user, []) if i >= 0]  # fmt: skip
        order = [i for i in pool if i not in seen and not math.isnan(scores[user, i])]
        position = {item: p for p, item in enumerate(pool)}
        order.sort(key=lambda i: (-scores[user, i], position[i]))  # ties: id / candidate order
        for seg, wanted in (("all", targets), ("warm", targets - cold), ("cold", targets & cold)):
            if not wanted:
                continue
            for k in ks:
                hits = [1.0 if i in wanted else 0.0 for i in order[:k]]
                ideal = sum(1 / math.log2(r + 2) for r in range(min(len(wanted), k)))
                out[seg][f"recall@{k}"].append(sum(hits) / len(wanted))
                out[seg][f"ndcg@{k}"].append(
                    sum(h / math.log2(r + 2) for r, h in enumerate(hits)) / ideal
                )
    return {
        seg: {m: float(np.mean(v)) if v else float("nan") for m, v in ms.items()}
        for seg, ms in out.items()
    }


@pytest.mark.parametrize("seed", range(12))
def test_evaluate_matches_the_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{rng.integers(12)}", f"i{rng.integers(15)}", int(t)) for t in rng.integers(0, 40, 90)
    ]
    config = PrepareConfig(valid_share=0.3 if seed % 2 else 0.0)
    dataset = prepare(frames_of(rows), config)
    scores = rng.integers(0, 4, size=(dataset.n_users, dataset.n_items)).astype(float)  # many ties
    scores[rng.random(scores.shape) < 0.1] = np.nan
    ks = (1, 3, 50)
    candidates = None
    if seed % 3 == 0:
        width = 8
        users = np.arange(dataset.n_users)
        items = np.stack([rng.permutation(dataset.n_items)[:width] for _ in users])
        items[rng.random(items.shape) < 0.2] = -1
        candidates = Candidates(users, items, np.zeros(items.shape, dtype=np.float32))
    result = evaluate(
        Table(scores),
        dataset,
        ks=ks,
        candidates=candidates,
        batch_size=1 + seed % 4,
        cold_users="model",
    )  # the oracle: the model's
    by_user = (
        None
        if candidates is None
        else dict(zip(candidates.users, candidates.items.tolist(), strict=True))
    )
    expected = oracle(dataset, scores, ks, by_user)
    for seg, metrics in expected.items():
        for name, value in metrics.items():
            got = result["segments"][seg][name]
            assert (math.isnan(got) and math.isnan(value)) or got == pytest.approx(
                value, abs=1e-12
            ), (seg, name)


def test_top_k_ties_on_a_wide_catalogue() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(50, 5000)).astype(np.float32)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(top_k(scores, 20), expected)


def test_bad_candidates_and_cut_offs_are_refused() -> None:
    dataset = prepare(frames_of([("u", "a", 1), ("u", "b", 2), ("v", "a", 3), ("v", "b", 4)]),
                      PrepareConfig(split="loo"))  # fmt: skip
    model = Table(np.ones((2, 2)))
    twice = Candidates(np.array([0]), np.array([[1, 1]]), np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(DataError, match="listed twice"):
        evaluate(model, dataset, candidates=twice)
    outside = Candidates(np.array([0]), np.array([[0, 7]]), np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(DataError, match=r"must lie in \[-1, 2\)"):
        evaluate(model, dataset, candidates=outside)
    with pytest.raises(ConfigError, match="ks must be"):
        evaluate(model, dataset, ks=())
