"""ALDI (Huang et al., SIGIR 2023, "Aligning Distillation for Cold-start Item
Recommendation"): a content student distilled from the warm BPR-MF teacher. An item
mapper ``f_I(content)`` and a user mapper ``f_U(teacher user vector)`` (Linear → batch
norm → tanh → Linear, 200 hidden, the authors' sizes) give student scores
``ŝ_ui = f_U(e_u)·f_I(c_i)``; for a training triple (user, positive i, uniform negative
j), with teacher scores ``s_ui = e_u·e_i``:

- supervised: ``L_S = mean softplus(−(ŝ_ui − ŝ_uj))`` (BPR);
- rating aligning: ``L_R = mean |s_ui − ŝ_ui| + |s_uj − ŝ_uj|``;
- ranking aligning: ``L_K = mean w_i·BCE(ŝ_ui − ŝ_uj, σ(s_ui − s_uj))`` (logit, soft target);
- identification aligning: ``L_I = mean w_i·BCE(ŝ_i·ŝ_i − mean_j ŝ_i·ŝ_j, σ(e_i·e_i −
  mean_j e_i·e_j))`` over the batch's negatives j (item vectors, ŝ = f_I(c));
- ``loss = L_S + alpha·L_K + beta·L_I + gamma·L_R``.

``w_i`` is 1, or with ``popularity_weight`` the paper's teacher-qualifying weight
:func:`popularity_weights`. Warm items keep the teacher's score ``e_u·e_i``, cold items
get the student's: a user's vector is ``[e_u ‖ f_U(e_u)]``, a warm item's ``[e_i ‖ 0]``,
a cold item's ``[0 ‖ f_I(c_i)]``.

Each epoch visits every distinct training pair once with one uniform negative among the
trained items (the authors draw as many users uniformly, one positive each); PyTorch's
default initialisation and batch-norm settings stand in for theirs, and their L2 penalty
is Adam's weight decay (batch norm included)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from coldrec.coldstart.base import ContentModel, ContentModelConfig, mlp
from coldrec.coldstart.mf import pair_training
from coldrec.training.loop import TrainingConfig

__all__ = ["ALDI", "ALDIConfig", "aldi_losses", "popularity_weights"]


class ALDIConfig(ContentModelConfig):
    """ALDI settings (the authors' defaults; weight decay 1e-4 as their L2)."""

    kind: Literal["aldi"] = "aldi"
    alpha: float = Field(0.9, ge=0)
    """Weight of ranking aligning."""
    beta: float = Field(0.05, ge=0)
    """Weight of identification aligning."""
    gamma: float = Field(0.1, ge=0)
    """Weight of rating aligning."""
    popularity_weight: bool = False
    """Weigh the ranking and identification terms by the positive's teacher quality."""
    popularity_m: float = Field(4.0, gt=0)
    """``M`` of the weight ``min(tanh(M·f_i/f̄), tanh(M))``."""
    hidden: int = Field(200, gt=0)
    training: TrainingConfig = Field(
        default_factory=lambda: pair_training().model_copy(update={"weight_decay": 1e-4})
    )

    def build(self) -> ALDI:
        return ALDI(self)


def popularity_weights(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, m: float
) -> np.ndarray:
    """Per item ``min(tanh(M·f_i/f̄), tanh(M))`` with ``f_i = Σ_{u ∈ N(i)} 1/|N(u)|`` over
    the distinct (user, item) pairs, ``f̄ = n_users / n_items``; ``f_i = 1`` for an item
    without pairs."""
    pairs = np.unique(np.stack([users, items]), axis=1)
    degree = np.bincount(pairs[0], minlength=n_users)
    quality = np.bincount(pairs[1], weights=1.0 / degree[pairs[0]], minlength=n_items)
    quality[np.bincount(pairs[1], minlength=n_items) == 0] = 1.0
    return np.minimum(np.tanh(m * quality * n_items / n_users), np.tanh(m))


def aldi_losses(
    teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    student: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    weights: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``L_S``, ``L_R``, ``L_K`` and ``L_I`` (module doc) of a batch from the teacher's and
    the student's (user, positive, negative) vectors and the positives' weights."""
    (tu, ti, tj), (su, si, sj) = teacher, student
    t_pos, t_neg = (tu * ti).sum(1), (tu * tj).sum(1)
    s_pos, s_neg = (su * si).sum(1), (su * sj).sum(1)
    t_ident = (ti * ti).sum(1) - (ti @ tj.T).mean(1)
    s_ident = (si * si).sum(1) - (si @ sj.T).mean(1)
    return {
        "supervised": F.softplus(-(s_pos - s_neg)).mean(),
        "rating": ((t_pos - s_pos).abs() + (t_neg - s_neg).abs()).mean(),
        "ranking": (weights * _soft_bce(s_pos - s_neg, torch.sigmoid(t_pos - t_neg))).mean(),
        "identification": (weights * _soft_bce(s_ident, torch.sigmoid(t_ident))).mean(),
    }


def _soft_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class Student(nn.Module):
    """The user and the item mappers."""

    def __init__(self, dim: int, content_dim: int, hidden: int) -> None:
        super().__init__()
        self.user = mlp([dim, hidden, dim], batch_norm=True)
        self.item = mlp([content_dim, hidden, dim], batch_norm=True)


class ALDI(ContentModel):
    """ALDI over a BPR-MF teacher (module doc); vectors are twice the teacher's width."""

    config: ALDIConfig

    def __init__(self, config: ALDIConfig | None = None) -> None:
        super().__init__(config or ALDIConfig())
        self.weights = torch.zeros(0)

    def _network(self, n_users: int, n_items: int, content_dim: int) -> Student:
        if self.config.popularity_weight and self.history is not None:
            pairs = self.history.pairs.numpy()
            self.weights = torch.as_tensor(popularity_weights(
                pairs // n_items, pairs % n_items, n_users, n_items, self.config.popularity_m
            ), dtype=torch.float32)  # fmt: skip
        else:
            self.weights = torch.ones(n_items)
        return Student(self.dim, content_dim, self.config.hidden)

    def _loss(
        self, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert isinstance(self.net, Student) and self.history is not None
        teacher, config = self.fitted_teacher(), self.config
        negatives = self.history.uniform(users, 1, generator)[:, 0]
        items = self.net.item(self.content[torch.cat([positives, negatives])])
        e_u = teacher.user_vectors[users]
        losses = aldi_losses(
            (e_u, teacher.item_vectors[positives], teacher.item_vectors[negatives]),
            (self.net.user(e_u), items[: len(users)], items[len(users) :]),
            self.weights[positives],
        )
        aligned = config.alpha * losses["ranking"] + config.beta * losses["identification"]
        return losses["supervised"] + aligned + config.gamma * losses["rating"]

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(self.net, Student)
        teacher = self.fitted_teacher()
        users = torch.cat([teacher.user_vectors, self.net.user(teacher.user_vectors)], dim=1)
        warm = torch.cat([teacher.item_vectors, torch.zeros_like(teacher.item_vectors)], dim=1)
        items = torch.where(self.warm[:, None], warm, self._cold_vectors(self.content))
        return users, items

    def _cold_vectors(self, content: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.net, Student)
        mapped = self.net.item(content)
        return torch.cat([torch.zeros_like(mapped), mapped], dim=1)
