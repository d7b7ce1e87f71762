"""Fusion of a ranker's scores with the retriever's over the retrieved candidates.

Modes (per user, over that user's candidates):

- ``sas``: the ranker's score alone (an ID-only ranker leaves cold items unranked);
- ``tw``: the retriever's score alone (Two-Tower-only ranking);
- ``hybrid``: ``α·minmax(ranker) + (1 − α)·minmax(retriever)``. Where the ranker cannot
  score an item (NaN: an item it never trained, e.g. every cold item), the retriever's
  normalised score stands in for it, so such an item competes on the retriever's terms
  instead of dropping to the bottom. ``minmax`` rescales each user's scores over the
  candidates to [0, 1].

α is chosen on the validation view (:func:`choose_alpha`), never on test: a sweep over
``alphas`` scored by :func:`~coldrec.eval.protocol.selection_score` (mean of warm and cold
Recall@20), which also gives the warm/cold trade-off curve.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from coldrec.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.eval.protocol import evaluate
from coldrec.models.hybrid import minmax
from coldrec.recommender import Recommender

__all__ = ["FusedRanker", "FusionMode", "choose_alpha"]

FusionMode = Literal["sas", "tw", "hybrid"]


class FusedRanker:
    """A :class:`~coldrec.recommender.Recommender` that scores only candidate matrices."""

    def __init__(self, ranker: Recommender, candidates: Candidates, mode: FusionMode, alpha: float):
        self.ranker, self.candidates, self.mode, self.alpha = ranker, candidates, mode, alpha

    def fit(self, dataset: Dataset) -> FusedRanker:
        return self  # both parts come fitted

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if items is None:
            raise ValueError("fusion scores retrieved candidates only: pass the candidate matrix")
        retriever = self.candidates.scores_for(users, items)
        if self.mode == "tw":
            return retriever
        ranker = np.asarray(self.ranker.score(users, items), dtype=np.float32)
        if self.mode == "sas":
            return ranker
        tw = minmax(retriever)
        sas = minmax(ranker)
        return self.alpha * np.where(np.isnan(sas), tw, sas) + (1 - self.alpha) * tw


def choose_alpha(
    ranker: Recommender, view: Dataset, candidates: Candidates, alphas: Sequence[float]
) -> tuple[float, list[dict[str, float]]]:
    """The α of ``alphas`` with the best selection score on the validation ``view``, and
    the whole curve (α, warm and cold Recall@20, score) for the report."""
    curve = []
    remembered = _Remembered(ranker)
    for alpha in alphas:
        fused = FusedRanker(remembered, candidates, "hybrid", alpha)
        segments = evaluate(fused, view, ks=(20,), candidates=candidates)["segments"]
        warm, cold = segments["warm"]["recall@20"], segments["cold"]["recall@20"]
        curve.append(
            {"alpha": alpha, "warm": warm, "cold": cold, "score": float(np.nanmean([warm, cold]))}
        )
    best = max(curve, key=lambda point: point["score"])
    return best["alpha"], curve


class _Remembered:
    """A fitted ranker whose scores are computed once per (users, items) query: every
    α of a sweep asks for the same ones, and only the fusion weight changes."""

    def __init__(self, ranker: Recommender) -> None:
        self.ranker = ranker
        self._scores: dict[tuple[bytes, bytes], np.ndarray] = {}

    def fit(self, dataset: Dataset) -> _Remembered:
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        asked = (users, np.zeros(0) if items is None else items)
        key = tuple(hashlib.blake2b(np.ascontiguousarray(a).tobytes()).digest() for a in asked)
        if key not in self._scores:
            self._scores[key] = np.asarray(self.ranker.score(users, items), dtype=np.float32)
        return self._scores[key]
