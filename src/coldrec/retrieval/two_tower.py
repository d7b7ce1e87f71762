"""Two-Tower retriever (thesis §4.1): ID embeddings plus projected content vectors,
trained with an in-batch softmax (:mod:`coldrec.retrieval.losses`).

- user tower: ``normalise(E_user[u] + W_u c_u + b_u)``, where ``c_u`` is the user's
  content vector (eq. 4.2: the normalised mean of the last ``last_n`` distinct history
  items' text vectors);
- item tower: ``normalise(E_item[i] + W_i c_i + b_i)``, ``c_i`` the item's text vector;
- loss (eq. 4.3): weighted in-batch softmax with a learned (or fixed) temperature ``τ``;
- export (eq. 4.4): an item (user) never seen in training keeps only its content part:
  its ID embedding is set to zero, so a cold item's vector is the normalised projection
  of its text vector.

With ``early_stopping`` the number of epochs is chosen on the validation carve-out
(:func:`coldrec.data.prepare.validation_view`, same split rule inside the history) by
the mean of warm and cold Recall@20 there; the model is then refitted on the whole
history for that many epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from torch import nn

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig, user_content_vectors
from coldrec.encode.vectors import load_vectors, save_vectors
from coldrec.errors import ConfigError
from coldrec.eval.protocol import selection_score
from coldrec.retrieval.losses import in_batch_softmax_loss
from coldrec.training.distributed import data_parallel, shard, sum_over_ranks, world_size
from coldrec.training.loop import TrainedConfig, TrainingConfig
from coldrec.training.model import TrainedModel
from coldrec.training.saving import Saved
from coldrec.training.scores import scores_at

__all__ = ["TwoTower", "TwoTowerConfig", "TwoTowerNet"]


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

    def forward(
        self,
        user_ids: torch.Tensor,
        user_content: torch.Tensor,
        item_ids: torch.Tensor,
        item_content: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item vectors of a training batch (one call: what DDP wraps)."""
        return self.users(user_ids, user_content), self.items(item_ids, item_content)

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


class TwoTower(TrainedModel):
    """The Two-Tower retriever, a :class:`~coldrec.training.model.Trainable`: after
    ``fit``, ``user_vectors`` and ``item_vectors`` hold the exported (normalised) vectors
    and scores are their inner products. Saved, it adds the vectors as ``.npy`` files
    with JSON sidecars (``user_vectors.npy``, ``item_vectors.npy``) beside the weights."""

    config: TwoTowerConfig

    def __init__(self, config: TwoTowerConfig | None = None) -> None:
        super().__init__(config or TwoTowerConfig())
        self.user_vectors = np.zeros((0, 0), dtype=np.float32)
        self.item_vectors = np.zeros((0, 0), dtype=np.float32)
        self.net: TwoTowerNet | None = None
        self._setup: _Setup | None = None

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return scores_at(self.user_vectors[users] @ self.item_vectors.T, items)

    def _start(self, dataset: Dataset, generator: torch.Generator) -> _Trainer:
        content = TextEncoder(self.config.encoder).encode(dataset.item_text)
        self._setup = _Setup.of(dataset, content, self.config.last_n)
        self.net = TwoTowerNet(dataset.n_users, dataset.n_items, content.shape[1], self.config)
        return _Trainer(self, dataset, generator)

    def _finish(self, dataset: Dataset) -> None:
        self.export()
        self._setup = None

    def export(self) -> None:
        """Vectors of every user and item (eq. 4.4): the ID part of those never seen in
        training is zero."""
        assert self.net is not None and self._setup is not None
        setup = self._setup
        with torch.no_grad():
            users = torch.arange(len(setup.seen_users))
            items = torch.arange(len(setup.seen_items))
            self.user_vectors = self.net.users(users, setup.user_content, setup.seen_users).numpy()
            self.item_vectors = self.net.items(items, setup.item_content, setup.seen_items).numpy()

    def embed(
        self, side: Literal["users", "items"], content: np.ndarray, ids: np.ndarray | None = None
    ) -> np.ndarray:
        """Vectors of users or items from their content vectors (a user's: the mean of
        eq. 4.2), with the ID part of the trained ``ids`` or, without ``ids``, none: what
        a user or item added after training gets (eq. 4.4)."""
        if self.net is None:
            raise ConfigError("fit the Two-Tower model before embedding")
        rows = torch.as_tensor(np.zeros(len(content), np.int64) if ids is None else ids)
        mask = torch.full((len(content),), 0.0 if ids is None else 1.0)
        tower = self.net.users if side == "users" else self.net.items
        with torch.no_grad():
            return tower(rows, torch.as_tensor(content, dtype=torch.float32), mask).numpy()

    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        return {f"net.{name}": value for name, value in self.net.state_dict().items()}

    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        content_dim = tensors["net.item_content.weight"].shape[1]
        self.net = TwoTowerNet(len(saved.user_ids), len(saved.item_ids), content_dim, self.config)
        self.net.load_state_dict({name[4:]: value for name, value in tensors.items()})
        assert self.folder is not None
        self.user_vectors, _ = load_vectors(self.folder / "user_vectors.npy")
        self.item_vectors, _ = load_vectors(self.folder / "item_vectors.npy")

    def _write_files(self, folder: Path) -> None:
        for rows, vectors in (("user", self.user_vectors), ("item", self.item_vectors)):
            meta = {"model": "two_tower", "rows_are": f"{rows} ids"}
            save_vectors(folder / f"{rows}_vectors.npy", vectors, meta)


class _Trainer:
    """One training of the towers on one Dataset's history."""

    def __init__(self, model: TwoTower, dataset: Dataset, generator: torch.Generator) -> None:
        assert model.net is not None and model._setup is not None
        self.model, self.dataset, self.generator = model, dataset, generator
        self.net: TwoTowerNet = model.net
        self.setup = model._setup
        options = model.config.training
        self.batch_size = options.batch_size
        self.optimiser = torch.optim.AdamW(
            self.net.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
        )
        self.log_q = self.setup.item_log_share() if model.config.logq_correction else None
        self.forward = data_parallel(self.net)

    def train_epoch(self, epoch: int) -> float:
        setup, net = self.setup, self.net
        order = torch.randperm(len(setup.users), generator=self.generator)
        total = 0.0
        for batch in order.split(self.batch_size):
            # data-parallel: this process's users against every item of the batch
            mine = shard(len(batch))
            u, i = setup.users[batch[mine]], setup.items[batch]
            users, items = self.forward(u, setup.user_content[u], i, setup.item_content[i])
            loss = world_size() * in_batch_softmax_loss(
                users,
                items,
                i,
                setup.weights[batch],
                net.temperature,
                self.log_q[i] if self.log_q is not None else None,
                rows=mine,
            )
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            total += loss.item() * len(batch)
        return sum_over_ranks(total) / world_size() / len(setup.users)

    def validation_score(self) -> float:
        self.model.export()
        return selection_score(self.model, self.dataset)


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
        rows = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
        users = torch.tensor(rows["user_idx"].to_numpy(np.int64))
        items = torch.tensor(rows["item_idx"].to_numpy(np.int64))
        user_content = user_content_vectors(dataset, content, HISTORY_SPLITS, last_n)
        return cls(
            users,
            items,
            torch.tensor(rows["weight"].to_numpy(np.float32)),
            torch.from_numpy(user_content),
            torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32)),
            (torch.bincount(users, minlength=dataset.n_users) > 0).float(),
            (torch.bincount(items, minlength=dataset.n_items) > 0).float(),
        )
