"""Negative samplers behind one interface: ``sample(users, k) -> users × k item ids``."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from scipy import sparse

from coldrec._util.sparse import hit_matrix
from coldrec.data.candidates import Candidates

__all__ = ["NegativeSampler", "PoolSampler", "UniformSampler"]


class NegativeSampler(Protocol):
    """Draws ``k`` negative item ids for each row of ``users``."""

    def sample(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """A ``len(users) × k`` long tensor of item ids (the model's own item index)."""
        ...


class UniformSampler:
    """Uniform over a pool of items (by default every item seen in training: an item the
    model never trained cannot teach it anything as a negative)."""

    def __init__(self, pool: torch.Tensor) -> None:
        if len(pool) == 0:
            raise ValueError("the negative pool is empty")
        self.pool = pool

    def sample(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        picks = torch.randint(len(self.pool), (len(users), k), generator=generator)
        return self.pool[picks]


class PoolSampler:
    """Hard negatives: uniform over each user's own pool (e.g. their Two-Tower recall
    candidates with seen and cold items removed); a slot whose draw lands on an empty
    pool entry, or a user without a pool, falls back to ``fallback``."""

    def __init__(self, pools: torch.Tensor, fallback: NegativeSampler) -> None:
        self.pools = pools
        self.fallback = fallback

    @classmethod
    def from_candidates(
        cls,
        candidates: Candidates,
        n_users: int,
        removed: np.ndarray,
        seen: sparse.csr_array,
        fallback: NegativeSampler,
    ) -> PoolSampler:
        """Pools from retrieved candidates (Dataset item ids): items in ``removed`` (a
        per-item bool mask, e.g. cold items) or among the user's ``seen`` items (rows =
        user ids) are blanked to ``-1``."""
        items = candidates.items
        rows = seen[candidates.users]
        valid = (items >= 0) & ~removed[np.maximum(items, 0)]
        valid &= ~hit_matrix(items, rows)
        pools = np.full((n_users, max(candidates.width, 1)), -1, dtype=np.int64)
        pools[candidates.users, : items.shape[1]] = np.where(valid, items, -1)
        return cls(torch.as_tensor(pools), fallback)

    def sample(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        columns = torch.randint(self.pools.shape[1], (len(users), k), generator=generator)
        picked = self.pools[users[:, None], columns]
        backup = self.fallback.sample(users, k, generator)
        return torch.where(picked >= 0, picked, backup)
