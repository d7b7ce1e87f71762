"""Round-robin interleaving of two ranked lists (STARS's RR: the next-item list and the
general-interest list, paper Table 1)."""

from __future__ import annotations

import numpy as np

__all__ = ["round_robin"]


def round_robin(first: np.ndarray, second: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` distinct items taken alternately from ``first`` and
    ``second`` (``users × n`` ranked item ids, ``-1`` for empty slots), starting with
    ``first``; an item already taken is skipped, and a list that runs out leaves the
    rest to the other. Rows with fewer than ``k`` distinct items end in ``-1``."""
    if first.shape[0] != second.shape[0]:
        raise ValueError(f"the two lists need the same rows, got {first.shape[0]} and "
                         f"{second.shape[0]}")  # fmt: skip
    out = np.full((first.shape[0], k), -1, dtype=np.int64)
    for row in range(first.shape[0]):
        taken: list[int] = []
        seen: set[int] = set()
        for item in _alternate(first[row], second[row]):
            if item >= 0 and item not in seen:
                seen.add(item)
                taken.append(int(item))
                if len(taken) == k:
                    break
        out[row, : len(taken)] = taken
    return out


def _alternate(a: np.ndarray, b: np.ndarray) -> list[int]:
    """``a[0], b[0], a[1], b[1], …``, the longer list's tail at the end."""
    both = min(len(a), len(b))
    woven = np.empty(2 * both, dtype=np.int64)
    woven[0::2], woven[1::2] = a[:both], b[:both]
    return [*woven.tolist(), *a[both:].tolist(), *b[both:].tolist()]
