"""Candidate sets: the top-M items retrieved per user, the hand-off from retrieval to
every later stage.

On disk, ``candidates.parquet`` has one row per (user, candidate): ``user`` and ``item``
(Dataset ids, int64), ``score`` (float32, the retriever's score) and ``rank`` (int32,
1 = best), sorted by user then rank. In memory, :class:`Candidates` holds the same as a
``users × M`` matrix of item ids (``-1`` where a user has fewer than ``M``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec._util.io import atomic_write, require_file
from coldrec.errors import DataError

__all__ = ["Candidates"]

_COLUMNS = ("user", "item", "score", "rank")


@dataclass(frozen=True)
class Candidates:
    """Row ``r`` lists the candidates of user ``users[r]``, best first."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.items.shape != self.scores.shape or self.items.shape[0] != len(self.users):
            raise ValueError(
                f"users ({len(self.users)}), items {self.items.shape} and scores "
                f"{self.scores.shape} must agree"
            )

    def check(self, n_items: int) -> None:
        """Raise :class:`DataError` unless every id is ``-1`` or an item id below
        ``n_items`` and no user lists an item twice (a duplicate would count as two hits)."""
        items = self.items
        if items.size and (items.min() < -1 or items.max() >= n_items):
            raise DataError(
                f"candidate item ids must lie in [-1, {n_items}), got {items.min()}..{items.max()}"
            )
        ordered = np.sort(items, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            row = int(np.flatnonzero(repeated.any(axis=1))[0])
            raise DataError(f"user {self.users[row]} has a candidate item listed twice")
        if len(np.unique(self.users)) != len(self.users):
            raise DataError("a user has two candidate rows")

    @property
    def width(self) -> int:
        """M, the number of candidate slots per user."""
        return int(self.items.shape[1])

    def for_users(self, users: np.ndarray) -> np.ndarray:
        """The item matrix with one row per entry of ``users`` (``-1`` rows for unknown users)."""
        position = pd.Index(self.users).get_indexer(users)
        rows = np.full((len(users), self.width), -1, dtype=np.int64)
        known = position >= 0
        rows[known] = self.items[position[known]]
        return rows

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """The retrieval scores of ``items`` (a matrix of these users' candidates, in the
        order of :meth:`for_users`); NaN where an entry is padding or not a candidate. So
        candidates are a :class:`~coldrec.eval.protocol.Scorer` of their own retrieval."""
        if items is None:
            raise ValueError("candidates score their own items only: pass the item matrix")
        position = pd.Index(self.users).get_indexer(users)
        rows = np.full(items.shape, np.nan, dtype=np.float32)
        known = position >= 0
        mine, scores = self.items[position[known]], self.scores[position[known]]
        width = min(items.shape[1], self.width)
        same = mine[:, :width] == items[known, :width]
        rows[known, :width] = np.where(
            same & (items[known, :width] >= 0), scores[:, :width], np.nan
        )
        return rows

    def to_frame(self) -> pd.DataFrame:
        """The long form written to ``candidates.parquet`` (padding slots left out)."""
        filled = self.items >= 0
        ranks = np.broadcast_to(np.arange(1, self.width + 1, dtype=np.int32), self.items.shape)
        return pd.DataFrame(
            {
                "user": np.repeat(self.users, filled.sum(axis=1)).astype(np.int64),
                "item": self.items[filled].astype(np.int64),
                "score": self.scores[filled].astype(np.float32),
                "rank": ranks[filled],
            }
        )

    def save(self, path: str | Path) -> Path:
        """Write ``candidates.parquet`` atomically."""
        path = Path(path)
        with atomic_write(path) as tmp:
            self.to_frame().to_parquet(tmp, index=False)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Candidates:
        """Read ``candidates.parquet`` back into matrix form, checking its columns."""
        path = require_file(path, "candidates")
        frame = pd.read_parquet(path)
        missing = [c for c in _COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}")
        frame = frame.sort_values(["user", "rank"], kind="stable")
        users, counts = np.unique(frame["user"].to_numpy(), return_counts=True)
        width = int(frame["rank"].max()) if len(frame) else 0
        rows = np.repeat(np.arange(len(users)), counts)
        cols = frame["rank"].to_numpy() - 1
        items = np.full((len(users), width), -1, dtype=np.int64)
        scores = np.full((len(users), width), -np.inf, dtype=np.float32)
        items[rows, cols] = frame["item"].to_numpy()
        scores[rows, cols] = frame["score"].to_numpy()
        return cls(users=users, items=items, scores=scores)
