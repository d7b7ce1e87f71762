"""Heater (Zhu, Sefati, Saadatpanah and Caverlee, SIGIR 2020): a mixture of experts maps
an item's content to ``Q̃ = tanh(Σ_k g_k(c)·E_k(c))`` (gate ``g = tanh(W c + b)``, each
expert ``tanh(W_k c + b_k)``), pulled towards the teacher's item vector ``Q`` by
``alpha·Σ‖Q̃ − Q‖²``; randomised training feeds ``Q̃`` instead of ``Q`` to the item tower
in a ``randomise`` share of each batch's rows. User and item towers (Linear → batch norm
→ tanh → Linear, as the authors' code) score the pair; the loss is the squared error to
the 0/1 label of the training pair (1) and of ``n_negatives`` uniform negatives (0), as
the authors' code. A warm item's tower input is ``Q``, a cold item's ``Q̃``.

Layer sizes, defaults and the loss follow the authors' code; its L2 penalty
``λ·Σ‖W‖²`` (λ = 1e-4) is Adam's weight decay ``2λ`` here (batch norm included), and
PyTorch's default initialisation and batch-norm settings stand in for theirs. The authors
standardise the teacher's vectors and clip them (items to ±1) first; coldrec feeds them
as BPR-MF learnt them."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from coldrec.coldstart.base import ContentModel, ContentModelConfig, mlp
from coldrec.coldstart.mf import pair_training
from coldrec.training.loop import TrainingConfig

__all__ = ["Heater", "HeaterConfig"]


class HeaterConfig(ContentModelConfig):
    """Heater settings (the authors' defaults)."""

    kind: Literal["heater"] = "heater"
    n_experts: int = Field(5, gt=0)
    randomise: float = Field(0.5, ge=0, le=1)
    """Share of each batch's rows whose item tower sees the mixture instead of ``Q``."""
    alpha: float = Field(1e-4, ge=0)
    """Weight of the summed squared distance between mixture and teacher vectors."""
    n_negatives: int = Field(5, gt=0)
    training: TrainingConfig = Field(
        default_factory=lambda: pair_training().model_copy(update={"weight_decay": 2e-4})
    )

    def build(self) -> Heater:
        return Heater(self)


class HeaterNet(nn.Module):
    """The gate, the experts and the two towers."""

    def __init__(self, dim: int, content_dim: int, n_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(content_dim, n_experts)
        self.experts = nn.ModuleList(nn.Linear(content_dim, dim) for _ in range(n_experts))
        self.user = mlp([dim, dim, dim], batch_norm=True)
        self.item = mlp([dim, dim, dim], batch_norm=True)

    def mixture(self, content: torch.Tensor) -> torch.Tensor:
        """``Q̃``: the gated sum of the experts' outputs, squashed."""
        gates = torch.tanh(self.gate(content))
        outputs = torch.stack([torch.tanh(expert(content)) for expert in self.experts], dim=1)
        return torch.tanh((gates[:, :, None] * outputs).sum(1))


class Heater(ContentModel):
    """Heater over a BPR-MF teacher (module doc)."""

    config: HeaterConfig

    def __init__(self, config: HeaterConfig | None = None) -> None:
        super().__init__(config or HeaterConfig())

    def _network(self, n_users: int, n_items: int, content_dim: int) -> HeaterNet:
        return HeaterNet(self.dim, content_dim, self.config.n_experts)

    def _loss(
        self, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert isinstance(self.net, HeaterNet) and self.history is not None
        teacher, k = self.fitted_teacher(), self.config.n_negatives
        negatives = self.history.uniform(users, k, generator)
        items = torch.cat([positives[:, None], negatives], dim=1).flatten()
        labels = torch.zeros(len(users), k + 1)
        labels[:, 0] = 1.0
        preference = teacher.item_vectors[items]
        mixed = self.per_item(self.net.mixture, items)
        randomised = torch.randperm(len(items), generator=generator)
        randomised = randomised[: int(self.config.randomise * len(items))]
        tower_input = preference.clone()
        tower_input[randomised] = mixed[randomised]
        user_vectors = self.net.user(teacher.user_vectors[users]).repeat_interleave(k + 1, dim=0)
        predicted = (user_vectors * self.net.item(tower_input)).sum(1)
        squared = (predicted - labels.flatten()).pow(2).mean()
        return squared + self.config.alpha * (mixed - preference).pow(2).sum()

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(self.net, HeaterNet)
        teacher = self.fitted_teacher()
        tower_input = torch.where(self.warm[:, None], teacher.item_vectors,
                                  self.net.mixture(self.content))  # fmt: skip
        return self.net.user(teacher.user_vectors), self.net.item(tower_input)

    def _cold_vectors(self, content: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.net, HeaterNet)
        return self.net.item(self.net.mixture(content))
