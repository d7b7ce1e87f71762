"""The popularity prior of STARS's logits (eq. 2): ``z_k = h·e_k + b_k`` with the fixed
bias ``b_k = −γ·log π_k`` and ``π_k = (c_k + s) / (Σc + s·|I|)``, ``c_k`` item ``k``'s
training interactions and ``s`` the additive smoothing.

The bias lowers popular items' logits during training, so the item vectors need not
carry popularity themselves; γ = 0 is the plain softmax. An item without interactions
(a cold item) has the smallest ``π`` and so the largest prior.
"""

from __future__ import annotations

import numpy as np

__all__ = ["popularity_prior", "unseen_prior"]


def popularity_prior(counts: np.ndarray, gamma: float, smoothing: float = 1.0) -> np.ndarray:
    """``b_k = −γ·log π_k`` per item from its interaction ``counts`` (float32)."""
    counts = np.asarray(counts, dtype=np.float64)
    if gamma < 0 or smoothing <= 0:
        raise ValueError(f"need gamma >= 0 and smoothing > 0, got {gamma} and {smoothing}")
    if (counts < 0).any():
        raise ValueError("interaction counts cannot be negative")
    share = (counts + smoothing) / (counts.sum() + smoothing * len(counts))
    return (-gamma * np.log(share)).astype(np.float32)


def unseen_prior(counts: np.ndarray, gamma: float, smoothing: float = 1.0) -> float:
    """The prior :func:`popularity_prior` gives an item without interactions, for an item
    added after training (the catalogue's size and counts unchanged)."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(-gamma * np.log(smoothing / (counts.sum() + smoothing * len(counts))))
