"""The Two-Tower loss: weighted in-batch softmax (thesis eq. 4.3).

=================  ===============================================  =====================
loss               inputs                                           formula
=================  ===============================================  =====================
in-batch softmax   ``u`` (B × d) user vectors, ``v`` (B × d) item      ``Σ_r w_r · CE(s_r, r)
                   vectors of the batch's positives, their item     / Σ_r w_r`` with
                   ids, ``w`` (B) row weights, ``τ``, optional      ``s_rc = u_r·v_c / τ −
                   ``log q`` per column                             log q_c``
=================  ===============================================  =====================

Columns holding the same item as row ``r``'s positive (other than ``r`` itself) are
masked, so a repeated item is never its own negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["in_batch_softmax_loss"]


def in_batch_softmax_loss(
    users: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor,
    weights: torch.Tensor,
    temperature: torch.Tensor | float,
    log_q: torch.Tensor | None = None,
    rows: slice = slice(None),
) -> torch.Tensor:
    """Weighted in-batch softmax cross-entropy (eq. 4.3); row ``r``'s positive is column
    ``r`` and the other columns are its negatives, except columns of the same item.
    ``log_q`` (per column) is subtracted from the logits: the sampling-bias correction.

    ``rows``: which rows of the batch ``users`` holds (data-parallel training: a process's
    shard); the loss is then their part of the whole batch's weighted mean, so the parts
    of all the shards sum to it."""
    positions = torch.arange(len(item_ids), device=items.device)[rows]
    logits = users @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    duplicate = item_ids[None, :] == item_ids[positions][:, None]
    duplicate[torch.arange(len(positions)), positions] = False
    logits = logits.masked_fill(duplicate, float("-inf"))
    per_row = F.cross_entropy(logits, positions, reduction="none")
    return (weights[rows] * per_row).sum() / weights.sum()
