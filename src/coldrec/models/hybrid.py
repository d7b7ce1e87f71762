"""BM25 + dense hybrid: per-user normalised scores mixed by α (weighted fusion)."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec.data.dataset import Dataset
from coldrec.models.bm25 import BM25, BM25Config
from coldrec.models.content import ItemKNNContent, ItemKNNContentConfig

__all__ = ["Hybrid", "HybridConfig", "minmax"]


class HybridConfig(BaseModel):
    """Hybrid settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["hybrid"] = "hybrid"
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the dense (ItemKNN-content) score; BM25 gets ``1 - alpha``."""
    dense: ItemKNNContentConfig = Field(default_factory=ItemKNNContentConfig)
    bm25: BM25Config = Field(default_factory=BM25Config)

    def build(self) -> Hybrid:
        return Hybrid(self)


class Hybrid:
    """``alpha · minmax(dense) + (1 - alpha) · minmax(bm25)``, where ``minmax`` rescales
    each user's scores over the scored items (the catalogue, or the candidates; padding
    left out) to [0, 1], so that the two scales are comparable (a user whose scores are
    all equal gets 0 from that part)."""

    def __init__(self, config: HybridConfig | None = None) -> None:
        self.config = config or HybridConfig()
        self.dense = ItemKNNContent(self.config.dense)
        self.bm25 = BM25(self.config.bm25)

    def fit(self, dataset: Dataset) -> Self:
        self.dense.fit(dataset)
        self.bm25.fit(dataset)
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        alpha = self.config.alpha
        dense = minmax(self.dense.score(users, items))
        lexical = minmax(self.bm25.score(users, items))
        return (alpha * dense + (1 - alpha) * lexical).astype(np.float32)


def minmax(scores: np.ndarray) -> np.ndarray:
    """Rescale each row to [0, 1] over its scored (non-NaN) entries; NaN stays NaN and a
    constant row becomes zeros."""
    known = ~np.isnan(scores)
    filled_low = np.where(known, scores, np.inf).min(axis=1, keepdims=True)
    filled_high = np.where(known, scores, -np.inf).max(axis=1, keepdims=True)
    span = filled_high - filled_low
    scaled = np.divide(scores - filled_low, span, out=np.zeros_like(scores), where=span > 0)
    return np.where(known, scaled, np.nan)
