"""CLCRec (Wei et al., ACM MM 2021): contrastive learning between collaborative and
content representations. CLCRec learns its own user and item ID embeddings (no teacher)
and a content encoder ``g`` (Linear → LeakyReLU → Linear, 256 hidden, as the authors'
code). For each training pair, with ``n_negatives`` uniform negatives as the other
candidates (``y_0`` the positive):

- user–item term: InfoNCE of the user's ID vector against the candidates' ID vectors, a
  ``mixed`` share of which are replaced by their content representation ``g(c_y)``;
- representation term: InfoNCE of the positive's normalised ID vector against the
  candidates' normalised ``g(c_y)`` (cosines);
- ``loss = lam·representation + (1 − lam)·user_item + reg·(mean ‖e_u‖ + mean ‖e_y‖)/2``
  (norms, as the authors' code), both InfoNCE terms at ``temperature``.

Warm items keep their ID vector, cold items get ``g(c)``. The negatives are drawn with
replacement (the authors' code draws without), and exactly ``mixed`` of the candidate rows
take their content representation (the authors' code draws ``mixed·n`` row numbers with
replacement: about 39% of the rows at 0.5)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from coldrec.coldstart.base import ContentModel, ContentModelConfig, mlp

__all__ = ["CLCRec", "CLCRecConfig", "first_candidate_info_nce"]


class CLCRecConfig(ContentModelConfig):
    """CLCRec settings (the authors' MovieLens defaults, their Amazon regularisation)."""

    kind: Literal["clcrec"] = "clcrec"
    n_negatives: int = Field(128, gt=0)
    temperature: float = Field(2.0, gt=0)
    lam: float = Field(0.5, ge=0, le=1)
    """Weight of the representation term (1 − lam: the user–item term)."""
    mixed: float = Field(0.5, ge=0, le=1)
    """Share of candidate rows of the user–item term given by their content."""
    reg: float = Field(1e-3, ge=0)
    hidden: int = Field(256, gt=0)

    def build(self) -> CLCRec:
        return CLCRec(self)


def first_candidate_info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over rows of ``−log softmax(anchor·candidates / temperature)[0]``: anchors
    ``B × d``, candidates ``B × (1 + K) × d`` with the positive first."""
    logits = torch.einsum("bd,bkd->bk", anchors, candidates) / temperature
    return F.cross_entropy(logits, torch.zeros(len(anchors), dtype=torch.long))


class CLCRecNet(nn.Module):
    """ID embeddings and the content encoder."""

    def __init__(self, n_users: int, n_items: int, dim: int, content_dim: int, hidden: int):
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.users.weight)
        nn.init.xavier_normal_(self.items.weight)
        self.encoder = mlp([content_dim, hidden, dim], lambda: nn.LeakyReLU(0.01))


class CLCRec(ContentModel):
    """CLCRec (module doc); its ID embeddings' size is ``backbone.dim``."""

    config: CLCRecConfig
    uses_teacher: ClassVar[bool] = False

    def __init__(self, config: CLCRecConfig | None = None) -> None:
        super().__init__(config or CLCRecConfig())

    def _network(self, n_users: int, n_items: int, content_dim: int) -> CLCRecNet:
        return CLCRecNet(n_users, n_items, self.dim, content_dim, self.config.hidden)

    def _loss(
        self, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert isinstance(self.net, CLCRecNet) and self.history is not None
        config = self.config
        negatives = self.history.uniform(users, config.n_negatives, generator)
        items = torch.cat([positives[:, None], negatives], dim=1)
        ids = self.net.items(items)
        encoder = self.net.encoder
        encoded = self.per_item(encoder, items)
        # normalised per distinct item, before the gather: a batch repeats items many times
        unit = self.per_item(lambda content: F.normalize(encoder(content), dim=-1), items)
        picked = torch.randperm(items.numel(), generator=generator)
        mixed = torch.zeros(items.numel(), dtype=torch.bool)
        mixed[picked[: int(config.mixed * items.numel())]] = True
        candidates = torch.where(mixed.view_as(items)[..., None], encoded, ids)
        user_vectors = self.net.users(users)
        user_item = first_candidate_info_nce(user_vectors, candidates, config.temperature)
        anchors = F.normalize(ids[:, 0], dim=-1)
        representation = first_candidate_info_nce(anchors, unit, config.temperature)
        norms = (user_vectors.norm(dim=1).mean() + ids.norm(dim=2).mean()) / 2
        return config.lam * representation + (1 - config.lam) * user_item + config.reg * norms

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(self.net, CLCRecNet)
        items = torch.where(self.warm[:, None], self.net.items.weight,
                            self.net.encoder(self.content))  # fmt: skip
        return self.net.users.weight.clone(), items

    def _cold_vectors(self, content: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.net, CLCRecNet)
        return self.net.encoder(content)
