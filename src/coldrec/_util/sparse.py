"""Per-row item lists (users' histories, targets, candidate pools) and the test of
which entries of a users × K item matrix are in their row's list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Csr", "hit_matrix"]


@dataclass(frozen=True)
class Csr:
    """Per-row item lists: row ``r`` owns ``items[indptr[r]:indptr[r + 1]]`` (sorted)."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, items: np.ndarray, n_rows: int) -> Csr:
        """Distinct items per row from parallel ``rows``/``items`` arrays."""
        pairs = np.unique(np.stack([rows, items]).astype(np.int64).reshape(2, -1), axis=1)
        return cls(np.searchsorted(pairs[0], np.arange(n_rows + 1)), pairs[1])

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def rows(self) -> np.ndarray:
        """The row of every stored item."""
        return np.repeat(np.arange(len(self.indptr) - 1), self.counts)

    def select(self, rows: np.ndarray) -> Csr:
        """The lists of the given (distinct) rows, in that order."""
        position = np.full(len(self.indptr) - 1, -1)
        position[rows] = np.arange(len(rows))
        new_rows = position[self.rows()]
        keep = new_rows >= 0
        return Csr.of(new_rows[keep], self.items[keep], len(rows))

    def where(self, item_mask: np.ndarray) -> Csr:
        """Keep only items whose ``item_mask`` entry is true."""
        keep = item_mask[self.items]
        return Csr.of(self.rows()[keep], self.items[keep], len(self.indptr) - 1)


def hit_matrix(
    ranked: np.ndarray, target_indptr: np.ndarray, target_items: np.ndarray
) -> np.ndarray:
    """Which ranked items are targets.

    ``ranked`` is ``users × K`` item ids (``-1`` for an empty slot, never a hit); the
    targets are in CSR form: user ``u``'s distinct targets are
    ``target_items[target_indptr[u]:target_indptr[u + 1]]``.
    """
    n_users, _ = ranked.shape
    width = int(max(ranked.max(initial=0), target_items.max(initial=0))) + 1
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(target_indptr))
    target_keys = np.sort(rows * width + target_items)
    if not len(target_keys):
        return np.zeros(ranked.shape, dtype=bool)
    ranked_keys = np.arange(n_users, dtype=np.int64)[:, None] * width + ranked
    # A binary search into the (few) sorted target keys: np.isin sorts the whole users × K
    # matrix of ranked keys instead, 4.8× slower on Beauty's 2,000 candidates per user
    # (benchmarks/evaluate_speed.py).
    found = np.searchsorted(target_keys, ranked_keys).clip(max=len(target_keys) - 1)
    return (target_keys[found] == ranked_keys) & (ranked >= 0)
