"""The ranking losses, combined as ``L_main + λ_sim·L_sim + λ_pair·L_pair`` (thesis §4.3.5).

=================  ===========================================  ==========================
loss               inputs                                       formula
=================  ===========================================  ==========================
sampled softmax    ``h`` (N × d) context vectors, ``pos`` (N),   ``-Σ w·log softmax([h·e⁺,
(``L_sim``)        ``neg`` (N × K) item ids, ``emb`` item        h·e⁻₁..K])₀ / Σ w``
                   embeddings, ``w`` (N) row weights
sequence sampled   ``H`` (B × L × d) hidden states, targets      the same, each target with
softmax            (B × L, 0 = none), ``neg`` (B × K): one set   its sequence's negatives
(``L_main``)       of negatives per sequence
full softmax       ``h``, ``pos``, ``emb``, ``w``                ``-Σ w·log softmax(h·Eᵀ)₊ / Σ w``
pairwise           ``s⁺``, ``s⁻`` (N) scores, ``w`` (N)          ``-Σ w·log σ(s⁺ − s⁻) / Σ w``
(``L_pair``)
=================  ===========================================  ==========================

``L_main`` is the sampled softmax of each true next item against sampled negatives,
scored from the last position of its prefix (the positions of one sequence share its
negatives, which costs a B × K gather instead of one per target); ``L_sim`` is the same
loss with a pseudo item (an LLM-made edge) as the positive and the edge weight as
``w``; ``L_pair`` scores an LLM-made triplet under the user's sequence context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from coldrec.rank.network import SequenceNet, SequentialConfig
    from coldrec.supervision.labels import Labels
    from coldrec.training.negatives import NegativeSampler

__all__ = [
    "LabelLosses",
    "full_softmax_loss",
    "pairwise_loss",
    "sampled_softmax_loss",
    "sequence_softmax_loss",
]


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum()


def sampled_softmax_loss(
    context: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    embeddings: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Listwise cross-entropy of each positive against its own sampled negatives."""
    items = torch.cat([positives[:, None], negatives], dim=1)
    logits = torch.einsum("nd,nkd->nk", context, embeddings[items])
    targets = torch.zeros(len(positives), dtype=torch.long, device=logits.device)
    return _weighted_mean(F.cross_entropy(logits, targets, reduction="none"), weights)


def sequence_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    embeddings: torch.Tensor,
) -> torch.Tensor:
    """Listwise cross-entropy of every target (``targets > 0``) against the negatives of
    its own sequence (row of ``negatives``)."""
    real = targets > 0
    positive = (hidden[real] * embeddings[targets[real]]).sum(-1)
    negative = torch.bmm(hidden, embeddings[negatives].transpose(1, 2))[real]
    logits = torch.cat([positive[:, None], negative], dim=1)
    zeros = torch.zeros(len(positive), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, zeros)


def full_softmax_loss(
    context: torch.Tensor,
    positives: torch.Tensor,
    embeddings: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over every row of ``embeddings`` (RecBole's SASRec ``CE`` setting)."""
    logits = context @ embeddings.T
    return _weighted_mean(F.cross_entropy(logits, positives, reduction="none"), weights)


def pairwise_loss(
    positive_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted BPR: ``-w · log σ(s⁺ − s⁻)``."""
    return _weighted_mean(-F.logsigmoid(positive_scores - negative_scores), weights)


@dataclass(frozen=True)
class LabelLosses:
    """``λ_sim·L_sim + λ_pair·L_pair`` over the filtered labels, drawn per step."""

    edges: torch.Tensor
    edge_weights: torch.Tensor
    triplets: torch.Tensor
    triplet_weights: torch.Tensor
    config: SequentialConfig

    @classmethod
    def of(cls, labels: Labels, config: SequentialConfig) -> LabelLosses:
        return cls(
            torch.tensor(labels.edges[["user", "item"]].to_numpy(np.int64)).reshape(-1, 2),
            torch.tensor(labels.edges["weight"].to_numpy(np.float32)),
            torch.tensor(labels.triplets[["user", "pos", "neg"]].to_numpy(np.int64)).reshape(-1, 3),
            torch.tensor(labels.triplets["weight"].to_numpy(np.float32)),
            config,
        )

    def loss(
        self,
        net: SequenceNet,
        history: torch.Tensor,
        sampler: NegativeSampler,
        batch_size: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        total = torch.zeros(())
        if len(self.edges) and self.config.lambda_sim:
            pick = torch.randint(
                len(self.edges), (min(batch_size, len(self.edges)),), generator=generator
            )
            users, items = self.edges[pick, 0], self.edges[pick, 1]
            context = net.contexts(history[users])
            negatives = sampler.sample(users, self.config.n_negatives, generator) + 1
            l_sim = sampled_softmax_loss(
                context, items + 1, negatives, net.items.weight, self.edge_weights[pick]
            )
            total = total + self.config.lambda_sim * l_sim
        if len(self.triplets) and self.config.lambda_pair:
            count = min(self.config.pairs_per_step, len(self.triplets))
            pick = torch.randint(len(self.triplets), (count,), generator=generator)
            users, pos, neg = self.triplets[pick].T
            context = net.contexts(history[users])
            s_pos = (context * net.items(pos + 1)).sum(-1)
            s_neg = (context * net.items(neg + 1)).sum(-1)
            total = total + self.config.lambda_pair * pairwise_loss(
                s_pos, s_neg, self.triplet_weights[pick]
            )
        return total
