"""Item tables of the sequential models: one vector per item, shared by input and output.

Row 0 is padding (always zero), rows ``1..n_items`` are the catalogue's items in Dataset
order, rows after them are special tokens (BERT4Rec's ``[mask]``).

- :class:`IdItems`: a free vector per item (classic ID embeddings). An item never seen in
  training keeps its random start, so the model cannot score it.
- :class:`DeltaItems`: ``e_i = map(c_i) + Δ_i``: the item's content vector ``c_i``
  (MiniLM, L2-normalised) through a map shared by all items, plus a residual ``Δ_i``
  that starts at zero and may be bounded in norm (``max_norm``; "Let It Go" uses 0.5).
  An unseen item still gets ``map(c_i)``: a vector placed by its text, which is what
  :mod:`coldrec.rank.transfer` then refines with residuals of its warm neighbours.
  ``map`` is ``linear`` (a trained ``d_content × dim`` layer) or ``pca`` (the top
  ``dim`` principal directions of the catalogue's content vectors, frozen, scaled so
  the mapped vectors have the norm of ID vectors at initialisation).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from coldrec.encode import TextEncoderConfig

__all__ = ["DeltaConfig", "DeltaItems", "IdItems"]

INIT_STD = 0.02
"""Standard deviation of ID vectors at initialisation."""


class DeltaConfig(BaseModel):
    """Content-anchored item vectors (``e = map(content) + Δ``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    map: Literal["linear", "pca"] = "linear"
    """``linear``: a trained shared layer; ``pca``: frozen principal directions."""
    max_norm: float | None = Field(0.5, gt=0)
    """Bound on ``‖Δ_i‖`` (rows above it are rescaled in every forward pass); none for
    no bound."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """How item text becomes the content vectors."""


class IdItems(nn.Module):
    """A free vector per item (``nn.Embedding`` with padding row 0)."""

    def __init__(self, n_rows: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(n_rows, dim, padding_idx=0)

    def reset(self) -> None:
        """Small normal vectors, zero padding (called once the network is built, so the
        random draws keep their order)."""
        nn.init.normal_(self.table.weight, std=INIT_STD)
        with torch.no_grad():
            self.table.weight[0].zero_()

    @property
    def weight(self) -> torch.Tensor:
        return self.table.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


class DeltaItems(nn.Module):
    """``e_i = map(c_i) + Δ_i`` for the catalogue; free vectors for special tokens."""

    content: torch.Tensor

    def __init__(
        self, content: np.ndarray, dim: int, extra_tokens: int, config: DeltaConfig
    ) -> None:
        super().__init__()
        self.register_buffer("content", torch.as_tensor(content, dtype=torch.float32))
        self.max_norm = config.max_norm
        if config.map == "linear":
            self.map: nn.Module = nn.Linear(content.shape[1], dim, bias=False)
        else:
            self.map = _FrozenProjection(content.mean(axis=0), _pca(content, dim))
        self.delta = nn.Parameter(torch.zeros(len(content), dim))
        self.special = nn.Parameter(torch.randn(extra_tokens, dim) * INIT_STD)

    def reset(self) -> None:
        """Nothing to redraw: the residuals start at zero."""

    def residuals(self) -> torch.Tensor:
        """``Δ`` after the norm bound."""
        if self.max_norm is None:
            return self.delta
        norms = self.delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.delta * (self.max_norm / norms).clamp(max=1.0)

    @property
    def weight(self) -> torch.Tensor:
        catalogue = self.map(self.content) + self.residuals()
        padding = catalogue.new_zeros(1, catalogue.shape[1])
        return torch.cat([padding, catalogue, self.special])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids]


class _FrozenProjection(nn.Module):
    """``(x − mean) @ matrix`` with fixed ``mean`` and ``matrix``."""

    mean: torch.Tensor
    matrix: torch.Tensor

    def __init__(self, mean: np.ndarray, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("matrix", matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.matrix


def _pca(content: np.ndarray, dim: int) -> torch.Tensor:
    """``d_content × dim`` projection on the top principal directions of the centred
    content, scaled so that the projected vectors have the mean norm of ID vectors at
    initialisation."""
    centred = content - content.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    if vt.shape[0] < dim:
        raise ValueError(f"pca needs at least dim={dim} items and content dimensions")
    projection = vt[:dim].T
    mean_norm = float(np.linalg.norm(centred @ projection, axis=1).mean())
    target = INIT_STD * np.sqrt(dim)
    return torch.as_tensor(projection * (target / max(mean_norm, 1e-12)), dtype=torch.float32)
