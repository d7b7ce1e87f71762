"""FAISS inner-product search for top-M candidates, with each user's history removed.

``flat`` (exact, ``IndexFlatIP``) is the default; ``ivf`` (``IndexIVFFlat``, inner
product) and ``hnsw`` (``IndexHNSWFlat``, inner product) trade exactness for speed on
large catalogues, and ``ivfpq`` (``IndexIVFPQ``: each vector stored as ``pq_m`` codes of
``pq_bits`` bits, residuals of its cluster) trades it for memory too: a million
384-dimensional items take ``pq_m`` MB instead of 1.5 GB. The IVF kinds learn their
clusters (and codebooks) from a seeded sample of at most ``train_size`` items. Vectors
are expected L2-normalised, so inner product is cosine.
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from coldrec._util.sparse import hit_matrix, list_lengths
from coldrec.data.candidates import Candidates
from coldrec.errors import ConfigError

__all__ = ["IndexConfig", "build_index", "search"]


class IndexConfig(BaseModel):
    """Which FAISS index serves the item vectors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["flat", "ivf", "ivfpq", "hnsw"] = "flat"
    nlist: int = Field(256, gt=0)
    """IVF: number of clusters (at most the number of items)."""
    nprobe: int = Field(32, gt=0)
    """IVF: clusters visited per query."""
    pq_m: int = Field(48, gt=0)
    """IVF-PQ: codes per vector (must divide the vectors' dimension)."""
    pq_bits: int = Field(8, ge=1, le=16)
    """IVF-PQ: bits per code (a codebook of ``2**pq_bits`` centroids per code)."""
    train_size: int = Field(100_000, gt=0)
    """IVF kinds: items the clusters and codebooks learn from (a seeded sample)."""
    hnsw_m: int = Field(32, gt=1)
    """HNSW: links per node."""
    ef_search: int = Field(256, gt=0)
    """HNSW: search breadth (raised to the number of results asked for when lower)."""
    batch_size: int = Field(4096, gt=0)
    """Queries searched at once."""


def build_index(item_vectors: np.ndarray, config: IndexConfig | None = None) -> faiss.Index:
    """An inner-product index over ``item_vectors`` (row = item id)."""
    config = config or IndexConfig()
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    n_items, dim = vectors.shape
    index: faiss.Index
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind in ("ivf", "ivfpq"):
        ivf = _ivf(config, dim, n_items)
        ivf.train(_training_sample(vectors, config))
        ivf.nprobe = config.nprobe
        index = ivf
    else:
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = config.ef_search
    index.add(vectors)
    return index


def _ivf(config: IndexConfig, dim: int, n_items: int) -> faiss.IndexIVF:
    """An untrained IVF-Flat or IVF-PQ index (inner product)."""
    quantiser = faiss.IndexFlatIP(dim)
    nlist = min(config.nlist, n_items)
    if config.kind == "ivf":
        return faiss.IndexIVFFlat(quantiser, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if dim % config.pq_m:
        raise ConfigError(f"index.pq_m = {config.pq_m} does not divide the vectors' "
                          f"dimension {dim}")  # fmt: skip
    if n_items < 2**config.pq_bits:
        raise ConfigError(f"index.kind ivfpq with pq_bits = {config.pq_bits} needs at least "
                          f"{2**config.pq_bits} items to learn its codebooks, got {n_items}: "
                          "lower pq_bits or use flat")  # fmt: skip
    return faiss.IndexIVFPQ(quantiser, dim, nlist, config.pq_m, config.pq_bits,
                            faiss.METRIC_INNER_PRODUCT)  # fmt: skip


def _training_sample(vectors: np.ndarray, config: IndexConfig) -> np.ndarray:
    """At most ``train_size`` rows of ``vectors``, a sample seeded by the index settings."""
    if len(vectors) <= config.train_size:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), config.train_size, replace=False)
    return vectors[np.sort(rows)]


def search(
    index: faiss.Index,
    users: np.ndarray,
    user_vectors: np.ndarray,
    top_m: int,
    exclude: sparse.csr_array | None = None,
    batch_size: int = 4096,
) -> Candidates:
    """The ``top_m`` best items per user by inner product, best first, never an item of
    the user's row in ``exclude`` (rows follow ``users``); ``-1`` pads short lists."""
    items, scores = [], []
    for start in range(0, len(users), batch_size):
        rows = np.arange(start, min(start + batch_size, len(users)))
        excluded = exclude[rows] if exclude is not None else None
        extra = int(list_lengths(excluded).max(initial=0)) if excluded is not None else 0
        k = min(top_m + extra, index.ntotal)
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = max(index.hnsw.efSearch, k)
        found_scores, found = index.search(
            np.ascontiguousarray(user_vectors[rows], dtype=np.float32), k
        )
        keep = found >= 0
        if excluded is not None:
            keep &= ~hit_matrix(found, excluded)
        # Move kept entries to the front of each row, preserving their order.
        order = np.argsort(~keep, axis=1, kind="stable")[:, :top_m]
        kept = np.take_along_axis(keep, order, axis=1)
        items.append(_pad(np.where(kept, np.take_along_axis(found, order, axis=1), -1), top_m, -1))
        scores.append(
            _pad(
                np.where(kept, np.take_along_axis(found_scores, order, axis=1), -np.inf),
                top_m,
                -np.inf,
            )
        )
    width = (0, top_m)
    return Candidates(
        users=np.asarray(users, dtype=np.int64),
        items=np.concatenate(items).astype(np.int64) if items else np.empty(width, dtype=np.int64),
        scores=np.concatenate(scores).astype(np.float32)
        if scores
        else np.empty(width, dtype=np.float32),
    )


def _pad(block: np.ndarray, width: int, value: float) -> np.ndarray:
    """Right-pad ``block`` with ``value`` to ``width`` columns (when the catalogue is small)."""
    missing = width - block.shape[1]
    return np.pad(block, ((0, 0), (0, missing)), constant_values=value) if missing > 0 else block
