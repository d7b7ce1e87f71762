"""The base of every sequential network and its settings.

Item ids are shifted by one inside a network (0 is padding); sequences are the last
``max_len`` history items, left-padded. A network turns a sequence into hidden states and
says how a training sequence becomes (inputs, targets): the causal models predict the
next item at every position, BERT4Rec the items hidden behind a mask token. A user is
scored from the context vector of their history (:meth:`SequenceNet.context`) against
the item embeddings, which are tied between input and output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Self

import numpy as np
import torch
from pydantic import ConfigDict, Field, model_validator
from torch import nn

from coldrec.rank.items import DeltaConfig, DeltaItems, IdItems
from coldrec.rank.transfer import TransferConfig
from coldrec.training.loop import TrainedConfig, TrainingConfig

__all__ = ["SequenceNet", "SequentialConfig"]


class SequentialConfig(TrainedConfig, ABC):
    """Settings every sequential model shares (defaults: the thesis's batch 256, AdamW,
    lr 3e-4, sampled softmax with 100 uniform negatives)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_len: int = Field(50, gt=0)
    """Items of history the model reads (the most recent ones)."""
    dim: int = Field(64, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["sampled", "full"] = "sampled"
    """``sampled``: listwise CE against ``n_negatives`` negatives; ``full``: CE over the
    whole catalogue."""
    n_negatives: int = Field(100, gt=0)
    hard_negatives: bool = False
    """Draw negatives from each user's retrieved candidates (Two-Tower recall) with seen
    and cold items removed, falling back to uniform (needs the candidates: ``coldrec
    rank``)."""
    lambda_sim: float = Field(1.0, ge=0)
    lambda_pair: float = Field(1.0, ge=0)
    pairs_per_step: int = Field(256, gt=0)
    """Triplets drawn per training step for ``L_pair``."""
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(batch_size=256, eval_every=2, patience=3)
    )

    delta: DeltaConfig | None = None
    """Content-anchored item vectors (:mod:`coldrec.rank.items`); none for ID vectors."""
    transfer: TransferConfig | None = None
    """After training, give cold items residuals of their warm neighbours
    (:mod:`coldrec.rank.transfer`; needs ``delta``)."""

    @model_validator(mode="after")
    def _transfer_needs_delta(self) -> Self:
        if self.transfer is not None and self.delta is None:
            raise ValueError("transfer moves delta residuals: set delta as well")
        return self

    @abstractmethod
    def network(self, n_items: int, content: np.ndarray | None = None) -> SequenceNet:
        """A fresh, untrained network for a catalogue of ``n_items`` (``content``: the
        items' content vectors, needed with ``delta``)."""


class SequenceNet(nn.Module, ABC):
    """Encodes left-padded shifted item sequences; item embeddings are shared by input
    and output (row 0 is padding, rows past ``n_items`` are special tokens)."""

    extra_tokens = 0

    def __init__(self, n_items: int, config: SequentialConfig, content: np.ndarray | None) -> None:
        super().__init__()
        self.n_items, self.dim = n_items, config.dim
        self.items: IdItems | DeltaItems
        if config.delta is None:
            self.items = IdItems(n_items + 1 + self.extra_tokens, config.dim)
        elif content is None or len(content) != n_items:
            raise ValueError("delta item vectors need one content vector per item")
        else:
            self.items = DeltaItems(content, config.dim, self.extra_tokens, config.delta)

    trims_padding = False
    """Whether leading padding columns can be dropped without changing any output (true
    where padding is masked out of attention; a GRU steps through it)."""

    def fit_width(self, sequences: torch.Tensor) -> torch.Tensor:
        """``sequences`` without the leading padding columns no row needs (one is kept,
        so a network that drops the first column loses no item), where that changes no
        output: a batch of short sequences then costs what its items cost."""
        if not self.trims_padding or not len(sequences):
            return sequences
        width = min(sequences.shape[1], int((sequences > 0).sum(dim=1).max()) + 1)
        return sequences[:, sequences.shape[1] - width :]

    def reset_items(self) -> None:
        """Draw the item vectors (call after building the other layers)."""
        self.items.reset()

    @abstractmethod
    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch × length × dim)."""

    def item_vectors(self) -> torch.Tensor:
        """Output vectors of the catalogue's items, in Dataset item order."""
        return self.items.weight[1 : self.n_items + 1]

    def context(self, history: torch.Tensor) -> torch.Tensor:
        """The vector that scores a user's next item (the last hidden state)."""
        return self(history)[:, -1]

    def contexts(self, history: torch.Tensor, parts: int = 4) -> torch.Tensor:
        """:meth:`context` of each row, computed in ``parts`` groups of similar length so
        that a few long histories do not make every short one pay for their padding
        (the outputs are those of one call)."""
        order = torch.argsort((history > 0).sum(dim=1))
        groups = [rows for rows in order.tensor_split(parts) if len(rows)]
        chunks = [self.context(self.fit_width(history[rows])) for rows in groups]
        return torch.cat(chunks)[torch.argsort(order)]

    def examples(
        self, sequences: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs and targets (0 = no target) from sequences one item longer
        than ``max_len``: the next item at every real position."""
        inputs = sequences[:, :-1]
        return inputs, torch.where(inputs > 0, sequences[:, 1:], 0)
