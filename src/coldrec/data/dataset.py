"""The prepared Dataset: split interactions, contiguous ids, cold sets, item text.

On disk a Dataset is a folder::

    interactions.parquet  user, item, ts, rating, weight, split, user_idx, item_idx
                          (rows in time order; ties keep the source order)
    items.parquet         row i is item_idx i: item, cold, title, categories, brand,
                          price, description, text
    users.parquet         row u is user_idx u: user, cold, and ``feature.<name>`` per
                          static user feature the source has (nullable strings)
    negatives.parquet     (optional) real negatives: low ratings kept apart
                          (user_idx, item_idx, ts, rating; ``prepare.low_ratings``)
    meta.json             every count a reader checks (see :meth:`Dataset.count_stats`),
                          the split, the source files and their SHA-256, what was dropped

Ids are contiguous from 0 and follow the sorted original ids. Sequential models that
need 0 as padding shift item ids by one themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse

from coldrec._util.io import atomic_dir, json_hash, read_json, write_json_atomic
from coldrec.errors import ConfigError, DataError

__all__ = ["HISTORY_SPLITS", "STATS_KEYS", "USER_FEATURE_PREFIX", "Dataset"]

HISTORY_SPLITS = ("train", "valid")
"""The splits a model learns from and the protocol masks: everything before test."""

STATS_KEYS = (
    "interactions",
    "users",
    "items",
    "train_interactions",
    "valid_interactions",
    "test_interactions",
    "cold_items",
    "cold_users",
    "valid_cold_items",
    "order_only",
)
USER_FEATURE_PREFIX = "feature."
"""Prefix of the static user feature columns of ``users.parquet``."""
_NEGATIVE_COLUMNS = ["user_idx", "item_idx", "ts", "rating"]
_FILES = ("interactions", "items", "users")
_COLUMNS = {
    "interactions": ["user", "item", "ts", "rating", "weight", "split", "user_idx", "item_idx"],
    "items": ["item", "cold", "title", "categories", "brand", "price", "description", "text"],
    "users": ["user", "cold"],
}


@dataclass(frozen=True)
class Dataset:
    """A prepared data set. Build one with :func:`coldrec.data.prepare` or :meth:`load`."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict[str, Any]
    negatives: pd.DataFrame | None = None
    """Real negatives (low ratings), if the preparation kept them."""

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def cold_items(self) -> np.ndarray:
        """Item ids that occur in test and never before it (strict cold items)."""
        return np.flatnonzero(self.items["cold"].to_numpy())

    @property
    def cold_users(self) -> np.ndarray:
        """User ids that occur in test and never before it."""
        return np.flatnonzero(self.users["cold"].to_numpy())

    def known_negatives(self) -> pd.DataFrame:
        """The real negatives a model may learn from: each earlier than its user's first
        test interaction (``user_idx``, ``item_idx``; empty without negatives)."""
        if self.negatives is None:
            return pd.DataFrame({"user_idx": pd.Series(dtype="int64"),
                                 "item_idx": pd.Series(dtype="int64")})  # fmt: skip
        first_test = self.split("test").groupby("user_idx")["ts"].min()
        limit = first_test.reindex(self.negatives["user_idx"]).to_numpy(dtype=float)
        before = np.isnan(limit) | (self.negatives["ts"].to_numpy() < limit)
        return self.negatives.loc[before, ["user_idx", "item_idx"]].reset_index(drop=True)

    @property
    def user_feature_names(self) -> list[str]:
        """The static user features the data have (none for most sources)."""
        prefix = USER_FEATURE_PREFIX
        return [c[len(prefix) :] for c in self.users.columns if c.startswith(prefix)]

    def user_features(self) -> np.ndarray:
        """``n_users × features`` codes of the static user features: 1, 2, … for the
        values in sorted order, 0 for unknown."""
        codes = np.zeros((self.n_users, len(self.user_feature_names)), dtype=np.int64)
        for column, name in enumerate(self.user_feature_names):
            values = self.users[USER_FEATURE_PREFIX + name]
            vocabulary = np.sort(values.dropna().unique().astype(str))
            known = values.notna().to_numpy()
            codes[known, column] = np.searchsorted(vocabulary, values[known].astype(str)) + 1
        return codes

    @property
    def is_validation_view(self) -> bool:
        """Whether this is a validation view of another Dataset
        (:func:`~coldrec.data.prepare.validation_view`)."""
        return "validation_of" in self.meta

    @property
    def item_text(self) -> list[str]:
        """Item text per item id, built by :func:`coldrec.data.prepare.item_text`."""
        return self.items["text"].tolist()

    def data_hash(self) -> str:
        """Fingerprint of the data: source files, preparation settings and counts (a
        validation view, with other counts, has its own)."""
        return json_hash({key: self.meta.get(key) for key in ("source", "prepare", *STATS_KEYS)})

    def split(self, name: str) -> pd.DataFrame:
        """The interactions of one split (``train``, ``valid`` or ``test``), in time order."""
        if name not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {name!r}")
        return self.interactions.loc[self.interactions["split"] == name]

    def sequences(self, *splits: str) -> list[np.ndarray]:
        """Each user's item ids in time order over the given splits (default ``train``).

        Entry ``u`` belongs to user id ``u``; users without such interactions get an
        empty array.
        """
        rows = self.interactions.loc[self.interactions["split"].isin(splits or ("train",))]
        users = rows["user_idx"].to_numpy()
        order = np.argsort(users, kind="stable")
        bounds = np.searchsorted(users[order], np.arange(self.n_users + 1))
        items = rows["item_idx"].to_numpy()[order]
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def recent_items(
        self, last_n: int, splits: Sequence[str] = ("train", "valid")
    ) -> sparse.csr_matrix:
        """Each user's last ``last_n`` distinct items in ``splits`` as a 0/1 sparse
        ``n_users × n_items`` matrix (an item seen twice counts at its latest time)."""
        if last_n < 1:
            raise ConfigError(f"last_n must be at least 1, got {last_n}")
        unknown = sorted(set(splits) - {"train", "valid", "test"})
        if unknown or not splits:
            raise ConfigError(f"splits must be among train, valid, test; got {tuple(splits)}")
        rows = self.interactions.loc[self.interactions["split"].isin(splits)]
        latest = rows[["user_idx", "item_idx"]].drop_duplicates(keep="last")
        recent = latest.groupby("user_idx", sort=False).tail(last_n)
        ones = np.ones(len(recent), dtype=np.float32)
        return sparse.csr_matrix(
            (ones, (recent["user_idx"].to_numpy(), recent["item_idx"].to_numpy())),
            shape=(self.n_users, self.n_items),
        )

    def stats(self) -> dict[str, Any]:
        """The counts of ``meta.json`` (at least :data:`STATS_KEYS`), the split used and
        why, and the warnings of the preparation."""
        keys = (*STATS_KEYS, "cold_test_interactions", "cut_ts")  # cut_ts: global-time only
        return {
            **{k: self.meta[k] for k in keys if k in self.meta},
            "split": self.meta["prepare"]["split"],
            **{k: self.meta[k] for k in ("split_reason", "warnings") if k in self.meta},
        }

    @staticmethod
    def count_stats(
        interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame
    ) -> dict[str, int]:
        """The counts a reader checks, computed from the frames."""
        split = interactions["split"]
        train_items = interactions.loc[split == "train", "item_idx"].unique()
        valid_items = interactions.loc[split == "valid", "item_idx"].unique()
        return {
            "interactions": len(interactions),
            "users": len(users),
            "items": len(items),
            "train_interactions": int((split == "train").sum()),
            "valid_interactions": int((split == "valid").sum()),
            "test_interactions": int((split == "test").sum()),
            "cold_items": int(items["cold"].sum()),
            "cold_users": int(users["cold"].sum()),
            "valid_cold_items": int((~pd.Index(valid_items).isin(train_items)).sum()),
            "cold_test_interactions": int(
                items["cold"].to_numpy()[interactions.loc[split == "test", "item_idx"]].sum()
            ),
        }

    def save(self, path: str | Path) -> Path:
        """Write the Dataset folder atomically (a crash leaves any old folder intact)."""
        path = Path(path)
        with atomic_dir(path, marker="meta.json") as tmp:
            for name in _FILES:
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            if self.negatives is not None:
                self.negatives.to_parquet(tmp / "negatives.parquet", index=False)
            write_json_atomic(tmp / "meta.json", self.meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a Dataset folder and check it against its ``meta.json``."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{path} is not a prepared dataset (no meta.json)")
        meta = read_json(meta_path)
        missing = [
            k for k in (*STATS_KEYS, "prepare") if not isinstance(meta, dict) or k not in meta
        ]
        if missing:
            raise DataError(f"{meta_path}: not a coldrec dataset meta file (lacks {missing})")
        frames = {name: _read_frame(path / f"{name}.parquet", _COLUMNS[name]) for name in _FILES}
        frames["interactions"]["split"] = pd.Categorical(
            frames["interactions"]["split"], categories=["train", "valid", "test"]
        )
        negatives = None
        if (path / "negatives.parquet").is_file():
            negatives = _read_frame(path / "negatives.parquet", _NEGATIVE_COLUMNS)
            outside = (negatives["user_idx"] >= len(frames["users"])) | (
                negatives["item_idx"] >= len(frames["items"]))  # fmt: skip
            if outside.any():
                row = int(np.flatnonzero(outside.to_numpy())[0]) + 1
                raise DataError(f"{path / 'negatives.parquet'}: row {row}: a user or item id "
                                "beyond the Dataset's")  # fmt: skip
        dataset = cls(**frames, meta=meta, negatives=negatives)
        counted = cls.count_stats(dataset.interactions, dataset.items, dataset.users)
        wrong = {
            k: (dataset.meta.get(k), v) for k, v in counted.items() if dataset.meta.get(k) != v
        }
        if wrong:
            raise DataError(
                f"{meta_path}: counts disagree with the parquet files (meta, files): {wrong}"
            )
        return dataset


def _read_frame(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"dataset file missing: {path}")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    if "categories" in frame:
        paths = [[list(p) for p in item_paths] for item_paths in frame["categories"]]
        frame["categories"] = pd.Series(paths, index=frame.index, dtype=object)
    return frame
