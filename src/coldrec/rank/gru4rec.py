"""GRU4Rec (Hidasi et al., ICLR 2016) in its common next-item form (as in RecBole):
item embeddings, dropout, a GRU over the sequence and a linear map back to item space.

The left padding runs through the GRU as zero vectors, which only moves the state the
first real item starts from (a learned start state in effect).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from coldrec.rank.network import SequenceNet, SequentialConfig
from coldrec.rank.sequential import SequentialRecommender

__all__ = ["GRU4RecConfig", "GRU4RecNet"]


class GRU4RecConfig(SequentialConfig):
    """GRU4Rec settings (hidden size = ``dim``)."""

    kind: Literal["gru4rec"] = "gru4rec"
    n_layers: int = Field(1, gt=0)

    def network(self, n_items: int, content: np.ndarray | None = None) -> GRU4RecNet:
        return GRU4RecNet(n_items, self, content)

    def build(self) -> SequentialRecommender:
        return SequentialRecommender(self)


class GRU4RecNet(SequenceNet):
    """Embedding, dropout, GRU, linear head."""

    def __init__(
        self, n_items: int, config: GRU4RecConfig, content: np.ndarray | None = None
    ) -> None:
        super().__init__(n_items, config, content)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.dim,
            config.dim,
            config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.dim, config.dim)
        self.reset_items()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.dropout(self.items(sequences)))
        return self.head(hidden)
