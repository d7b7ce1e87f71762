"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence.

Item ids are shifted by one inside the network (0 is padding); sequences are the last
``max_len`` history items, left-padded. Each position attends to itself and to earlier
real items only. The hidden state at a position is the context for predicting the next
item; a user is scored from the last position of their history.

Training (``L_main``): at every position of every training sequence, the true next item
against ``n_negatives`` uniformly sampled items (sampled softmax), or against the whole
catalogue (``loss="full"``, RecBole's ``CE`` setting). With ``early_stopping`` the epoch
count is chosen on the validation carve-out, then the model is refitted on all history.

SASRec learns one embedding per item from interactions: an item never seen in training
has no trained vector, so its score is NaN (never ranked). Content-anchored item vectors
for cold items come with delta embeddings.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from coldrec.data.dataset import Dataset
from coldrec.eval.protocol import selection_score
from coldrec.rank.losses import full_softmax_loss, sampled_softmax_loss
from coldrec.rank.negatives import UniformSampler
from coldrec.recommender import history_splits, scores_at
from coldrec.training import TrainingConfig, TrainingLog, fit_with_validation, run_epochs

__all__ = ["SASRec", "SASRecConfig", "SASRecNet", "padded_sequences"]


class SASRecConfig(BaseModel):
    """SASRec settings (defaults: the thesis's batch 256, AdamW, lr 3e-4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sasrec"] = "sasrec"
    max_len: int = Field(50, gt=0)
    """Items of history the model reads (the most recent ones)."""
    dim: int = Field(64, gt=0)
    n_layers: int = Field(2, gt=0)
    n_heads: int = Field(1, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["sampled", "full"] = "sampled"
    """``sampled``: listwise CE against ``n_negatives`` uniform negatives; ``full``: CE
    over the whole catalogue."""
    n_negatives: int = Field(100, gt=0)
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(batch_size=256, eval_every=2, patience=3)
    )
    early_stopping: bool = True
    valid_share: float = Field(0.3, gt=0, lt=1)

    def build(self) -> SASRec:
        return SASRec(self)


class SASRecNet(nn.Module):
    """Item and position embeddings, pre-norm causal self-attention blocks, layer norm."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        self.dim = config.dim
        self.n_heads = config.n_heads
        self.items = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            config.dim,
            config.n_heads,
            config.dim,
            config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.items.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch × length × dim) of left-padded shifted item sequences."""
        length = sequences.shape[1]
        x = self.items(sequences) * math.sqrt(self.dim) + self.positions.weight[-length:]
        hidden = self.blocks(self.dropout(x), mask=self._attention_mask(sequences))
        return self.norm(hidden)

    def _attention_mask(self, sequences: torch.Tensor) -> torch.Tensor:
        """True where attention is forbidden: later positions and padding (a padded
        position may see itself, so no row is fully masked)."""
        length = sequences.shape[1]
        later = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        padding = (sequences == 0)[:, None, :]
        itself = torch.eye(length, dtype=torch.bool)
        forbidden = (later[None] | padding) & ~itself[None]
        return forbidden.repeat_interleave(self.n_heads, dim=0)


def padded_sequences(sequences: list[np.ndarray], length: int) -> torch.Tensor:
    """The last ``length`` items of each sequence, shifted by one and left-padded with 0."""
    out = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, items in enumerate(sequences):
        tail = items[-length:]
        if len(tail):
            out[row, length - len(tail) :] = torch.as_tensor(tail + 1)
    return out


class SASRec:
    """SASRec as a :class:`~coldrec.recommender.Recommender` over the full catalogue."""

    def __init__(self, config: SASRecConfig | None = None) -> None:
        self.config = config or SASRecConfig()
        self.net: SASRecNet | None = None
        self.history = torch.zeros(0, 0, dtype=torch.long)
        self.trained_items = torch.zeros(0, dtype=torch.bool)
        self.training_log: dict[str, TrainingLog] = {}

    def fit(self, dataset: Dataset) -> Self:
        self.training_log = fit_with_validation(
            dataset,
            self._train,
            self.config.training.epochs,
            self.config.early_stopping,
            self.config.valid_share,
        )
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("fit the model before scoring")
        self.net.eval()
        with torch.no_grad():
            context = self.net(self.history[torch.as_tensor(users)])[:, -1]
            scores = (context @ self.net.items.weight[1:].T).numpy()
        scores[:, ~self.trained_items.numpy()] = np.nan
        return scores_at(scores, items)

    def _train(self, dataset: Dataset, epochs: int, validate: bool) -> TrainingLog:
        """Train a fresh network on ``dataset``'s history (early stopping on its test)."""
        sequences = dataset.sequences(*history_splits())
        length = self.config.max_len
        self.history = padded_sequences(sequences, length)
        seen = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        self.trained_items = torch.as_tensor(np.bincount(seen, minlength=dataset.n_items) > 0)
        usable = [s for s in sequences if len(s) >= 2]
        inputs = padded_sequences([s[:-1] for s in usable], length)
        targets = padded_sequences([s[1:] for s in usable], length)
        net = SASRecNet(dataset.n_items, self.config)
        self.net = net
        options = self.config.training.model_copy(update={"epochs": epochs})
        optimiser = torch.optim.AdamW(
            net.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
        )
        sampler = UniformSampler(torch.nonzero(self.trained_items).squeeze(1) + 1)
        generator = torch.Generator().manual_seed(int(torch.randint(2**31, (1,)).item()))

        def train_epoch(epoch: int) -> dict[str, float]:
            order = torch.randperm(len(inputs), generator=generator)
            total, count = 0.0, 0
            for batch in order.split(options.batch_size):
                hidden = net(inputs[batch])
                real = targets[batch] > 0
                context, positives = hidden[real], targets[batch][real]
                if self.config.loss == "full":
                    loss = full_softmax_loss(context, positives - 1, net.items.weight[1:])
                else:
                    negatives = sampler.sample(positives, self.config.n_negatives, generator)
                    loss = sampled_softmax_loss(context, positives, negatives, net.items.weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(positives)
                count += len(positives)
            return {"loss": total / max(count, 1)}

        def validation_score() -> float:
            return selection_score(self, dataset)

        name = "sasrec (validation)" if validate else "sasrec"
        return run_epochs(net, train_epoch, options, validation_score if validate else None, name)
