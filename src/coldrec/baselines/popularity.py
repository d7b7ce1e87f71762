"""Popularity: every user gets the items with the most interactions before test (or in
the last ``recent_days`` of that history; with 30 days it is the evaluation's fallback
for users without history, :mod:`coldrec.eval.fallback`)."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec.data.dataset import Dataset
from coldrec.eval.fallback import recent_popularity
from coldrec.training.scores import scores_at

__all__ = ["Popularity", "PopularityConfig"]


class PopularityConfig(BaseModel):
    """Popularity settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["popularity"] = "popularity"
    weighted: bool = True
    """Sum interaction weights (a weak positive counts 0.3) rather than count rows."""
    recent_days: float | None = Field(None, gt=0)
    """Count only the last this many days before test (``None``: all of the history)."""

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
        self.item_scores = recent_popularity(dataset, self.config.recent_days,
                                             self.config.weighted).astype(np.float32)  # fmt: skip
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        full = np.broadcast_to(self.item_scores, (len(users), len(self.item_scores)))
        return scores_at(full, items)
