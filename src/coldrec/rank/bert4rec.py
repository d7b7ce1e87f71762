"""BERT4Rec (Sun et al., CIKM 2019): bidirectional self-attention trained as a cloze task.

The SASRec network without the causal mask and with one extra token, ``[mask]``. Training
hides each real item of a sequence behind ``[mask]`` with probability ``mask_prob`` (at
least one per sequence, the last item when the draw hides none) and predicts the hidden
items; a user is scored from ``[mask]`` appended after their history. Input and output
item embeddings are tied, without the original's extra projection head.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from coldrec.rank.sasrec import SASRecConfig, SASRecNet

__all__ = ["BERT4RecConfig", "BERT4RecNet"]


class BERT4RecConfig(SASRecConfig):
    """BERT4Rec settings: SASRec's, plus the share of items masked in training."""

    kind: Literal["bert4rec"] = "bert4rec"  # type: ignore[assignment]
    mask_prob: float = Field(0.2, gt=0, le=1)

    def network(self, n_items: int, content: np.ndarray | None = None) -> BERT4RecNet:
        return BERT4RecNet(n_items, self, content)


class BERT4RecNet(SASRecNet):
    """Bidirectional SASRec blocks with a ``[mask]`` token (id ``n_items + 1``)."""

    causal = False
    extra_tokens = 1

    def __init__(
        self, n_items: int, config: BERT4RecConfig, content: np.ndarray | None = None
    ) -> None:
        super().__init__(n_items, config, content)
        self.mask_prob = config.mask_prob
        self.mask_token = n_items + 1

    def context(self, history: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(history[:, :1], self.mask_token)
        return self(torch.cat([history[:, 1:], mask], dim=1))[:, -1]

    def examples(
        self, sequences: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        items = sequences[:, 1:]
        draw = torch.rand(items.shape, generator=generator) < self.mask_prob
        hidden = draw & (items > 0)
        hidden[~hidden.any(dim=1), -1] = True
        inputs = torch.where(hidden, self.mask_token, items)
        return inputs, torch.where(hidden, items, 0)
