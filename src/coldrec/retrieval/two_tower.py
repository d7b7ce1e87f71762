"""Two-Tower retriever (thesis §4.1): ID embeddings plus projected content vectors,
trained with an in-batch softmax.

- user tower: ``normalise(E_user[u] + W_u c_u + b_u)``, where ``c_u`` is the user's
  content vector (eq. 4.2: the normalised mean of the last ``last_n`` distinct history
  items' text vectors);
- item tower: ``normalise(E_item[i] + W_i c_i + b_i)``, ``c_i`` the item's text vector;
- loss (eq. 4.3): for a batch of positives ``(u_r, i_r, w_r)``, logits
  ``s_rc = <user_r, item_c> / τ`` and ``L = Σ_r w_r · CE(s_r, r) / Σ_r w_r``. Columns
  holding the same item as row ``r``'s positive (other than ``r`` itself) are masked,
  so a repeated item is never its own negative. ``τ`` is learned (or fixed).
- export (eq. 4.4): an item (user) never seen in training keeps only its content part:
  its ID embedding is set to zero, so a cold item's vector is the normalised projection
  of its text vector.

With ``early_stopping`` the number of epochs is chosen on the validation carve-out
(:func:`coldrec.data.prepare.validation_view`, same split rule inside the history) by
the mean of warm and cold Recall@20 there; the model is then refitted on the whole
history for that many epochs.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from safetensors.torch import save_file
from torch import nn

from coldrec.data.dataset import Dataset
from coldrec.eval.protocol import selection_score
from coldrec.recommender import history_splits, scores_at
from coldrec.text import TextEncoder, TextEncoderConfig, save_vectors, user_content_vectors
from coldrec.training import (
    TrainedConfig,
    TrainingConfig,
    TrainingLog,
    fit_with_validation,
    run_epochs,
)

__all__ = ["TwoTower", "TwoTowerConfig", "TwoTowerNet", "in_batch_softmax_loss"]

log = logging.getLogger(__name__)


class TwoTowerConfig(TrainedConfig):
    """Two-Tower settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["two_tower"] = "two_tower"
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """How item text becomes the content vectors."""
    dim: int = Field(128, gt=0)
    """Width of both towers' outputs."""
    last_n: int = Field(50, gt=0)
    """The user content vector averages this many most recent distinct items."""
    temperature: float = Field(0.07, gt=0)
    """Softmax temperature τ (its initial value when learned)."""
    learn_temperature: bool = True
    logq_correction: bool = False
    """Subtract ``log q(i)`` (the item's share of training rows, i.e. how often it is an
    in-batch negative) from the logits while training (Yi et al., RecSys 2019). The
    learned scores then keep item popularity instead of cancelling it: more warm recall,
    less room for cold items, which have no popularity."""
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(eval_every=2, patience=3)
    )

    def build(self) -> TwoTower:
        return TwoTower(self)


class TwoTowerNet(nn.Module):
    """The two towers over contiguous user and item ids."""

    def __init__(self, n_users: int, n_items: int, content_dim: int, config: TwoTowerConfig):
        super().__init__()
        self.user_id = nn.Embedding(n_users, config.dim)
        self.item_id = nn.Embedding(n_items, config.dim)
        nn.init.normal_(self.user_id.weight, std=0.01)
        nn.init.normal_(self.item_id.weight, std=0.01)
        self.user_content = nn.Linear(content_dim, config.dim)
        self.item_content = nn.Linear(content_dim, config.dim)
        log_tau = torch.tensor(math.log(config.temperature))
        if config.learn_temperature:
            self.log_temperature = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_temperature", log_tau)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(0.01, 1.0)

    def users(
        self, ids: torch.Tensor, content: torch.Tensor, id_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised user vectors; ``id_mask`` (0/1 per row) drops the ID part."""
        ids_part = self.user_id(ids) if id_mask is None else self.user_id(ids) * id_mask[:, None]
        return F.normalize(ids_part + self.user_content(content), dim=-1)

    def items(
        self, ids: torch.Tensor, content: torch.Tensor, id_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised item vectors; ``id_mask`` (0/1 per row) drops the ID part."""
        ids_part = self.item_id(ids) if id_mask is None else self.item_id(ids) * id_mask[:, None]
        return F.normalize(ids_part + self.item_content(content), dim=-1)


def in_batch_softmax_loss(
    users: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor,
    weights: torch.Tensor,
    temperature: torch.Tensor | float,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted in-batch softmax cross-entropy (eq. 4.3); row ``r``'s positive is column
    ``r`` and the other columns are its negatives, except columns of the same item.
    ``log_q`` (per column) is subtracted from the logits: the sampling-bias correction."""
    logits = users @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    duplicate = item_ids[None, :] == item_ids[:, None]
    duplicate.fill_diagonal_(False)
    logits = logits.masked_fill(duplicate, float("-inf"))
    targets = torch.arange(len(item_ids), device=logits.device)
    per_row = F.cross_entropy(logits, targets, reduction="none")
    return (weights * per_row).sum() / weights.sum()


class TwoTower:
    """The Two-Tower retriever as a :class:`~coldrec.recommender.Recommender`: after
    ``fit``, ``user_vectors`` and ``item_vectors`` hold the exported (normalised) vectors
    and scores are their inner products."""

    def __init__(self, config: TwoTowerConfig | None = None) -> None:
        self.config = config or TwoTowerConfig()
        self.user_vectors = np.zeros((0, 0), dtype=np.float32)
        self.item_vectors = np.zeros((0, 0), dtype=np.float32)
        self.net: TwoTowerNet | None = None
        self.training_log: dict[str, TrainingLog] = {}
        self.validation_vectors: tuple[np.ndarray, np.ndarray] | None = None
        """User and item vectors of the model trained on the validation view."""

    def fit(self, dataset: Dataset) -> Self:
        content = TextEncoder(self.config.encoder).encode(dataset.item_text)
        self.training_log = fit_with_validation(
            dataset,
            lambda data, epochs, validate: self._train(data, content, epochs, validate),
            self.config.training.epochs,
            self.config.early_stopping,
            self.config.valid_share,
        )
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return scores_at(self.user_vectors[users] @ self.item_vectors.T, items)

    def _train(
        self, dataset: Dataset, content: np.ndarray, epochs: int, validate: bool
    ) -> TrainingLog:
        """Train a fresh net on ``dataset``'s history; export its vectors into ``self``."""
        setup = _Setup.of(dataset, content, self.config.last_n)
        net = TwoTowerNet(dataset.n_users, dataset.n_items, content.shape[1], self.config)
        self.net = net
        options = self.config.training.model_copy(update={"epochs": epochs})
        optimiser = torch.optim.AdamW(
            net.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
        )
        generator = torch.Generator().manual_seed(int(torch.randint(2**31, (1,)).item()))
        log_q = setup.item_log_share() if self.config.logq_correction else None

        def train_epoch(epoch: int) -> dict[str, float]:
            order = torch.randperm(len(setup.users), generator=generator)
            total = 0.0
            for batch in order.split(options.batch_size):
                u, i = setup.users[batch], setup.items[batch]
                loss = in_batch_softmax_loss(
                    net.users(u, setup.user_content[u]),
                    net.items(i, setup.item_content[i]),
                    i,
                    setup.weights[batch],
                    net.temperature,
                    log_q[i] if log_q is not None else None,
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
            return {"loss": total / len(setup.users)}

        def validation_score() -> float:
            self._export(net, setup)
            return selection_score(self, dataset)

        name = "two-tower (validation)" if validate else "two-tower"
        result = run_epochs(net, train_epoch, options, validation_score if validate else None, name)
        self._export(net, setup)
        if validate:  # the best model of the validation view, for later choices made there
            self.validation_vectors = (self.user_vectors.copy(), self.item_vectors.copy())
        return result

    def _export(self, net: TwoTowerNet, setup: _Setup) -> None:
        """Vectors of every user and item; ID parts of those never seen in training are zero."""
        with torch.no_grad():
            users = torch.arange(len(setup.seen_users))
            items = torch.arange(len(setup.seen_items))
            self.user_vectors = net.users(users, setup.user_content, setup.seen_users).numpy()
            self.item_vectors = net.items(items, setup.item_content, setup.seen_items).numpy()

    def save(self, folder: Path) -> None:
        """Write the vectors (``.npy`` + JSON sidecars), the weights (safetensors) and config."""
        folder.mkdir(parents=True, exist_ok=True)
        save_vectors(
            folder / "user_vectors.npy",
            self.user_vectors,
            {"model": "two_tower", "rows_are": "user ids"},
        )
        save_vectors(
            folder / "item_vectors.npy",
            self.item_vectors,
            {"model": "two_tower", "rows_are": "item ids"},
        )
        if self.net is not None:
            save_file(
                {k: v.contiguous() for k, v in self.net.state_dict().items()},
                folder / "two_tower.safetensors",
            )
        (folder / "two_tower.json").write_text(
            json.dumps(self.config.model_dump(mode="json"), indent=2)
        )


@dataclass(frozen=True)
class _Setup:
    """Training tensors of one Dataset: history rows, content vectors, seen masks (0/1)."""

    users: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor
    user_content: torch.Tensor
    item_content: torch.Tensor
    seen_users: torch.Tensor
    seen_items: torch.Tensor

    def item_log_share(self) -> torch.Tensor:
        """``log`` of each item's share of the training rows (unseen items: one row)."""
        counts = torch.bincount(self.items, minlength=len(self.seen_items)).float()
        return torch.log(counts.clamp(min=1) / len(self.items))

    @classmethod
    def of(cls, dataset: Dataset, content: np.ndarray, last_n: int) -> _Setup:
        rows = dataset.interactions.loc[dataset.interactions["split"].isin(history_splits())]
        users = torch.tensor(rows["user_idx"].to_numpy(np.int64))
        items = torch.tensor(rows["item_idx"].to_numpy(np.int64))
        user_content = user_content_vectors(dataset, content, history_splits(), last_n)
        return cls(
            users,
            items,
            torch.tensor(rows["weight"].to_numpy(np.float32)),
            torch.from_numpy(user_content),
            torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32)),
            (torch.bincount(users, minlength=dataset.n_users) > 0).float(),
            (torch.bincount(items, minlength=dataset.n_items) > 0).float(),
        )
