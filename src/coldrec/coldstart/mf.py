"""BPR-MF (Rendle et al., UAI 2009): user and item ID embeddings whose inner product is
the score, trained with BPR over (user, positive, uniform negative) triples of the
history. The warm backbone (the teacher) of the cold-start content models; alone it
knows nothing of a strict cold item, whose score is NaN (never ranked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from coldrec.data.dataset import Dataset
from coldrec.errors import ConfigError
from coldrec.eval.protocol import selection_score
from coldrec.training.loop import TrainedConfig, TrainingConfig
from coldrec.training.model import TrainedModel
from coldrec.training.pairs import HistoryPairs, history_edges
from coldrec.training.saving import Saved
from coldrec.training.scores import scores_at

__all__ = ["BPRMF", "BPRMFConfig", "MFNet", "PairTrainer", "bpr_loss", "pair_training"]


class Exporting(Protocol):
    """A model whose ``export()`` writes the vectors it scores with."""

    config: Any

    def export(self) -> None: ...

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray: ...


def pair_training() -> TrainingConfig:
    """The optimisation defaults of the models trained pair by pair with Adam."""
    return TrainingConfig(epochs=300, batch_size=2048, lr=1e-3, weight_decay=0.0,
                          eval_every=5, patience=5)  # fmt: skip


class BPRMFConfig(TrainedConfig):
    """BPR-MF settings."""

    kind: Literal["bprmf"] = "bprmf"
    dim: int = Field(64, gt=0)
    reg: float = Field(1e-4, ge=0)
    """Weight of the batch's squared embedding norms."""
    training: TrainingConfig = Field(default_factory=pair_training)

    def build(self) -> BPRMF:
        return BPRMF(self)


class MFNet(nn.Module):
    """User and item ID embeddings (Xavier-normal)."""

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.users.weight)
        nn.init.xavier_normal_(self.items.weight)


def bpr_loss(
    user: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, reg: float
) -> torch.Tensor:
    """Mean ``−log σ(u·i − u·j)`` over a batch of vectors, plus ``reg`` × their mean
    squared norms (summed over the three)."""
    ranking = -F.logsigmoid((user * positive).sum(1) - (user * negative).sum(1)).mean()
    squares = user.pow(2).sum() + positive.pow(2).sum() + negative.pow(2).sum()
    return ranking + reg * squares / len(user)


class BPRMF(TrainedModel):
    """BPR-MF, a :class:`~coldrec.training.model.Trainable`. After ``fit``,
    ``user_vectors`` and ``item_vectors`` hold the embeddings and :attr:`linked` the
    items that had a training interaction (the others score NaN)."""

    config: BPRMFConfig

    def __init__(self, config: BPRMFConfig | None = None) -> None:
        super().__init__(config or BPRMFConfig())
        self.net: MFNet | None = None
        self.user_vectors = torch.zeros(0, self.config.dim)
        self.item_vectors = torch.zeros(0, self.config.dim)
        self.linked = torch.zeros(0, dtype=torch.bool)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if not len(self.user_vectors):
            raise ConfigError("fit the model before scoring")
        full = (self.user_vectors[torch.as_tensor(users)] @ self.item_vectors.T).numpy()
        return scores_at(np.where(self.linked.numpy(), full, np.float32(np.nan)), items)

    def _start(self, dataset: Dataset, generator: torch.Generator) -> PairTrainer:
        history = HistoryPairs(*history_edges(dataset), dataset.n_items)
        self.linked = torch.as_tensor(history.linked)
        net = self.net = MFNet(dataset.n_users, dataset.n_items, self.config.dim)

        def loss_of(users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
            negatives = history.uniform(users, 1, generator)[:, 0]
            return bpr_loss(net.users(users), net.items(positives), net.items(negatives),
                            self.config.reg)  # fmt: skip

        return PairTrainer(self, net, dataset, history, generator, loss_of)

    def _finish(self, dataset: Dataset) -> None:
        self.export()

    def export(self) -> None:
        """Copy the trained embeddings into ``user_vectors`` / ``item_vectors``."""
        assert self.net is not None
        self.user_vectors = self.net.users.weight.detach().clone()
        self.item_vectors = self.net.items.weight.detach().clone()

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"user_vectors": self.user_vectors, "item_vectors": self.item_vectors,
                "linked": self.linked}  # fmt: skip

    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        self.user_vectors, self.item_vectors = tensors["user_vectors"], tensors["item_vectors"]
        self.linked = tensors["linked"]


class PairTrainer:
    """One training of ``net`` on a Dataset's history pairs with Adam, the loss of a
    batch of (user, positive) pairs from ``loss_of``; validation scores ``model`` after
    its ``export()``."""

    def __init__(
        self,
        model: Exporting,
        net: nn.Module,
        dataset: Dataset,
        history: HistoryPairs,
        generator: torch.Generator,
        loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> None:
        self.model, self.net, self.dataset = model, net, dataset
        self.history, self.generator, self.loss_of = history, generator, loss_of
        self.options = model.config.training
        self.optimiser = torch.optim.Adam(net.parameters(), lr=self.options.lr,
                                          weight_decay=self.options.weight_decay)  # fmt: skip

    def train_epoch(self, epoch: int) -> float:
        return self.history.train_epoch(self.optimiser, self.options.batch_size,
                                        self.generator, self.loss_of)  # fmt: skip

    def validation_score(self) -> float:
        self.model.export()
        return selection_score(self.model, self.dataset)
