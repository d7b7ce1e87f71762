"""Negative samplers behind one interface: ``sample(users, k) -> users × k item ids``."""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["NegativeSampler", "UniformSampler"]


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
