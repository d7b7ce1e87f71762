"""Negative samplers: per user behind one interface (``sample(users, k) -> users × k
item ids``), and per positive item from its subclass (:class:`SubclassSampler`, STARS)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from scipy import sparse

from coldrec._util.sparse import hit_matrix
from coldrec.data.candidates import Candidates

__all__ = ["NegativeSampler", "PoolSampler", "SubclassSampler", "UniformSampler"]


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


class SubclassSampler:
    """Subclass-aware negatives (STARS): for each positive item, ``share`` of its ``k``
    negatives drawn uniformly from the other items of its leaf (subclass) in ``pool``,
    the rest uniformly from the whole ``pool``; never the positive itself. A positive
    whose leaf holds no other pool item takes all its negatives from the whole pool.

    ``item_leaf``: each item's leaf id (``-1``: none); ``pool``: the items that may be
    negatives (e.g. those seen in training)."""

    def __init__(self, item_leaf: np.ndarray, pool: np.ndarray, share: float = 0.5) -> None:
        if not 0 <= share <= 1:
            raise ValueError(f"share must be within [0, 1], got {share}")
        pool = np.unique(np.asarray(pool, dtype=np.int64))
        if len(pool) < 2:
            raise ValueError("the negative pool needs at least two items")
        leaves = np.asarray(item_leaf, dtype=np.int64)
        order = np.lexsort((pool, leaves[pool]))  # pool items grouped by leaf
        self.share = share
        self.item_leaf = torch.as_tensor(leaves)
        self.grouped = torch.as_tensor(pool[order])
        grouped_leaves = leaves[pool[order]]
        n_leaves = int(leaves.max()) + 1 if len(leaves) else 0
        starts = np.searchsorted(grouped_leaves, np.arange(n_leaves + 1))
        self.leaf_start = torch.as_tensor(starts[:-1])
        self.leaf_size = torch.as_tensor(np.diff(starts))
        self.pool = torch.as_tensor(pool)
        # where each item sits in ``grouped`` and in ``pool`` (-1: not in the pool)
        self.at_grouped = torch.full((len(leaves),), -1, dtype=torch.long)
        self.at_grouped[self.grouped] = torch.arange(len(pool))
        self.at_pool = torch.full((len(leaves),), -1, dtype=torch.long)
        self.at_pool[self.pool] = torch.arange(len(pool))

    def sample_for(
        self, positives: torch.Tensor, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """A ``len(positives) × k`` long tensor of negative item ids."""
        from_leaf = round(self.share * k)
        uniform = _skip_draw(self.pool, self.at_pool[positives], torch.zeros_like(positives),
                             torch.full_like(positives, len(self.pool)), k, generator)  # fmt: skip
        if from_leaf == 0:
            return uniform
        leaf = self.item_leaf[positives]
        has_leaf = leaf >= 0
        start = torch.where(has_leaf, self.leaf_start[leaf.clamp_min(0)], 0)
        size = torch.where(has_leaf, self.leaf_size[leaf.clamp_min(0)], 0)
        inside = self.at_grouped[positives]
        inside = torch.where((inside >= start) & (inside < start + size), inside - start, -1)
        others = size - (inside >= 0).long()
        usable = others > 0
        siblings = _skip_draw(self.grouped, inside, start, size.clamp_min(2), from_leaf,
                              generator)  # fmt: skip
        picked = uniform.clone()
        picked[:, :from_leaf] = torch.where(usable[:, None], siblings, uniform[:, :from_leaf])
        return picked


def _skip_draw(
    items: torch.Tensor,
    excluded: torch.Tensor,
    start: torch.Tensor,
    size: torch.Tensor,
    k: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Per row, ``k`` uniform draws from ``items[start : start + size]`` leaving out
    the offset ``excluded`` within it (``-1``: nothing left out)."""
    left_out = (excluded >= 0).long()
    span = (size - left_out).clamp_min(1)
    draw = (torch.rand(len(start), k, generator=generator) * span[:, None]).long()
    draw = torch.minimum(draw, span[:, None] - 1)
    draw = draw + ((draw >= excluded[:, None]) & (excluded[:, None] >= 0)).long()
    # rows with nothing to draw (the caller discards them) must still index in range
    return items[(start[:, None] + draw).clamp_max(len(items) - 1)]
