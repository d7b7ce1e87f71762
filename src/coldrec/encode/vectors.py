"""Vector artifacts and user content vectors.

:func:`save_vectors` / :func:`load_vectors` write and read the ``.npy`` + JSON sidecar
artifact of ``DESIGN.md`` (rows follow the Dataset's item or user index);
:func:`user_content_vectors` averages a user's recent item vectors (thesis eq. 4.2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coldrec._util.io import atomic_write, read_json, require_file, write_json_atomic
from coldrec.data.dataset import Dataset
from coldrec.errors import DataError

__all__ = ["l2_normalised", "load_vectors", "save_vectors", "user_content_vectors"]


def user_content_vectors(
    dataset: Dataset,
    item_vectors: np.ndarray,
    splits: Sequence[str] = ("train",),
    last_n: int = 50,
) -> np.ndarray:
    """Content vector per user (thesis eq. 4.2), ``float32`` of shape ``(n_users, dim)``.

    Row ``u`` is the L2-normalised mean of the vectors of user ``u``'s last ``last_n``
    *distinct* items in ``splits``, by time: an item seen twice counts once, at its most
    recent position. Users without interactions in ``splits`` (or whose mean is the
    zero vector) get a zero row. ``item_vectors`` rows follow the Dataset's item index.
    """
    item_vectors = np.asarray(item_vectors)
    if item_vectors.ndim != 2 or len(item_vectors) != dataset.n_items:
        raise DataError(
            f"item_vectors must have one row per item ({dataset.n_items}), "
            f"got shape {item_vectors.shape}"
        )
    recent = dataset.recent_items(last_n, splits).astype(np.float64)
    sums = np.asarray(recent @ item_vectors.astype(np.float64))
    return l2_normalised(sums).astype(np.float32)


def save_vectors(
    path: str | os.PathLike[str], vectors: np.ndarray, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``vectors`` as ``float32`` ``.npy`` plus the JSON sidecar ``<name>.json``.

    The sidecar holds ``model`` (``null`` unless ``meta`` names it), everything in
    ``meta`` (e.g. ``items``: the row → item id order), and the measured ``rows``,
    ``dim``, ``dtype`` and ``normalised`` (every row of unit norm or zero), which
    override ``meta``. Both files are written atomically (temporary file + rename).
    """
    path = Path(path)
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise DataError(f"vectors must be a 2-D matrix, got shape {array.shape}")
    sidecar = {
        "model": None,
        **dict(meta or {}),
        "rows": int(array.shape[0]),
        "dim": int(array.shape[1]),
        "dtype": "float32",
        "normalised": _is_normalised(array),
    }
    _save_npy_atomic(path, array)
    write_json_atomic(_sidecar_path(path), sidecar)
    return path


def load_vectors(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a matrix written by :func:`save_vectors` and its sidecar, checked against
    each other (:class:`DataError` when rows, dim or dtype disagree)."""
    path = require_file(path, "vectors")
    sidecar = require_file(_sidecar_path(path), "vectors sidecar")
    meta = read_json(sidecar)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a plain .npy matrix ({exc})") from None
    if array.dtype != np.float32 or array.ndim != 2:
        raise DataError(f"{path}: expected a 2-D float32 matrix, got {array.dtype} {array.shape}")
    expected = (meta.get("rows"), meta.get("dim"))
    if expected != array.shape:
        raise DataError(
            f"{sidecar}: says rows, dim = {expected}, but {path.name} holds {array.shape}"
        )
    return array, meta


def l2_normalised(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; a zero row stays zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _is_normalised(array: np.ndarray) -> bool:
    norms = np.linalg.norm(array.astype(np.float64), axis=1)
    return bool(np.all((np.abs(norms - 1) < 1e-4) | (norms == 0)))


def _sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
