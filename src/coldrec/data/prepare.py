"""Preparation (thesis §3.2): filter → implicit weights → de-duplicate → k-core → split →
cold sets → ids → item text.

The one entry point is :func:`prepare`; every count it drops or keeps lands in the
Dataset's ``meta.json`` so that nothing disappears silently.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from coldrec import __version__
from coldrec._util.io import file_sha256
from coldrec.data.dataset import USER_FEATURE_PREFIX, Dataset
from coldrec.data.frames import Frames
from coldrec.data.sources import SourceConfig, SyntheticSource
from coldrec.errors import DataError

__all__ = [
    "SPLITS",
    "DataConfig",
    "PrepareConfig",
    "SplitKind",
    "build_dataset",
    "cold_flags",
    "item_text",
    "prepare",
    "validation_view",
]

log = logging.getLogger(__name__)

SplitKind = Literal["global-time", "loo", "user-ratio", "item-holdout", "random"]
SPLITS: tuple[str, ...] = get_args(SplitKind)


class PrepareConfig(BaseModel):
    """How raw frames become a Dataset. Defaults follow the thesis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: SplitKind | None = None
    """``global-time`` (default for timestamped data), ``loo`` (default for order-only
    data), ``user-ratio``, ``item-holdout`` or ``random`` (a seeded random share of the
    rows, the 80/20 protocol of graph recommenders)."""
    train_share: float = Field(0.7, gt=0, lt=1)
    """Global-time: share of all interactions (by time) in train; user-ratio: per user;
    random: share of all interactions, drawn at random."""
    valid_share: float = Field(0.0, ge=0, lt=1)
    """Validation carved from the end of train: global-time and user-ratio take this
    share of the train rows (the same rule as the test cut, applied inside train);
    item-holdout takes this share of the training items; loo takes each user's
    second-to-last interaction when it is above 0."""
    holdout_share: float = Field(0.2, gt=0, lt=1)
    """Item-holdout: share of items removed from training entirely (all go to test)."""
    strong_rating: float = 4.0
    """A rating at or above this is a strong positive (weight 1.0)."""
    weak_rating: float = 3.0
    """A rating in ``[weak_rating, strong_rating)`` is a weak positive; below it is a low
    rating (``low_ratings`` says what becomes of it)."""
    low_ratings: Literal["drop", "negatives"] = "drop"
    """``drop``: low ratings are left out; ``negatives``: kept apart as the Dataset's real
    negatives (``negatives.parquet``; never interactions, never targets)."""
    weak_weight: float = Field(0.3, ge=0, le=1)
    kcore: int | None = Field(None, ge=1)
    """Keep only users and items with at least this many interactions (iterated)."""
    duplicates: Literal["exact", "pair"] = "exact"
    """``exact``: drop rows equal in user, item, ts and rating; ``pair``: keep only the
    first interaction of each (user, item)."""
    seed: int = Field(0, ge=0)
    """Seeds the random item hold-out and the random split."""
    cold_max_count: int = Field(0, ge=0)
    """Items with test rows and at most this many interactions before test are cold.
    0 (default): strict cold start, never seen before test. A few (e.g. 5) gives the
    frequency definition of the delta-embedding papers, useful under leave-one-out,
    where a 5-core has no strict cold items."""


class DataConfig(BaseModel):
    """Where the data come from and how they are prepared (the ``data`` node of a run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceConfig = Field(default_factory=SyntheticSource)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)


def build_dataset(config: DataConfig) -> Dataset:
    """Load the configured source and prepare it."""
    return prepare(config.source.load(), config.prepare)


def prepare(frames: Frames, config: PrepareConfig | None = None) -> Dataset:
    """Turn a source's canonical frames into a split, indexed :class:`Dataset`."""
    config = config or PrepareConfig()
    if frames.skipped.total:
        log.warning("%s", frames.skipped.summary())
    counts: dict[str, int] = {"raw_interactions": len(frames.interactions)}
    items = _unique_items(frames.items, counts)
    interactions = _with_metadata(frames.interactions, items, counts)
    interactions, low = _implicit_weights(interactions, config, counts)
    interactions = _without_duplicates(interactions, config.duplicates, counts)
    if config.kcore:
        interactions = _kcore(interactions, config.kcore, counts)
    if interactions.empty:
        raise DataError(f"{frames.where()}: no interactions left after filtering: {_lost(counts)}")
    # A stable sort keeps the input order among equal timestamps (thesis §3.2).
    interactions = interactions.sort_values("ts", kind="stable", ignore_index=True)
    kind = config.split or ("loo" if frames.order_only else "global-time")
    reason = (
        "given" if config.split else
        "the default for order-only data (no timestamps)" if frames.order_only else
        "the default for timestamped data"
    )  # fmt: skip
    if kind == "global-time" and frames.order_only:
        raise DataError(
            f"{frames.where()}: the data are order-only (no timestamps): a global time split "
            "is meaningless; use --split loo, user-ratio or item-holdout"
        )
    interactions["split"] = pd.Categorical(
        _SPLITTERS[kind](interactions, config), categories=["train", "valid", "test"]
    )
    _require_train_and_test(interactions["split"], kind, config, frames.where())
    interactions, items, users = _index(interactions, items, counts, config.cold_max_count)
    negatives = _negatives(low, users, items, counts) if config.low_ratings == "negatives" else None
    users = _with_user_features(users, frames.users, counts)
    meta = _meta(frames, config, kind, interactions, items, users, counts)
    meta["split_reason"] = reason
    meta["warnings"] = [*frames.warnings, *_thin_data(meta, interactions)]
    for warning in meta["warnings"]:
        log.warning("%s", warning)
    dropped = ("dropped_no_metadata", "dropped_low_rating", "duplicates_removed", "kcore_removed")
    log.info(
        "%s: kept %d of %d interactions (dropped: %s); %s split: %d cold items, %d cold users",
        frames.source,
        len(interactions),
        counts["raw_interactions"],
        ", ".join(f"{k} {counts[k]}" for k in dropped if counts.get(k)) or "none",
        kind,
        meta["cold_items"],
        meta["cold_users"],
    )
    return Dataset(interactions=interactions, items=items, users=users, meta=meta,
                   negatives=negatives)  # fmt: skip


MIN_SEGMENT = 50
"""Fewer test users (or cold items) than this make a segment's figures noise: warned."""


def _thin_data(meta: dict[str, Any], interactions: pd.DataFrame) -> list[str]:
    """Warnings about a split that leaves little to measure."""
    split = meta["prepare"]["split"]
    test = interactions["split"] == "test"
    users = len(np.intersect1d(interactions.loc[test, "user_idx"],
                               interactions.loc[~test, "user_idx"]))  # fmt: skip
    found = []
    if users < MIN_SEGMENT:
        found.append(f"the {split} split leaves {users} test users with a history: every "
                     "figure of the all, warm and cold segments will be noisy")  # fmt: skip
    if meta["cold_items"] == 0:
        found.append(f"the {split} split leaves no strict cold items: the cold segment will "
                     "be empty (for order-only data try --split item-holdout)")  # fmt: skip
    elif meta["cold_items"] < MIN_SEGMENT:
        found.append(f"only {meta['cold_items']} cold items: cold figures will be noisy")
    return found


def _lost(counts: dict[str, int]) -> str:
    """What the filters removed, from the counts of :func:`prepare`."""
    reasons = {
        "dropped_no_metadata": "on an item without title or category",
        "dropped_low_rating": "rated below weak_rating",
        "duplicates_removed": "duplicates",
        "kcore_removed": "removed by the k-core",
    }
    lost = [f"{counts[k]:,} {why}" for k, why in reasons.items() if counts.get(k)]
    return f"of {counts['raw_interactions']:,} interactions, " + "; ".join(lost)


def _require_train_and_test(
    split: pd.Series, kind: str, config: PrepareConfig, where: str = "the data"
) -> None:
    sizes = split.value_counts()
    empty = [name for name in ("train", "test") if sizes.get(name, 0) == 0]
    if empty:
        raise DataError(
            f"{where}: the {kind} split of {len(split)} interactions leaves "
            f"{' and '.join(empty)} empty "
            f"(train_share={config.train_share}, valid_share={config.valid_share}, "
            f"holdout_share={config.holdout_share})"
        )


def item_text(title: str | None, categories: list[list[str]]) -> str:
    """The text an item is encoded from: ``"title | cat > sub > leaf"``.

    The path is the longest of the item's category paths (the first among equals). When
    every path is one label (a genre list such as ``Adventure|Animation``), all labels
    are kept: ``"title | Adventure, Animation"``. A missing title or path leaves just the
    other part.
    """
    if len(categories) > 1 and all(len(path) == 1 for path in categories):
        described = ", ".join(path[0] for path in categories)
    else:
        longest: list[str] = max(categories, key=len, default=[])
        described = " > ".join(longest)
    parts = [p for p in (title if isinstance(title, str) else "", described) if p]
    return " | ".join(parts)


def _unique_items(items: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    duplicated = items["item"].duplicated()
    counts["duplicate_item_rows"] = int(duplicated.sum())
    return items.loc[~duplicated].reset_index(drop=True)


def _with_metadata(
    interactions: pd.DataFrame, items: pd.DataFrame, counts: dict[str, int]
) -> pd.DataFrame:
    """Keep interactions whose item has metadata: a title or at least one category path."""
    described = items["title"].notna() | items["categories"].map(bool)
    keep = interactions["item"].isin(items.loc[described, "item"])
    counts["dropped_no_metadata"] = int((~keep).sum())
    counts["items_without_metadata"] = int(interactions.loc[~keep, "item"].nunique())
    return interactions.loc[keep].reset_index(drop=True)


def _implicit_weights(
    interactions: pd.DataFrame, config: PrepareConfig, counts: dict[str, int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ratings → weights: strong 1.0, weak ``weak_weight``, none 1.0; and the low-rated
    rows (below weak), taken out."""
    rating = interactions["rating"].astype("float64").to_numpy(na_value=np.nan)
    weight = np.where(rating >= config.strong_rating, 1.0, config.weak_weight)
    weight[np.isnan(rating)] = 1.0
    keep = np.isnan(rating) | (rating >= config.weak_rating)
    counts["dropped_low_rating"] = int((~keep).sum())
    counts["weak_positives"] = int(
        (keep & ~np.isnan(rating) & (rating < config.strong_rating)).sum()
    )
    low = interactions.loc[~keep, ["user", "item", "ts", "rating"]].reset_index(drop=True)
    return interactions.assign(weight=weight).loc[keep].reset_index(drop=True), low


def _negatives(
    low: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, counts: dict[str, int]
) -> pd.DataFrame:
    """The low-rated rows of users and items the Dataset has, as real negatives
    (``user_idx``, ``item_idx``, ``ts``, ``rating``); the others counted."""
    user_idx = pd.Index(users["user"]).get_indexer(low["user"])
    item_idx = pd.Index(items["item"]).get_indexer(low["item"])
    known = (user_idx >= 0) & (item_idx >= 0)
    counts["negatives_of_unknown_users_or_items"] = int((~known).sum())
    counts["real_negatives"] = int(known.sum())
    return pd.DataFrame({"user_idx": user_idx[known].astype(np.int64),
                         "item_idx": item_idx[known].astype(np.int64),
                         "ts": low["ts"].to_numpy(np.int64)[known],
                         "rating": low["rating"].astype("float64").to_numpy()[known]})  # fmt: skip


def _without_duplicates(
    interactions: pd.DataFrame, mode: str, counts: dict[str, int]
) -> pd.DataFrame:
    keys = ["user", "item", "ts", "rating"] if mode == "exact" else ["user", "item"]
    if mode == "pair":
        interactions = interactions.sort_values("ts", kind="stable")
    duplicated = interactions.duplicated(keys)
    counts["duplicates_removed"] = int(duplicated.sum())
    return interactions.loc[~duplicated].sort_index().reset_index(drop=True)


def _kcore(interactions: pd.DataFrame, k: int, counts: dict[str, int]) -> pd.DataFrame:
    """Drop users and items with fewer than ``k`` interactions until none is left."""
    before = len(interactions)
    while True:
        user_ok = interactions.groupby("user")["item"].transform("size") >= k
        item_ok = interactions.groupby("item")["user"].transform("size") >= k
        keep = user_ok & item_ok
        if keep.all():
            break
        interactions = interactions.loc[keep].reset_index(drop=True)
    counts["kcore_removed"] = before - len(interactions)
    return interactions


def _global_time(interactions: pd.DataFrame, config: PrepareConfig) -> np.ndarray:
    """The first ``int(train_share·N)`` rows by time are train, the rest test."""
    labels = np.full(len(interactions), "test", dtype=object)
    n_train = int(config.train_share * len(interactions))
    labels[:n_train] = "train"
    if config.valid_share:
        labels[int((1 - config.valid_share) * n_train) : n_train] = "valid"
    return labels


def _leave_one_out(interactions: pd.DataFrame, config: PrepareConfig) -> np.ndarray:
    """Each user's last interaction is test (users with at least 2), the one before it
    valid when ``valid_share > 0`` (users with at least 3)."""
    by_user = interactions.groupby("user", sort=False)
    from_end = by_user.cumcount(ascending=False).to_numpy()
    size = by_user["item"].transform("size").to_numpy()
    labels = np.full(len(interactions), "train", dtype=object)
    labels[(from_end == 0) & (size >= 2)] = "test"
    if config.valid_share:
        labels[(from_end == 1) & (size >= 3)] = "valid"
    return labels


def _user_ratio(interactions: pd.DataFrame, config: PrepareConfig) -> np.ndarray:
    """Each user's first ``int(train_share·n_u)`` interactions are train, the rest test."""
    by_user = interactions.groupby("user", sort=False)
    position = by_user.cumcount().to_numpy()
    n_train = np.floor(config.train_share * by_user["item"].transform("size").to_numpy())
    labels = np.where(position < n_train, "train", "test").astype(object)
    if config.valid_share:
        n_fit = np.floor((1 - config.valid_share) * n_train)
        labels[(position >= n_fit) & (position < n_train)] = "valid"
    return labels


def _item_holdout(interactions: pd.DataFrame, config: PrepareConfig) -> np.ndarray:
    """A seeded random ``holdout_share`` of items goes wholly to test (and
    ``valid_share`` of the remaining items wholly to validation)."""
    items = np.sort(interactions["item"].unique())
    order = np.random.default_rng(config.seed).permutation(len(items))
    n_test = int(config.holdout_share * len(items))
    n_valid = int(config.valid_share * (len(items) - n_test))
    item_split = pd.Series("train", index=items, dtype=object)
    item_split.iloc[order[:n_test]] = "test"
    item_split.iloc[order[n_test : n_test + n_valid]] = "valid"
    return item_split.loc[interactions["item"]].to_numpy()


def _random(interactions: pd.DataFrame, config: PrepareConfig) -> np.ndarray:
    """A seeded random ``int(train_share·N)`` rows are train, the rest test (and
    ``valid_share`` of the train rows, also drawn at random, valid)."""
    order = np.random.default_rng(config.seed).permutation(len(interactions))
    labels = np.full(len(interactions), "test", dtype=object)
    n_train = int(config.train_share * len(interactions))
    labels[order[:n_train]] = "train"
    if config.valid_share:
        labels[order[int((1 - config.valid_share) * n_train) : n_train]] = "valid"
    return labels


_SPLITTERS = {
    "global-time": _global_time,
    "loo": _leave_one_out,
    "user-ratio": _user_ratio,
    "item-holdout": _item_holdout,
    "random": _random,
}


def _index(
    interactions: pd.DataFrame, items: pd.DataFrame, counts: dict[str, int], cold_max_count: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Contiguous ids (sorted by original id), cold flags and item text."""
    user_ids = np.sort(interactions["user"].unique())
    item_ids = np.sort(interactions["item"].unique())
    interactions["user_idx"] = pd.Index(user_ids).get_indexer(interactions["user"])
    interactions["item_idx"] = pd.Index(item_ids).get_indexer(interactions["item"])
    counts["items_without_interactions"] = int((~items["item"].isin(item_ids)).sum())
    users = pd.DataFrame({"user": pd.array(user_ids, dtype="string")})
    catalogue = pd.DataFrame({"item": pd.array(item_ids, dtype="string")})
    items = catalogue.merge(items, on="item", how="left", validate="one_to_one")
    items["text"] = pd.array(
        [
            item_text(t, c)
            for t, c in zip(items["title"].tolist(), items["categories"], strict=True)
        ],
        dtype="string",
    )
    users.insert(1, "cold", cold_flags(interactions, "user_idx", len(users)))
    items.insert(1, "cold", cold_flags(interactions, "item_idx", len(items), cold_max_count))
    return interactions, items, users


def _with_user_features(
    users: pd.DataFrame, features: pd.DataFrame | None, counts: dict[str, int]
) -> pd.DataFrame:
    """``users`` with the source's feature columns (:attr:`Dataset.user_feature_names`;
    a user the feature file lacks gets unknown values, counted)."""
    if features is None:
        return users
    columns = {c: f"{USER_FEATURE_PREFIX}{c}" for c in features.columns if c != "user"}
    merged = users.merge(features.rename(columns=columns), on="user", how="left")
    counts["users_without_features"] = int((~users["user"].isin(features["user"])).sum())
    return merged


def cold_flags(interactions: pd.DataFrame, key: str, n: int, max_count: int = 0) -> np.ndarray:
    """Per id of ``key`` (``user_idx`` or ``item_idx``): has test rows and at most
    ``max_count`` rows before test (0: none)."""
    ids = interactions[key].to_numpy()
    in_test = (interactions["split"] == "test").to_numpy()
    seen_before = np.bincount(ids[~in_test], minlength=n) > max_count
    return (np.bincount(ids[in_test], minlength=n) > 0) & ~seen_before


def _cut_ts(interactions: pd.DataFrame, kind: str) -> int | None:
    """The first test timestamp of a global time split (``None`` for other splits)."""
    test = interactions.loc[interactions["split"] == "test", "ts"]
    return int(test.min()) if kind == "global-time" and len(test) else None


def validation_view(dataset: Dataset, share: float = 0.3) -> Dataset:
    """The validation carve-out as a Dataset of its own, for choosing weights, epochs and
    thresholds without touching test.

    Test rows are dropped. If the Dataset has ``valid`` rows they become the view's test;
    otherwise the Dataset's own split rule is applied again inside the history, with
    ``share`` as the held-out part (global-time: its last ``share`` of rows, so the view
    has strict cold items of its own, as the test period does). Ids and the catalogue
    are unchanged; cold flags and counts are recomputed.
    """
    inter = dataset.interactions
    history = inter.loc[inter["split"] != "test"].reset_index(drop=True)
    if (history["split"] == "valid").any():
        labels = np.where(history["split"] == "valid", "test", "train")
    else:
        settings = dataset.meta["prepare"]
        kind = settings["split"]
        config = PrepareConfig(
            split=kind, train_share=1 - share, holdout_share=share, seed=settings["seed"]
        )
        labels = _SPLITTERS[kind](history, config)
    history["split"] = pd.Categorical(labels, categories=["train", "valid", "test"])
    _require_train_and_test(history["split"], "validation", PrepareConfig())
    users = dataset.users.assign(cold=cold_flags(history, "user_idx", dataset.n_users))
    max_count = dataset.meta["prepare"].get("cold_max_count", 0)
    items = dataset.items.assign(cold=cold_flags(history, "item_idx", dataset.n_items, max_count))
    meta = {
        **dataset.meta,
        **Dataset.count_stats(history, items, users),
        "cut_ts": _cut_ts(history, dataset.meta["prepare"]["split"]),
        "validation_of": {
            "valid_share": share,
            "test_interactions": dataset.meta["test_interactions"],
        },
    }
    return Dataset(interactions=history, items=items, users=users, meta=meta,
                   negatives=dataset.negatives)  # fmt: skip


def _meta(
    frames: Frames,
    config: PrepareConfig,
    kind: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    counts: dict[str, int],
) -> dict[str, Any]:
    return {
        "coldrec_version": __version__,
        "source": {
            "kind": frames.source,
            "files": {str(path): file_sha256(path) for path in frames.files},
        },
        "order_only": frames.order_only,
        "prepare": {**config.model_dump(), "split": kind},
        **Dataset.count_stats(interactions, items, users),
        "cut_ts": _cut_ts(interactions, kind),
        "filtering": counts,
        "skipped": frames.skipped.to_dict(),
    }
