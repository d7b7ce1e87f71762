"""The documented fallback for users without history: the items most popular in the
last :data:`COLD_USER_DAYS` days of the history (interaction weights summed). The
evaluation ranks test users without history by it (``cold_users: popularity``), and
``coldrec serve`` answers with it (within the request's filters)."""

from __future__ import annotations

import numpy as np

from coldrec.data.dataset import HISTORY_SPLITS, Dataset

__all__ = ["COLD_USER_DAYS", "COLD_USER_FALLBACK", "DAY", "RecentPopularity", "recent_popularity"]

DAY = 86_400
COLD_USER_DAYS = 30.0
"""The fallback's window, in days before the end of the history."""
COLD_USER_FALLBACK = f"popularity of the last {COLD_USER_DAYS:g} days"
"""How evaluation results name the fallback."""


def recent_popularity(dataset: Dataset, days: float | None, weighted: bool = True) -> np.ndarray:
    """Per item, its (weighted) interactions before test, within the last ``days`` days
    of that history (``None``: all of it)."""
    rows = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
    if days is not None and len(rows):
        rows = rows.loc[rows["ts"] >= rows["ts"].max() - days * DAY]
    weights = rows["weight"].to_numpy() if weighted else None
    return np.bincount(rows["item_idx"], weights=weights, minlength=dataset.n_items)


class RecentPopularity:
    """The fallback as a full-catalogue scorer: every user gets the same scores."""

    def __init__(self, dataset: Dataset, days: float = COLD_USER_DAYS) -> None:
        self.item_scores = recent_popularity(dataset, days).astype(np.float32)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if items is not None:
            raise ValueError("the fallback ranks the whole catalogue")
        return np.broadcast_to(self.item_scores, (len(users), len(self.item_scores))).copy()
