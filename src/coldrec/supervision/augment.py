"""LAGCL4Rec's data-level activation (``coldrec augment``): user profiles, and extra
positive and negative interactions for sparse users, judged by the LLM.

1. **Profiles**: each augmented user's profile, a short text the LLM writes from the
   titles of their most recent training items (``profile_items``).
2. **Augmentation**: for every user with fewer than ``sparse_below`` training
   interactions (a seeded sample of ``users`` of them, if set), ``candidates`` items are
   drawn uniformly among the trained items the user has not interacted with; the LLM
   scores the user's preference for each (0–10, in prompts of ``chunk`` items: the
   profile and the titles), the top ``keep_share`` become extra positives and the bottom
   ``keep_share`` extra negatives (the dislike score is the preference negated: one call
   per chunk, not two).

Only the history before test is read (``train`` and ``valid``): the test split never
enters a prompt, a candidate draw or a score. With the ``embedding`` backend no language
model is involved and the summary says so: a user's profile is the normalised mean of
their history's text vectors (no text) and the preference the cosine with the item's.

The summary gives the **real-pair rate**: the share of augmented positives that are
among the user's held-out test interactions, beside the same share for as many random
candidates (the chance level), and the LLM's cost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from coldrec._util.io import atomic_write, write_json_atomic
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig, user_content_vectors
from coldrec.errors import DataError
from coldrec.llm.base import Request
from coldrec.llm.client import LLM
from coldrec.llm.engines import LLMJobConfig, open_llm
from coldrec.llm.schemas import array_answer_tokens, grades_of, grades_schema

__all__ = ["AugmentConfig", "read_augmentation", "run_augmentation"]

logger = logging.getLogger(__name__)

_PROFILE = "You describe a shopper's tastes from what they bought, in at most two sentences."
_SCORE = ("You judge how much a shopper would like each product, from 0 (not at all) to 10 "
          "(certainly), one score per product, in order.")  # fmt: skip


TOP_PREFERENCE = 10
"""The LLM scores its preference (and dislike) for each candidate 0–``TOP_PREFERENCE``."""


class AugmentConfig(LLMJobConfig):
    """What ``coldrec augment`` runs (``llm``, ``engine`` and ``ray``:
    :class:`~coldrec.llm.engines.LLMJobConfig`; on Ray the LLM's batches are answered by
    actors over ``ray.endpoints``, with the same cache and the same outputs)."""

    sparse_below: int = Field(30, gt=0)
    """Users with fewer training interactions than this are augmented."""
    users: int | None = Field(None, gt=0)
    """Augment a seeded sample of this many sparse users (``None``: all)."""
    candidates: int = Field(1024, gt=0)
    """Items drawn per user for the LLM to score."""
    keep_share: float = Field(0.02, gt=0, le=0.5)
    """Share of the candidates kept as positives (top) and as negatives (bottom)."""
    chunk: int = Field(32, gt=0)
    """Candidates per scoring prompt."""
    profile_items: int = Field(20, gt=0)
    """Most recent history items a profile is written from."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """The ``embedding`` backend's text vectors."""
    seed: int = 0


def run_augmentation(config: AugmentConfig, dataset_path: Path, out: Path) -> dict[str, Any]:
    """Write ``profiles.parquet`` (user, user_idx, profile), ``augmented.parquet``
    (user_idx, item_idx, kind ``positive``/``negative``, score) and ``summary.json`` into
    ``out``; return the summary."""
    dataset = Dataset.load(dataset_path)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    history = dataset.sequences(*HISTORY_SPLITS)
    users = _sparse_users(config, history)
    rng = np.random.default_rng(config.seed)
    trained = np.flatnonzero(np.bincount(np.concatenate(history), minlength=dataset.n_items))
    drawn = [_candidates(rng, trained, history[u], config.candidates) for u in users]
    with open_llm(config, log=out / "calls.jsonl") as llm:
        no_llm = not llm.backend.generates_text
        if no_llm:
            profiles = [""] * len(users)
            scores = _by_similarity(config, dataset, users, drawn)
        else:
            llm.preflight()
            profiles = _profiles(config, dataset, users, history, llm)
            scores = _by_llm(config, dataset, profiles, drawn, llm)
        frame = _kept(users, drawn, scores, config.keep_share)
        profile_frame = pd.DataFrame({"user": dataset.users["user"].to_numpy()[users],
                                      "user_idx": users, "profile": profiles})  # fmt: skip
        for name, table in (("profiles", profile_frame), ("augmented", frame)):
            with atomic_write(out / f"{name}.parquet") as path:
                table.to_parquet(path, index=False)
        summary = _summary(config, dataset, users, drawn, scores, frame, rng, llm)
    write_json_atomic(out / "summary.json", summary)
    return summary


def read_augmentation(folder: Path, dataset: Dataset) -> pd.DataFrame:
    """The augmented interactions of ``folder`` (``coldrec augment``'s output), checked
    against ``dataset``."""
    path = folder / "augmented.parquet"
    if not path.is_file():
        raise DataError(f"{folder}: no augmented.parquet (not a coldrec augment run)")
    frame = pd.read_parquet(path)
    missing = {"user_idx", "item_idx", "kind", "score"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    bad = (frame["user_idx"] >= dataset.n_users) | (frame["item_idx"] >= dataset.n_items)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {row + 1}: ids beyond the Dataset's users or items")
    return frame


def _sparse_users(config: AugmentConfig, history: list[np.ndarray]) -> np.ndarray:
    lengths = np.array([len(h) for h in history])
    sparse = np.flatnonzero((lengths > 0) & (lengths < config.sparse_below))
    if config.users is not None and config.users < len(sparse):
        rng = np.random.default_rng(config.seed)
        sparse = np.sort(rng.choice(sparse, config.users, replace=False))
    return sparse


def _candidates(
    rng: np.random.Generator, trained: np.ndarray, seen: np.ndarray, n: int
) -> np.ndarray:
    """Up to ``n`` distinct trained items the user has not interacted with."""
    allowed = np.setdiff1d(trained, seen)
    return np.sort(rng.choice(allowed, min(n, len(allowed)), replace=False))


def _by_similarity(
    config: AugmentConfig, dataset: Dataset, users: np.ndarray, drawn: list[np.ndarray]
) -> list[np.ndarray]:
    encoder = TextEncoder(config.encoder)
    items = encoder.encode(dataset.item_text)
    profiles = user_content_vectors(dataset, items, HISTORY_SPLITS, config.profile_items)
    return [items[d] @ profiles[u] for u, d in zip(users, drawn, strict=True)]


def _titles(dataset: Dataset) -> np.ndarray:
    return dataset.items["title"].fillna("").astype(str).to_numpy()


def _profiles(
    config: AugmentConfig, dataset: Dataset, users: np.ndarray, history: list[np.ndarray],
    llm: LLM,
) -> list[str]:  # fmt: skip
    """Each user's profile text ("" where the LLM gave no usable answer)."""
    titles = _titles(dataset)
    schema = {"type": "object", "required": ["profile"],
              "properties": {"profile": {"type": "string", "maxLength": 400}}}  # fmt: skip
    requests = []
    for u in users:
        recent = history[u][-config.profile_items :]
        listing = "\n".join(f"- {titles[i]}" for i in recent)
        prompt = (f"<context>\n{listing}\n</context>\nDescribe this shopper's tastes. Answer "
                  'as JSON: {"profile": "..."}')  # fmt: skip
        requests.append(Request([{"role": "system", "content": _PROFILE},
                                 {"role": "user", "content": prompt}], schema, max_tokens=160,
                                stage="augment_profile"))  # fmt: skip
    return [str(a.parsed.get("profile", "")) if a.ok and isinstance(a.parsed, dict) else ""
            for a in llm.batch(requests)]  # fmt: skip


def _by_llm(
    config: AugmentConfig, dataset: Dataset, profiles: list[str], drawn: list[np.ndarray],
    llm: LLM,
) -> list[np.ndarray]:  # fmt: skip
    """The LLM's preference (0–10) for each drawn item; NaN where it gave none."""
    titles = _titles(dataset)
    requests, where = [], []
    for row, (profile, items) in enumerate(zip(profiles, drawn, strict=True)):
        for start in range(0, len(items), config.chunk):
            chunk = items[start : start + config.chunk]
            schema = grades_schema("scores", len(chunk), TOP_PREFERENCE)
            listing = "\n".join(f"{k + 1}. {titles[i]}" for k, i in enumerate(chunk))
            prompt = (f"Shopper: {profile or 'unknown'}\n<context>\n{listing}\n</context>\n"
                      f"Score each of the {len(chunk)} products. Answer as JSON: "
                      '{"scores": [...]}')  # fmt: skip
            messages = [{"role": "system", "content": _SCORE}, {"role": "user", "content": prompt}]
            requests.append(Request(messages, schema, max_tokens=array_answer_tokens(len(chunk)),
                                    stage="augment_score"))  # fmt: skip
            where.append((row, start, len(chunk)))
    scores = [np.full(len(items), np.nan) for items in drawn]
    for (row, start, n), answer in zip(where, llm.batch(requests), strict=True):
        got = grades_of(answer.field("scores"), n, TOP_PREFERENCE)
        if got is not None:
            scores[row][start : start + n] = np.asarray(got, dtype=float)
    return scores


def _kept(
    users: np.ndarray, drawn: list[np.ndarray], scores: list[np.ndarray], share: float
) -> pd.DataFrame:
    """The top and bottom ``share`` of each user's scored candidates (ties: the earlier
    candidate), as positives and negatives."""
    rows = []
    for user, items, values in zip(users, drawn, scores, strict=True):
        scored = np.flatnonzero(np.isfinite(values))
        keep = max(1, round(share * len(items))) if len(scored) else 0
        order = scored[np.argsort(-values[scored], kind="stable")]
        for kind, picked in (("positive", order[:keep]), ("negative", order[::-1][:keep])):
            rows += [(int(user), int(items[k]), kind, float(values[k])) for k in picked]
    return pd.DataFrame(rows, columns=["user_idx", "item_idx", "kind", "score"]).astype(
        {"user_idx": "int64", "item_idx": "int64"})  # fmt: skip


def _summary(
    config: AugmentConfig,
    dataset: Dataset,
    users: np.ndarray,
    drawn: list[np.ndarray],
    scores: list[np.ndarray],
    frame: pd.DataFrame,
    rng: np.random.Generator,
    llm: LLM,
) -> dict[str, Any]:
    """Counts (``unscored``: candidates without a usable score, never kept), the real-pair
    rate of the positives (and of random candidates), the cost."""
    test = dataset.split("test")
    held_out = set(zip(test["user_idx"].tolist(), test["item_idx"].tolist(), strict=True))
    positives = frame.loc[frame["kind"] == "positive"]
    per_user = positives.groupby("user_idx").size().to_dict()
    control = [(int(u), int(i)) for u, d in zip(users, drawn, strict=True)
               for i in rng.choice(d, min(len(d), per_user.get(int(u), 0)),
                                   replace=False)]  # fmt: skip
    hits = sum((u, i) in held_out for u, i in zip(positives["user_idx"], positives["item_idx"],
                                                  strict=True))  # fmt: skip
    return {
        "backend": llm.described(),
        "sparse_users": len(users),
        "candidates_per_user": config.candidates,
        "unscored": int(sum(np.isnan(values).sum() for values in scores)),
        "positives": len(positives),
        "negatives": int((frame["kind"] == "negative").sum()),
        "real_pair_rate": hits / max(1, len(positives)),
        "random_real_pair_rate": sum(p in held_out for p in control) / max(1, len(control)),
        "llm": llm.totals(),
    }
