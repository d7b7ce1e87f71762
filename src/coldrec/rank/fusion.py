"""Fusion of a ranker's scores with the retriever's over the retrieved candidates.

Modes (per user, over that user's candidates):

- ``sas``: the ranker's score alone (an ID-only ranker leaves cold items unranked);
- ``tw``: the retriever's score alone (Two-Tower-only ranking);
- ``hybrid``: ``α·(w·R + (1 − w)·C) + (1 − α)·C`` with ``R = minmax(ranker)`` and
  ``C = minmax(retriever)``, the content path (the Two-Tower's content tower is what
  scores an item it never trained). ``minmax`` rescales each user's scores over the
  candidates to [0, 1].

``w`` is the **evidence weight** of each item (:class:`EvidenceBlend`): how far its ranker
score can be trusted, from the evidence its ranker vector trained on, ``e = n + γ·l``
(``n`` its real training interactions, ``l`` the pseudo-label rows naming it, which count
``γ`` = ``label_share`` each), as ``w = e / (e + κ)``. An item with no evidence keeps the
content path whole, one with plenty takes the ranker's score, and a label-only item stays
mostly on the content path. ``κ = 0`` is the binary fusion: ``w = 1`` for every item the
ranker can score (so a delta ranker's cold items keep their content + transferred-delta
score). Where the ranker cannot score an item (NaN: an ID ranker's untrained items)
``w = 0``, whatever ``κ``.

α and κ are chosen together on the validation view (:func:`choose_fusion`), never on
test: a sweep over the grid scored by a :class:`~coldrec.eval.protocol.Selection` (by
default the mean of warm and cold Recall@20), which also gives the warm/cold trade-off
curve.

A :class:`FusedRanker` of a trained ranker and a saved Two-Tower saves as the ranker's
folder, its sidecar recording the fusion (mode, α, the blend, where the retriever is), and
loads back to the same scores.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from coldrec._util.io import file_sha256, read_json
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.errors import DataError
from coldrec.eval.protocol import Scorer, Selection, evaluate
from coldrec.rank.sequential import SequentialRecommender
from coldrec.retrieval.two_tower import TwoTower
from coldrec.training.saving import SIDECAR, import_class
from coldrec.training.scores import minmax

__all__ = ["EvidenceBlend", "FusedRanker", "FusionChoice", "FusionMode", "choose_fusion", "fuse"]

FusionMode = Literal["sas", "tw", "hybrid"]


@dataclass(frozen=True)
class EvidenceBlend:
    """The evidence weight ``w = e / (e + κ)``, ``e = n + γ·l`` (module doc)."""

    kappa: float = 0.0
    """Evidence at which the ranker's score and the content path weigh the same; 0 is
    the binary fusion (every item the ranker scores takes its score)."""
    label_share: float = 0.1
    """What a pseudo-label row counts for, in real interactions (γ)."""

    def weights(self, ranker: Scorer) -> np.ndarray | None:
        """Each item's weight (``None``: 1 for every item, the binary fusion). A ranker
        without an ``evidence`` method is trusted wherever it scores."""
        evidence = getattr(ranker, "evidence", None)
        if self.kappa == 0 or evidence is None:
            return None
        return self.of(evidence(self.label_share))

    def of(self, evidence: np.ndarray) -> np.ndarray:
        """The weights of items with these amounts of evidence."""
        if self.kappa == 0:
            return np.ones(len(evidence), dtype=np.float32)
        return (evidence / (evidence + self.kappa)).astype(np.float32)


class FusedRanker:
    """A :class:`~coldrec.eval.protocol.Scorer` of candidate matrices only: the
    ``ranker``'s scores fused with the ``retriever``'s by ``mode``, ``alpha`` and the
    evidence ``blend``."""

    def __init__(
        self,
        ranker: Scorer,
        retriever: Scorer,
        mode: FusionMode,
        alpha: float,
        blend: EvidenceBlend | None = None,
    ) -> None:
        self.ranker, self.retriever, self.mode, self.alpha = ranker, retriever, mode, alpha
        self.blend = blend or EvidenceBlend()
        self._weights = self.blend.weights(ranker)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if items is None:
            raise ValueError("fusion scores retrieved candidates only: pass the candidate matrix")
        retriever = np.asarray(self.retriever.score(users, items), dtype=np.float32)
        if self.mode == "tw":
            return retriever
        weights = None if self._weights is None else self._weights[np.maximum(items, 0)]
        return fuse(np.asarray(self.ranker.score(users, items), dtype=np.float32), retriever,
                    self.mode, self.alpha, weights)  # fmt: skip

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
            "blend": asdict(self.blend),
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
        fields = read_json(folder / SIDECAR)
        kind = import_class(str(fields.get("class")), folder / SIDECAR)
        if not issubclass(kind, SequentialRecommender):
            raise DataError(f"{folder / SIDECAR}: holds a {kind.__name__}, not a sequential ranker")
        ranker = kind.load(folder, dataset)
        fusion = fields.get("fusion")
        if not isinstance(fusion, dict):
            raise DataError(f"{folder / SIDECAR}: a ranker without fusion settings")
        if retriever is None:
            retriever = TwoTower.load((folder / fusion["retriever"]).resolve(), dataset)
        if retriever.folder is None or (
            file_sha256(retriever.folder / SIDECAR) != fusion["retriever_sha256"]
        ):
            raise DataError(f"{folder}: the retriever is not the Two-Tower model it was saved "
                            f"with ({fusion['retriever']})")  # fmt: skip
        blend = EvidenceBlend(**fusion.get("blend", {}))  # runs saved before the blend: binary
        return cls(ranker, retriever, fusion["mode"], fusion["alpha"], blend)


def fuse(
    ranker: np.ndarray,
    retriever: np.ndarray,
    mode: FusionMode,
    alpha: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The fused scores of candidate rows (see the module doc for the modes);
    ``weights`` are the candidates' evidence weights (``None``: all 1)."""
    if mode == "tw":
        return retriever
    if mode == "sas":
        return ranker
    tw, sas = minmax(retriever), minmax(ranker)
    trust = np.where(np.isnan(sas), np.float32(0), np.float32(1) if weights is None else weights)
    return alpha * trust * np.nan_to_num(sas) + (1 - alpha * trust) * tw


@dataclass(frozen=True)
class FusionChoice:
    """The α and blend chosen on validation, and the sweep's curve: one point per grid
    value (α, κ, warm and cold Recall@20, the selection's score)."""

    alpha: float
    blend: EvidenceBlend
    curve: list[dict[str, Any]]


def choose_fusion(
    ranker: Scorer,
    view: Dataset,
    candidates: Candidates,
    alphas: Sequence[float],
    kappas: Sequence[float] = (0.0,),
    label_share: float = EvidenceBlend.label_share,
    selection: Selection | None = None,
) -> FusionChoice:
    """The α and κ of the grid ``alphas × kappas`` whose fused ranking scores best by
    ``selection`` on the validation ``view`` (the retriever's scores: the validation
    ``candidates``' own), and the whole curve for the report. The ranker's scores are
    computed once for the whole grid."""
    selection = selection or Selection()
    curve: list[dict[str, Any]] = []
    remembered = _Remembered(ranker)
    for kappa, alpha in itertools.product(kappas, alphas):
        blend = EvidenceBlend(kappa, label_share)
        fused = FusedRanker(remembered, candidates, "hybrid", alpha, blend)
        segments = evaluate(fused, view, ks=(20,), candidates=candidates)["segments"]
        warm, cold = segments["warm"]["recall@20"], segments["cold"]["recall@20"]
        curve.append({"alpha": alpha, "kappa": kappa, "warm": warm, "cold": cold,
                      "score": selection.score(warm, cold)})  # fmt: skip
    best = max(curve, key=lambda point: selection.key(point["warm"], point["cold"]))
    return FusionChoice(best["alpha"], EvidenceBlend(best["kappa"], label_share), curve)


class _Remembered:
    """A fitted ranker whose scores are computed once per (users, items) query: every
    point of a sweep asks for the same ones, and only the fusion weights change."""

    def __init__(self, ranker: Scorer) -> None:
        self.ranker = ranker
        self.evidence = getattr(ranker, "evidence", None)
        self._scores: dict[tuple[bytes, ...], np.ndarray] = {}

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        asked = (users, np.zeros(0) if items is None else items)
        key = tuple(hashlib.blake2b(np.ascontiguousarray(a).tobytes()).digest() for a in asked)
        if key not in self._scores:
            self._scores[key] = np.asarray(self.ranker.score(users, items), dtype=np.float32)
        return self._scores[key]
