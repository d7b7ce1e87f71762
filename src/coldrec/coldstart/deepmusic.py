"""DeepMusic (van den Oord, Dieleman and Schrauwen, NeurIPS 2013): a network regressing an
item's content onto its warm embedding. The paper maps audio to latent factors with a
CNN; on text vectors it is an MLP ``content → 2·dim → dim`` (ReLU), trained with the mean
squared error to the BPR-MF teacher's item vector of the item of each distinct training
(user, item) pair (so an item counts once per user, as in the ColdRec toolkit). Warm items
keep the teacher's vector, cold items get the mapped one; users keep the teacher's."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from coldrec.coldstart.base import ContentModel, ContentModelConfig, mlp

__all__ = ["DeepMusic", "DeepMusicConfig"]


class DeepMusicConfig(ContentModelConfig):
    """DeepMusic settings."""

    kind: Literal["deepmusic"] = "deepmusic"

    def build(self) -> DeepMusic:
        return DeepMusic(self)


class DeepMusic(ContentModel):
    """DeepMusic over a BPR-MF teacher (module doc)."""

    config: DeepMusicConfig

    def __init__(self, config: DeepMusicConfig | None = None) -> None:
        super().__init__(config or DeepMusicConfig())

    def _network(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        return mlp([content_dim, 2 * self.dim, self.dim], nn.ReLU)

    def _loss(
        self, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert self.net is not None
        target = self.fitted_teacher().item_vectors[positives]
        return F.mse_loss(self.net(self.content[positives]), target)

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = self.fitted_teacher()
        mapped = self._cold_vectors(self.content)
        items = torch.where(self.warm[:, None], teacher.item_vectors, mapped)
        return teacher.user_vectors.clone(), items

    def _cold_vectors(self, content: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        return self.net(content)
