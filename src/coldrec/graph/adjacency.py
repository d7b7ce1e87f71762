"""The normalised adjacency of the user–item graph that LightGCN-style models propagate
over: nodes are the users, then the items; ``Â = D^{-1/2} A D^{-1/2}`` with ``A`` the
symmetric 0/1 bipartite adjacency of the training interactions and ``D`` its degrees
(a node without edges keeps a zero row)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["normalised_adjacency"]


def normalised_adjacency(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> torch.Tensor:
    """``Â`` as a coalesced sparse COO tensor of ``(n_users + n_items)²``; a (user, item)
    pair given twice is one edge."""
    pairs = np.unique(np.stack([np.asarray(users, np.int64), np.asarray(items, np.int64)]),
                      axis=1)  # fmt: skip
    rows = np.concatenate([pairs[0], pairs[1] + n_users])
    cols = np.concatenate([pairs[1] + n_users, pairs[0]])
    n = n_users + n_items
    degree = np.bincount(rows, minlength=n).astype(np.float64)
    scale = np.zeros(n)
    scale[degree > 0] = degree[degree > 0] ** -0.5
    values = scale[rows] * scale[cols]
    order = np.lexsort((cols, rows))
    return torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows[order], cols[order]])),
                                   torch.as_tensor(values[order], dtype=torch.float32), (n, n),
                                   check_invariants=True).coalesce()  # fmt: skip
