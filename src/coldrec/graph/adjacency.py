"""The normalised adjacency of the user–item graph that LightGCN-style models propagate
over: nodes are the users, then the items; ``Â = D^{-1/2} A D^{-1/2}`` with ``A`` the
symmetric 0/1 bipartite adjacency of the training interactions and ``D`` its degrees
(a node without edges keeps a zero row). :func:`spread` multiplies by it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["normalised_adjacency", "spread"]


def normalised_adjacency(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> torch.Tensor:
    """``Â`` as a sparse CSR tensor of ``(n_users + n_items)²``; a (user, item) pair given
    twice is one edge."""
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
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.as_tensor(starts), torch.as_tensor(cols[order]),
                                       torch.as_tensor(values[order], dtype=torch.float32),
                                       (n, n), check_invariants=True)  # fmt: skip


def spread(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``Â @ x`` for a symmetric ``Â`` (:func:`normalised_adjacency`), differentiable in
    ``x``: its gradient ``Âᵀ g`` is ``Â g``, one more CSR product, where torch's sparse
    backward builds ``Âᵀ`` at every call (3 layers forward and back on Beauty's graph, one
    thread: 1.9× faster, 2.9× with the full model's augmented edges;
    ``benchmarks/graph_speed.py``)."""
    return _SymmetricProduct.apply(adjacency, x)


class _SymmetricProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad
