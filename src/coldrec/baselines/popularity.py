"""Popularity: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.training.scores import scores_at

__all__ = ["Popularity", "PopularityConfig"]


class PopularityConfig(BaseModel):
    """Popularity settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["popularity"] = "popularity"
    weighted: bool = True
    """Sum interaction weights (a weak positive counts 0.3) rather than count rows."""

    def build(self) -> Popularity:
        return Popularity(self)


class Popularity:
    """Scores each item by its (weighted) number of interactions before test.

    Items never interacted with before test (all cold items) score 0, so popularity
    cannot recommend a cold item above any warm one.
    """

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.item_scores = np.zeros(0, dtype=np.float32)

    def fit(self, dataset: Dataset) -> Self:
        rows = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
        weights = rows["weight"].to_numpy() if self.config.weighted else None
        counts = np.bincount(rows["item_idx"], weights=weights, minlength=dataset.n_items)
        self.item_scores = counts.astype(np.float32)
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        full = np.broadcast_to(self.item_scores, (len(users), len(self.item_scores)))
        return scores_at(full, items)
