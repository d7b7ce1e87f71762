"""DropoutNet (Volkovs, Yu and Poutanen, NeurIPS 2017): a user tower over the teacher's
user vector and an item tower over ``[teacher item vector ‖ content]``, trained to
reproduce the BPR-MF teacher's score of each (user, item) pair — the training pair and
one uniform negative — while the item's preference part is dropped (set to zero) in a
``dropout`` share of the rows, so that content alone learns to stand in for it. A cold
item enters with a zero preference part; ``dropout = 1`` is a pure content model (warm
items too are scored from content alone).

Towers as the authors' code: hidden layers Linear → batch norm → tanh, then a linear
output of the teacher's dimension; hidden sizes ``[200, 100]`` as the ColdRec toolkit's.
PyTorch's default initialisation and batch-norm settings stand in for the authors', the
teacher's vectors are fed as learnt (the authors standardise and clip them), and each
pair has one negative (the authors add the teacher's top items per user)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from coldrec.coldstart.base import ContentModel, ContentModelConfig, mlp

__all__ = ["DropoutNet", "DropoutNetConfig"]


class DropoutNetConfig(ContentModelConfig):
    """DropoutNet settings."""

    kind: Literal["dropoutnet"] = "dropoutnet"
    dropout: float = Field(0.5, ge=0, le=1)
    """Share of each batch's rows whose item preference input is zeroed."""
    hidden: tuple[int, ...] = (200, 100)

    def build(self) -> DropoutNet:
        return DropoutNet(self)


class Towers(nn.Module):
    """The user tower and the item tower."""

    def __init__(self, dim: int, content_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.user = mlp([dim, *hidden, dim], batch_norm=True)
        self.item = mlp([dim + content_dim, *hidden, dim], batch_norm=True)


class DropoutNet(ContentModel):
    """DropoutNet over a BPR-MF teacher (module doc)."""

    config: DropoutNetConfig

    def __init__(self, config: DropoutNetConfig | None = None) -> None:
        super().__init__(config or DropoutNetConfig())

    def _network(self, n_users: int, n_items: int, content_dim: int) -> Towers:
        return Towers(self.dim, content_dim, self.config.hidden)

    def _loss(
        self, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert isinstance(self.net, Towers) and self.history is not None
        teacher = self.fitted_teacher()
        negatives = self.history.uniform(users, 1, generator)[:, 0]
        users, items = torch.cat([users, users]), torch.cat([positives, negatives])
        user_vectors, item_vectors = teacher.user_vectors[users], teacher.item_vectors[items]
        target = (user_vectors * item_vectors).sum(1)
        dropped = torch.randperm(len(items), generator=generator)
        dropped = dropped[: int(self.config.dropout * len(items))]
        preference = item_vectors.clone()
        preference[dropped] = 0.0
        item_input = torch.cat([preference, self.content[items]], dim=1)
        predicted = (self.net.user(user_vectors) * self.net.item(item_input)).sum(1)
        return (predicted - target).pow(2).mean()

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(self.net, Towers)
        teacher = self.fitted_teacher()
        # with dropout 1 the tower never learned to read a preference input: none is fed
        reads = self.warm[:, None] & (self.config.dropout < 1)
        preference = torch.where(reads, teacher.item_vectors, 0.0)
        items = self.net.item(torch.cat([preference, self.content], dim=1))
        return self.net.user(teacher.user_vectors), items

    def _cold_vectors(self, content: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.net, Towers)
        return self.net.item(torch.cat([torch.zeros(len(content), self.dim), content], dim=1))
