"""LAGCL4Rec's rank-level losses, which weigh hard negatives apart from easy ones.

A negative is *hard* when it shares the positive's semantic group (the same taxonomy leaf,
text cluster or LLM-named group), *easy* otherwise.

- **LABPR** (eq. 9): BPR in which each hard negative's term weighs ``w_h`` (> 1) and each
  easy one 1, averaged over the weights:
  ``−Σ w_j log σ(s_ui − s_uj) / Σ w_j``.
- **Adaptive-temperature InfoNCE** (eq. 10–11): per anchor, the positive at temperature
  ``τ_p``, hard negatives at ``τ_h`` and easy ones at ``τ_e`` (``τ_h < τ_e ≤ τ_p``: hard
  negatives are pushed hardest), hard terms weighed ``w_h``:
  ``−log e^{s_p/τ_p} / (e^{s_p/τ_p} + w_h Σ_hard e^{s_h/τ_h} + Σ_easy e^{s_e/τ_e})``,
  averaged over the anchors.

These follow the issue's statement of the paper's equations; the paper's own text was not
available here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["adaptive_info_nce", "in_batch_adaptive_info_nce", "labpr", "same_group"]


def same_group(anchors: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Hard-negative mask: ``others`` (batch × k group ids) in the group of their row's
    anchor (``anchors``: batch group ids); a group id below 0 (no group) matches nothing."""
    return (others == anchors[:, None]) & (anchors[:, None] >= 0)


def labpr(
    positive: torch.Tensor, negatives: torch.Tensor, hard: torch.Tensor, w_hard: float
) -> torch.Tensor:
    """LABPR of ``positive`` scores (batch) against ``negatives`` (batch × k), ``hard``
    (batch × k, bool) marking the hard ones."""
    if w_hard <= 0:
        raise ValueError(f"w_hard must be positive, got {w_hard}")
    weights = torch.where(hard, w_hard, 1.0)
    terms = -F.logsigmoid(positive[:, None] - negatives)
    return (weights * terms).sum() / weights.sum()


def adaptive_info_nce(
    positive: torch.Tensor,
    negatives: torch.Tensor,
    hard: torch.Tensor,
    tau_positive: float,
    tau_hard: float,
    tau_easy: float,
    w_hard: float,
) -> torch.Tensor:
    """Adaptive-temperature InfoNCE of ``positive`` similarities (batch) against
    ``negatives`` (batch × k), ``hard`` (batch × k, bool) marking the hard ones."""
    _check(tau_positive, tau_hard, tau_easy, w_hard)
    scaled = torch.where(hard, negatives / tau_hard + math.log(w_hard), negatives / tau_easy)
    logits = torch.cat([(positive / tau_positive)[:, None], scaled], dim=1)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def in_batch_adaptive_info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    groups: torch.Tensor,
    tau_positive: float,
    tau_hard: float,
    tau_easy: float,
    w_hard: float,
) -> torch.Tensor:
    """:func:`adaptive_info_nce` of row ``k`` of ``a`` against row ``k`` of ``b`` (cosine),
    the other rows of ``b`` its negatives, hard when in row ``k``'s group (``groups``).

    One batch × batch matrix of logits, the cosines times a constant matrix of inverse
    temperatures plus one of log weights (the positives' on the diagonal), rather than
    the off-diagonal negatives gathered apart: the same loss in a quarter of the time (the
    gathers and their gradients dominated XSimGCL's rank-level epochs;
    ``benchmarks/graph_speed.py``)."""
    _check(tau_positive, tau_hard, tau_easy, w_hard)
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    with torch.no_grad():
        hard = same_group(groups, groups.expand(len(groups), -1))
        scale = torch.where(hard, 1 / tau_hard, 1 / tau_easy).fill_diagonal_(1 / tau_positive)
        shift = torch.where(hard, math.log(w_hard), 0.0).fill_diagonal_(0.0)
    logits = torch.addcmul(shift, a @ b.T, scale)
    positive = (a * b).sum(dim=1) / tau_positive
    return (torch.logsumexp(logits, dim=1) - positive).mean()


def _check(tau_positive: float, tau_hard: float, tau_easy: float, w_hard: float) -> None:
    """The adaptive InfoNCE's settings: ``0 < τ_h < τ_e <= τ_p`` and ``w_h > 0``."""
    if not 0 < tau_hard < tau_easy <= tau_positive:
        raise ValueError(f"need 0 < tau_hard < tau_easy <= tau_positive, got {tau_hard}, "
                         f"{tau_easy}, {tau_positive}")  # fmt: skip
    if w_hard <= 0:
        raise ValueError(f"w_hard must be positive, got {w_hard}")
