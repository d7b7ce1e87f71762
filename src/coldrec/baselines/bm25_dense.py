"""BM25 + dense retrieval (the book's hybrid search): per-user normalised scores mixed by α."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec.baselines.bm25 import BM25, BM25Config
from coldrec.baselines.content import ItemKNNContent, ItemKNNContentConfig
from coldrec.data.dataset import Dataset
from coldrec.training.scores import minmax

__all__ = ["BM25Dense", "BM25DenseConfig"]


class BM25DenseConfig(BaseModel):
    """BM25 + dense settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bm25_dense"] = "bm25_dense"
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the dense (ItemKNN-content) score; BM25 gets ``1 - alpha``."""
    dense: ItemKNNContentConfig = Field(default_factory=ItemKNNContentConfig)
    bm25: BM25Config = Field(default_factory=BM25Config)

    def build(self) -> BM25Dense:
        return BM25Dense(self)


class BM25Dense:
    """``alpha · minmax(dense) + (1 - alpha) · minmax(bm25)``, where ``minmax`` rescales
    each user's scores over the scored items (the catalogue, or the candidates; padding
    left out) to [0, 1], so that the two scales are comparable (a user whose scores are
    all equal gets 0 from that part)."""

    def __init__(self, config: BM25DenseConfig | None = None) -> None:
        self.config = config or BM25DenseConfig()
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
