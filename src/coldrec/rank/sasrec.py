"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence.

Pre-norm transformer blocks over item plus learned position embeddings; each position
attends to itself and to earlier real items only, and its hidden state predicts the next
item. Trained and scored by :class:`~coldrec.rank.sequential.SequentialRecommender`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from coldrec.rank.items import INIT_STD
from coldrec.rank.network import SequenceNet, SequentialConfig
from coldrec.rank.sequential import SequentialRecommender

__all__ = ["SASRecConfig", "SASRecNet", "attention_mask"]


class SASRecConfig(SequentialConfig):
    """SASRec settings (defaults: the thesis's batch 256, AdamW, lr 3e-4)."""

    kind: Literal["sasrec"] = "sasrec"
    n_layers: int = Field(2, gt=0)
    n_heads: int = Field(1, gt=0)

    def network(self, n_items: int, content: np.ndarray | None = None) -> SASRecNet:
        return SASRecNet(n_items, self, content)

    def build(self) -> SequentialRecommender:
        return SequentialRecommender(self)


class SASRecNet(SequenceNet):
    """Item and position embeddings, pre-norm self-attention blocks, layer norm."""

    causal = True
    """Whether a position may attend only to earlier ones."""
    trims_padding = True  # padding is masked out of attention

    def __init__(
        self, n_items: int, config: SASRecConfig, content: np.ndarray | None = None
    ) -> None:
        super().__init__(n_items, config, content)
        self.n_heads = config.n_heads
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
        # Positions start at the item vectors' scale: at nn.Embedding's N(0, 1) they
        # drowned the items (0.02·√dim) and cost a tenth of Recall@20 on Beauty.
        nn.init.normal_(self.positions.weight, std=INIT_STD)
        self.reset_items()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        length = sequences.shape[1]
        x = self.items(sequences) * math.sqrt(self.dim) + self.positions.weight[-length:]
        hidden = self.blocks(self.dropout(x), mask=self._attention_mask(sequences))
        return self.norm(hidden)

    def _attention_mask(self, sequences: torch.Tensor) -> torch.Tensor:
        return attention_mask(sequences > 0, self.n_heads, self.causal)


def attention_mask(real: torch.Tensor, n_heads: int, causal: bool = True) -> torch.Tensor:
    """True where attention is forbidden: positions that are not ``real`` (padding) and,
    if ``causal``, later positions (a position may always see itself, so no row is fully
    masked); one mask per head."""
    length = real.shape[1]
    later = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    itself = torch.eye(length, dtype=torch.bool)
    forbidden = ((later[None] & causal) | ~real[:, None, :]) & ~itself[None]
    return forbidden.repeat_interleave(n_heads, dim=0)
