"""Helpers for implementing ``score``: candidate columns from full scores, and per-user
min-max normalisation (the fusions' common scale)."""

from __future__ import annotations

import numpy as np

__all__ = ["minmax", "scores_at", "without_unknown_users"]


def scores_at(full: np.ndarray, items: np.ndarray | None) -> np.ndarray:
    """Pick candidate columns from full-catalogue scores; a ``-1`` padding slot gets NaN."""
    if items is None:
        return full
    picked = np.take_along_axis(full, np.maximum(items, 0), axis=1).astype(np.float32)
    picked[items < 0] = np.nan
    return picked


def minmax(scores: np.ndarray) -> np.ndarray:
    """Rescale each row to [0, 1] over its scored (non-NaN) entries; NaN stays NaN and a
    constant row becomes zeros."""
    known = ~np.isnan(scores)
    filled_low = np.where(known, scores, np.inf).min(axis=1, keepdims=True)
    filled_high = np.where(known, scores, -np.inf).max(axis=1, keepdims=True)
    span = filled_high - filled_low
    scaled = np.divide(scores - filled_low, span, out=np.zeros_like(scores), where=span > 0)
    return np.where(known, scaled, np.nan)


def without_unknown_users(scores: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``scores`` with the rows of users the model knows nothing about (``known`` false:
    no history) set to NaN, "cannot score", rather than ties every ranking would break by
    item id; a fallback (popularity, in serving) can then take their place."""
    return np.where(known[:, None], scores, np.float32(np.nan))
