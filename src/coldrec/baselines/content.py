"""ItemKNN-content: a user's content vector against every item's text vector."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig, user_content_vectors
from coldrec.training.scores import without_unknown_users

__all__ = ["ItemKNNContent", "ItemKNNContentConfig"]


class ItemKNNContentConfig(BaseModel):
    """ItemKNN-content settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["itemknn"] = "itemknn"
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """How item text (``title | cat > sub > leaf``) becomes vectors."""
    last_n: int = Field(50, gt=0)
    """The user vector averages this many of the user's most recent distinct items."""

    def build(self) -> ItemKNNContent:
        return ItemKNNContent(self)


class ItemKNNContent:
    """Score = cosine of the user content vector (thesis eq. 4.2: the normalised mean of
    the last ``last_n`` distinct history items' text vectors) and each item's text
    vector (eq. 4.1). Cold items are scored like any other: this is the content bar
    every cold-start method has to clear. Users without history are not scored (NaN).
    """

    def __init__(self, config: ItemKNNContentConfig | None = None) -> None:
        self.config = config or ItemKNNContentConfig()
        self.item_vectors = np.zeros((0, 0), dtype=np.float32)
        self.user_vectors = np.zeros((0, 0), dtype=np.float32)

    def fit(self, dataset: Dataset) -> Self:
        self.item_vectors = TextEncoder(self.config.encoder).encode(dataset.item_text)
        self.user_vectors = user_content_vectors(
            dataset, self.item_vectors, HISTORY_SPLITS, self.config.last_n
        )
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        queries = self.user_vectors[users]
        known = np.abs(queries).sum(axis=1) > 0  # a zero vector: no history
        if items is None:
            return without_unknown_users(queries @ self.item_vectors.T, known)
        picked = np.einsum("ud,umd->um", queries, self.item_vectors[np.maximum(items, 0)])
        return without_unknown_users(np.where(items < 0, np.float32(np.nan), picked), known)
