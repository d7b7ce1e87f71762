"""Per-row item lists (users' histories, targets, candidate pools) and the test of
which entries of a users × K item matrix are in their row's list."""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["entry_rows", "hit_matrix", "item_lists", "keep_items", "list_lengths"]


def item_lists(rows: np.ndarray, items: np.ndarray, n_rows: int, n_items: int) -> sparse.csr_array:
    """Per-row item lists as a boolean ``n_rows × n_items`` :class:`scipy.sparse.csr_array`
    from parallel ``rows``/``items`` arrays: row ``r``'s distinct items, sorted, are
    ``indices[indptr[r]:indptr[r + 1]]``. Select rows (in any order) with ``lists[rows]``."""
    ones = np.ones(len(rows), dtype=bool)
    lists = sparse.csr_array((ones, (rows, items)), shape=(n_rows, n_items))
    lists.sum_duplicates()
    return lists


def list_lengths(lists: sparse.csr_array) -> np.ndarray:
    """The number of items in each row's list."""
    return np.diff(lists.indptr)


def entry_rows(lists: sparse.csr_array) -> np.ndarray:
    """The row of every stored item (parallel to ``lists.indices``)."""
    return np.repeat(np.arange(lists.shape[0]), list_lengths(lists))


def keep_items(lists: sparse.csr_array, item_mask: np.ndarray) -> sparse.csr_array:
    """The lists with only the items whose ``item_mask`` entry is true."""
    keep = item_mask[lists.indices]
    return item_lists(entry_rows(lists)[keep], lists.indices[keep], *lists.shape)


def hit_matrix(ranked: np.ndarray, targets: sparse.csr_array) -> np.ndarray:
    """Which ranked items are in their row's list: ``ranked`` is ``users × K`` item ids
    (``-1`` for an empty slot, never a hit), ``targets`` the lists (:func:`item_lists`)
    with one row per row of ``ranked``."""
    n_users, _ = ranked.shape
    target_items = targets.indices.astype(np.int64)
    width = int(max(ranked.max(initial=0), target_items.max(initial=0))) + 1
    target_keys = np.sort(entry_rows(targets) * width + target_items)
    if not len(target_keys):
        return np.zeros(ranked.shape, dtype=bool)
    ranked_keys = np.arange(n_users, dtype=np.int64)[:, None] * width + ranked
    # A binary search into the (few) sorted target keys: np.isin sorts the whole users × K
    # matrix of ranked keys instead, 4.8× slower on Beauty's 2,000 candidates per user
    # (benchmarks/evaluate_speed.py).
    found = np.searchsorted(target_keys, ranked_keys).clip(max=len(target_keys) - 1)
    return (target_keys[found] == ranked_keys) & (ranked >= 0)
