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

A :class:`FusedRanker` of a trained ranker and a saved Two-Tower saves as the ranker's
folder, its sidecar recording the fusion (mode, α, where the retriever is), and loads back
to the same scores.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from coldrec._util.io import file_sha256, read_json
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.errors import DataError
from coldrec.eval.protocol import Scorer, evaluate
from coldrec.rank.sequential import SequentialRecommender
from coldrec.retrieval.two_tower import TwoTower
from coldrec.training.saving import SIDECAR
from coldrec.training.scores import minmax

__all__ = ["FusedRanker", "FusionMode", "choose_alpha", "fuse"]

FusionMode = Literal["sas", "tw", "hybrid"]


class FusedRanker:
    """A :class:`~coldrec.eval.protocol.Scorer` of candidate matrices only: the
    ``ranker``'s scores fused with the ``retriever``'s by ``mode`` and ``alpha``."""

    def __init__(self, ranker: Scorer, retriever: Scorer, mode: FusionMode, alpha: float):
        self.ranker, self.retriever, self.mode, self.alpha = ranker, retriever, mode, alpha

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if items is None:
            raise ValueError("fusion scores retrieved candidates only: pass the candidate matrix")
        retriever = np.asarray(self.retriever.score(users, items), dtype=np.float32)
        if self.mode == "tw":
            return retriever
        return fuse(np.asarray(self.ranker.score(users, items), dtype=np.float32), retriever,
                    self.mode, self.alpha)  # fmt: skip

    def save(self, folder: Path) -> Path:
        """Save the ranker into ``folder``, its sidecar recording the fusion: mode, α and
        the retriever's folder (relative to ``folder``) with its sidecar's SHA-256. The
        retriever must be a saved :class:`~coldrec.retrieval.two_tower.TwoTower`."""
        if not isinstance(self.ranker, SequentialRecommender):
            raise TypeError("only a sequential ranker's fusion can be saved")
        if not isinstance(self.retriever, TwoTower) or self.retriever.folder is None:
            raise TypeError("the retriever must be a saved Two-Tower model")
        retriever = self.retriever.folder.resolve()
        fusion = {
            "mode": self.mode,
            "alpha": self.alpha,
            "retriever": os.path.relpath(retriever, Path(folder).resolve()),
            "retriever_sha256": file_sha256(retriever / SIDECAR),
        }
        return self.ranker.save(folder, extra={"fusion": fusion})

    @classmethod
    def load(
        cls, folder: Path, dataset: Dataset | None = None, retriever: TwoTower | None = None
    ) -> FusedRanker:
        """The fused ranker saved in ``folder``; its retriever is loaded from where
        ``fusion.json`` says, unless given. A retriever other than the one it was saved
        with is refused."""
        folder = Path(folder)
        ranker = SequentialRecommender.load(folder, dataset)
        fusion = read_json(folder / SIDECAR).get("fusion")
        if not isinstance(fusion, dict):
            raise DataError(f"{folder / SIDECAR}: a ranker without fusion settings")
        if retriever is None:
            retriever = TwoTower.load((folder / fusion["retriever"]).resolve(), dataset)
        if retriever.folder is None or (
            file_sha256(retriever.folder / SIDECAR) != fusion["retriever_sha256"]
        ):
            raise DataError(f"{folder}: the retriever is not the Two-Tower model it was saved "
                            f"with ({fusion['retriever']})")  # fmt: skip
        return cls(ranker, retriever, fusion["mode"], fusion["alpha"])


def fuse(ranker: np.ndarray, retriever: np.ndarray, mode: FusionMode, alpha: float) -> np.ndarray:
    """The fused scores of candidate rows (see the module doc for the modes)."""
    if mode == "tw":
        return retriever
    if mode == "sas":
        return ranker
    tw, sas = minmax(retriever), minmax(ranker)
    return alpha * np.where(np.isnan(sas), tw, sas) + (1 - alpha) * tw


def choose_alpha(
    ranker: Scorer, view: Dataset, candidates: Candidates, alphas: Sequence[float]
) -> tuple[float, list[dict[str, float]]]:
    """The α of ``alphas`` with the best selection score on the validation ``view`` (the
    retriever's scores: the validation ``candidates``' own), and the whole curve (α, warm
    and cold Recall@20, score) for the report."""
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

    def __init__(self, ranker: Scorer) -> None:
        self.ranker = ranker
        self._scores: dict[tuple[bytes, ...], np.ndarray] = {}

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        asked = (users, np.zeros(0) if items is None else items)
        key = tuple(hashlib.blake2b(np.ascontiguousarray(a).tobytes()).digest() for a in asked)
        if key not in self._scores:
            self._scores[key] = np.asarray(self.ranker.score(users, items), dtype=np.float32)
        return self._scores[key]
