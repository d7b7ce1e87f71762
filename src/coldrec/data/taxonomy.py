"""The taxonomy tree the LLM stages walk (thesis §4.2): categories → subcategories →
leaf clusters → items, and each user's interest leaves.

An item's path is its longest category path (the one its text is built from,
:func:`coldrec.data.prepare.item_text`), split into levels:

- **category**: the first ``category_levels`` levels (2: ``Beauty > Makeup``), the
  choices of Stage 2; an item without a path is ``Uncategorised``;
- **subcategory**: the category plus the next ``subcategory_levels`` levels (levels 3–4:
  ``Beauty > Makeup > Face > Concealers``), the choices of Stage 3; an item whose path
  stops at the category gets the subcategory ``<category> > General``;
- **leaf**: the items of one full path. A leaf larger than ``max_leaf`` is split by
  spherical k-means on the Two-Tower item vectors (inner product, ``ceil(n / max_leaf)``
  clusters, up to ``split_rounds`` rounds for clusters still too large); where vectors
  are missing or too few (fewer than two per cluster), or rounds run out, items are
  ordered by a hash of their id and cut into blocks of ``max_leaf`` (hash buckets). So
  no leaf ever holds more than ``max_leaf`` items.

A user's **interest leaves** are the leaves of their last ``interest_items`` history
items, most recent first, each leaf kept at its first appearance, at most
``interest_leaves`` of them.

:meth:`Taxonomy.save` writes ``taxonomy.json``::

    {"config": {...}, "categories": ["Beauty > Makeup", ...],
     "subcategories": [{"name": ..., "category": <index>}, ...],
     "leaves": [{"path": [...], "subcategory": <index>, "part": 1, "parts": 1,
                 "description": ..., "items": [<item id>, ...]}, ...],
     "user_leaves": {"<user id>": [<leaf index>, ...], ...}}
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec._util.io import read_json, require_file, write_json_atomic
from coldrec.config import validate
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.errors import DataError

__all__ = ["Leaf", "Taxonomy", "TaxonomyConfig", "build_taxonomy"]

UNCATEGORISED = "Uncategorised"
GENERAL = "General"
_WORD = re.compile(r"[^\W\d_]{3,}")
_COMMON = frozenset(
    ["and", "for", "with", "the", "from", "your", "you", "this", "that", "pack", "count",
     "ounce", "ounces", "fluid"]
)  # fmt: skip
"""Words too common in product titles to describe a leaf."""


class TaxonomyConfig(BaseModel):
    """How the tree is cut into levels and leaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category_levels: int = Field(2, gt=0)
    """Path levels that make a category (Stage 2)."""
    subcategory_levels: int = Field(2, gt=0)
    """Further levels that make a subcategory (Stage 3)."""
    max_leaf: int = Field(200, gt=1)
    """Most items in one leaf."""
    split_rounds: int = Field(3, ge=0)
    """Rounds of k-means splitting before the hash-bucket fallback."""
    kmeans_iterations: int = Field(20, gt=0)
    interest_items: int = Field(50, gt=0)
    """History items whose leaves make a user's interest leaves."""
    interest_leaves: int = Field(5, gt=0)
    seed: int = 0


@dataclass(frozen=True)
class Leaf:
    """One leaf: a full path (or one part of a split path) and its items."""

    path: tuple[str, ...]
    subcategory: int
    part: int
    parts: int
    description: str
    items: np.ndarray


@dataclass(frozen=True)
class Taxonomy:
    """Categories, subcategories and leaves over a Dataset's items (see the module doc)."""

    categories: list[str]
    subcategories: list[str]
    subcategory_category: np.ndarray
    """Category index of each subcategory."""
    leaves: list[Leaf]
    item_leaf: np.ndarray
    """Leaf index of each item."""
    user_leaves: dict[int, list[int]]
    """Interest leaves of each user with history."""
    config: TaxonomyConfig

    @property
    def item_subcategory(self) -> np.ndarray:
        return np.array([leaf.subcategory for leaf in self.leaves], dtype=np.int64)[self.item_leaf]

    @property
    def item_category(self) -> np.ndarray:
        return self.subcategory_category[self.item_subcategory]

    def category_subcategories(self, category: int) -> list[int]:
        """Subcategory indices of one category, in index order."""
        return np.flatnonzero(self.subcategory_category == category).tolist()

    def subcategory_items(self, subcategory: int) -> np.ndarray:
        """Item ids of one subcategory, ascending."""
        return np.flatnonzero(self.item_subcategory == subcategory)

    def save(self, path: str | Path) -> Path:
        """Write ``taxonomy.json`` (atomically)."""
        path = Path(path)
        write_json_atomic(path, self.to_json())
        return path

    def to_json(self) -> dict[str, Any]:
        pairs = zip(self.subcategories, self.subcategory_category.tolist(), strict=True)
        return {
            "config": self.config.model_dump(mode="json"),
            "categories": self.categories,
            "subcategories": [{"name": name, "category": c} for name, c in pairs],
            "leaves": [_leaf_json(leaf) for leaf in self.leaves],
            "user_leaves": {str(user): leaves for user, leaves in self.user_leaves.items()},
        }

    @classmethod
    def load(cls, path: str | Path, n_items: int | None = None) -> Taxonomy:
        """Read ``taxonomy.json``; every item must sit in exactly one leaf (of ``n_items``
        items when given)."""
        path = require_file(path, "taxonomy")
        data = read_json(path)
        try:
            leaves = [
                Leaf(tuple(leaf["path"]), int(leaf["subcategory"]), int(leaf["part"]),
                     int(leaf["parts"]), str(leaf["description"]),
                     np.asarray(leaf["items"], dtype=np.int64))
                for leaf in data["leaves"]
            ]  # fmt: skip
            subcategories = data["subcategories"]
            taxonomy = cls(
                categories=list(data["categories"]),
                subcategories=[s["name"] for s in subcategories],
                subcategory_category=np.array([s["category"] for s in subcategories], np.int64),
                leaves=leaves,
                item_leaf=_item_leaf(leaves, n_items, path),
                user_leaves={int(u): list(v) for u, v in data["user_leaves"].items()},
                config=validate(TaxonomyConfig, data["config"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: not a coldrec taxonomy file ({exc!r})") from None
        return taxonomy


def _leaf_json(leaf: Leaf) -> dict[str, Any]:
    return {
        "path": list(leaf.path),
        "subcategory": leaf.subcategory,
        "part": leaf.part,
        "parts": leaf.parts,
        "description": leaf.description,
        "items": leaf.items.tolist(),
    }


def _item_leaf(leaves: list[Leaf], n_items: int | None, path: Path) -> np.ndarray:
    count = sum(len(leaf.items) for leaf in leaves)
    n_items = count if n_items is None else n_items
    item_leaf = np.full(n_items, -1, dtype=np.int64)
    for index, leaf in enumerate(leaves):
        if len(leaf.items) and (leaf.items.min() < 0 or leaf.items.max() >= n_items):
            raise DataError(f"{path}: leaf {index} lists an item id outside [0, {n_items})")
        item_leaf[leaf.items] = index
    if count != n_items or (item_leaf < 0).any():
        raise DataError(f"{path}: the leaves must hold each of the {n_items} items exactly once")
    return item_leaf


def item_levels(categories: list[list[str]], config: TaxonomyConfig) -> tuple[str, str, tuple]:
    """An item's category name, subcategory name and full leaf path (module doc)."""
    longest: list[str] = max(categories, key=len, default=[])
    path = tuple(longest) or (UNCATEGORISED,)
    category = path[: config.category_levels]
    subcategory = path[: config.category_levels + config.subcategory_levels]
    if len(path) <= config.category_levels:
        subcategory = path = (*category, GENERAL)
    return " > ".join(category), " > ".join(subcategory), path


def build_taxonomy(
    dataset: Dataset, item_vectors: np.ndarray | None = None, config: TaxonomyConfig | None = None
) -> Taxonomy:
    """The tree of ``dataset``'s items; ``item_vectors`` (Two-Tower, one row per item)
    split large leaves, else hash buckets do (module doc)."""
    config = config or TaxonomyConfig()
    if item_vectors is not None and len(item_vectors) != dataset.n_items:
        raise DataError(
            f"item_vectors must have one row per item ({dataset.n_items}), got {len(item_vectors)}"
        )
    levels = [item_levels(paths, config) for paths in dataset.items["categories"]]
    categories = sorted({category for category, _, _ in levels})
    subcategories = sorted({subcategory for _, subcategory, _ in levels})
    sub_index = {name: i for i, name in enumerate(subcategories)}
    sub_category = {subcategory: categories.index(category) for category, subcategory, _ in levels}
    groups: dict[tuple, list[int]] = {}
    for item, (_, subcategory, path) in enumerate(levels):
        groups.setdefault((sub_index[subcategory], path), []).append(item)
    titles = dataset.items["title"].fillna("").astype(str).tolist()
    ids = dataset.items["item"].astype(str).tolist()
    leaves: list[Leaf] = []
    for (subcategory, path), members in sorted(groups.items(), key=lambda g: g[0]):
        parts = _split(np.array(members, dtype=np.int64), item_vectors, ids, config)
        for number, part in enumerate(parts, start=1):
            description = _describe(path, part, members, titles, (number, len(parts)))
            leaves.append(Leaf(path, subcategory, number, len(parts), description, part))
    item_leaf = np.empty(dataset.n_items, dtype=np.int64)
    for index, leaf in enumerate(leaves):
        item_leaf[leaf.items] = index
    return Taxonomy(
        categories=categories,
        subcategories=subcategories,
        subcategory_category=np.array([sub_category[s] for s in subcategories], dtype=np.int64),
        leaves=leaves,
        item_leaf=item_leaf,
        user_leaves=interest_leaves(dataset, item_leaf, config),
        config=config,
    )


def _split(
    items: np.ndarray, vectors: np.ndarray | None, ids: list[str], config: TaxonomyConfig
) -> list[np.ndarray]:
    """``items`` cut into parts of at most ``max_leaf`` (k-means rounds, then hashing)."""
    parts, done = [items], []
    for _ in range(config.split_rounds):
        large = [part for part in parts if len(part) > config.max_leaf]
        done += [part for part in parts if len(part) <= config.max_leaf]
        parts = [cluster for part in large for cluster in _kmeans(part, vectors, ids, config)]
        if not parts:
            break
    for part in parts:
        done += [part] if len(part) <= config.max_leaf else _hash_buckets(part, ids, config)
    return sorted(done, key=lambda part: int(part.min()))


def _kmeans(
    items: np.ndarray, vectors: np.ndarray | None, ids: list[str], config: TaxonomyConfig
) -> list[np.ndarray]:
    """Spherical k-means clusters of ``items``; ``[items]`` unchanged when it cannot run.
    Items without a usable vector (zero or not finite) join a cluster by a hash of
    their id."""
    k = math.ceil(len(items) / config.max_leaf)
    if vectors is None:
        return [items]
    points = np.asarray(vectors[items], dtype=np.float32)
    usable = np.isfinite(points).all(axis=1) & (np.abs(points).sum(axis=1) > 0)
    if usable.sum() < 2 * k:
        return [items]
    kmeans = faiss.Kmeans(
        points.shape[1], k, niter=config.kmeans_iterations, spherical=True,
        seed=config.seed, verbose=False, min_points_per_centroid=1,
    )  # fmt: skip
    kmeans.train(np.ascontiguousarray(points[usable]))
    assignment = np.array([zlib.crc32(ids[i].encode()) % k for i in items], dtype=np.int64)
    assignment[usable] = kmeans.index.search(np.ascontiguousarray(points[usable]), 1)[1][:, 0]
    clusters = [items[assignment == c] for c in range(k)]
    return [cluster for cluster in clusters if len(cluster)]


def _hash_buckets(items: np.ndarray, ids: list[str], config: TaxonomyConfig) -> list[np.ndarray]:
    """Items ordered by a hash of their id, cut into blocks of ``max_leaf``."""
    ordered = sorted(items.tolist(), key=lambda i: (zlib.crc32(ids[i].encode()), i))
    blocks = range(0, len(ordered), config.max_leaf)
    return [np.sort(np.array(ordered[s : s + config.max_leaf], dtype=np.int64)) for s in blocks]


def _describe(
    path: tuple, part: np.ndarray, group: list[int], titles: list[str], of: tuple[int, int]
) -> str:
    """``a > b > c``, and for a split leaf its part number and its most distinctive
    title words (most over-represented against the whole path)."""
    name = " > ".join(path)
    number, parts = of
    if parts == 1:
        return name
    in_part = _word_shares([titles[i] for i in part])
    in_group = _word_shares([titles[i] for i in group])
    path_words = {w.casefold() for w in _WORD.findall(name)} | _COMMON
    ranked = sorted(
        (w for w in in_part if w not in path_words),
        key=lambda w: (-(in_part[w] - in_group.get(w, 0.0)), w),
    )
    return f"{name} (part {number} of {parts}: {', '.join(ranked[:3])})"


def _word_shares(titles: list[str]) -> dict[str, float]:
    """Share of ``titles`` each word occurs in."""
    counts = Counter(w for t in titles for w in {w.casefold() for w in _WORD.findall(t)})
    return {word: count / max(len(titles), 1) for word, count in counts.items()}


def interest_leaves(
    dataset: Dataset, item_leaf: np.ndarray, config: TaxonomyConfig
) -> dict[int, list[int]]:
    """Each user's interest leaves (module doc); users without history are left out."""
    out: dict[int, list[int]] = {}
    for user, items in enumerate(dataset.sequences(*HISTORY_SPLITS)):
        if len(items):
            recent = item_leaf[items[-config.interest_items :][::-1]]
            out[user] = list(dict.fromkeys(recent.tolist()))[: config.interest_leaves]
    return out
