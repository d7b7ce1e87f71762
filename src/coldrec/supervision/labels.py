"""Pseudo labels, the hand-off from the LLM stages to the rankers (``DESIGN.md``).

``edges.parquet``: ``user``, ``item`` (Dataset ids, int64), ``weight`` (float), ``source``
(string: the stage or fallback that wrote the row). ``triplets.parquet``: ``user``,
``pos``, ``neg``, ``weight``, ``source``. Rows are kept only when the user and every
item are ids of the Dataset and the user has at least ``min_history`` (2) history
interactions, as in the thesis; everything dropped is counted by reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.data.dataset import Dataset
from coldrec.errors import DataError
from coldrec.recommender import history_splits

__all__ = ["EDGE_COLUMNS", "TRIPLET_COLUMNS", "Labels", "read_labels"]

log = logging.getLogger(__name__)

EDGE_COLUMNS = ("user", "item", "weight", "source")
TRIPLET_COLUMNS = ("user", "pos", "neg", "weight", "source")


@dataclass
class Labels:
    """Filtered pseudo edges and triplets, and what was dropped (reason → rows)."""

    edges: pd.DataFrame
    triplets: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def items(self) -> np.ndarray:
        """Every item id the labels mention."""
        ids = [self.edges["item"], self.triplets["pos"], self.triplets["neg"]]
        return np.unique(np.concatenate([c.to_numpy(np.int64) for c in ids]))


def read_labels(
    dataset: Dataset,
    edges: Path | None = None,
    triplets: Path | None = None,
    min_history: int = 2,
) -> Labels:
    """Read and filter the label files (either may be absent)."""
    counts = np.bincount(
        dataset.interactions.loc[dataset.interactions["split"].isin(history_splits()), "user_idx"],
        minlength=dataset.n_users,
    )
    dropped: dict[str, int] = {}
    kept = [
        _filtered(path, columns, item_columns, dataset, counts, min_history, dropped)
        for path, columns, item_columns in (
            (edges, EDGE_COLUMNS, ("item",)),
            (triplets, TRIPLET_COLUMNS, ("pos", "neg")),
        )
    ]
    if any(dropped.values()):
        log.info("labels dropped: %s", dropped)
    return Labels(edges=kept[0], triplets=kept[1], dropped=dropped)


def _filtered(
    path: Path | None,
    columns: tuple[str, ...],
    item_columns: tuple[str, ...],
    dataset: Dataset,
    history_counts: np.ndarray,
    min_history: int,
    dropped: dict[str, int],
) -> pd.DataFrame:
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns[:-2]}).assign(
            weight=pd.Series(dtype="float64"), source=pd.Series(dtype="string")
        )
    if not Path(path).is_file():
        raise DataError(f"label file not found: {path}")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    frame = frame[list(columns)]
    name = Path(path).stem
    user = frame["user"].to_numpy()
    known_user = (user >= 0) & (user < dataset.n_users)
    known_items = np.ones(len(frame), dtype=bool)
    for column in item_columns:
        ids = frame[column].to_numpy()
        known_items &= (ids >= 0) & (ids < dataset.n_items)
    enough = known_user & (history_counts[np.where(known_user, user, 0)] >= min_history)
    dropped[f"{name}_unknown_user"] = int((~known_user).sum())
    dropped[f"{name}_unknown_item"] = int((known_user & ~known_items).sum())
    dropped[f"{name}_short_history"] = int((known_user & known_items & ~enough).sum())
    keep = known_user & known_items & enough
    return frame.loc[keep].reset_index(drop=True)
