"""What the LLM stages read and keep: their settings (:class:`StagesConfig`), the
catalogue (items, taxonomy, a user's Two-Tower candidates and vectors, text vectors for
the evidence), and one user's way through the stages (:class:`UserRun`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec.data.candidates import Candidates
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.data.taxonomy import Taxonomy
from coldrec.llm.schemas import grammar_safe
from coldrec.supervision.prompts import Evidence, Option, UserText

__all__ = ["Catalogue", "Pick", "StagesConfig", "UserRun", "labelled"]


class StagesConfig(BaseModel):
    """Sizes and caps of the stages (defaults: the thesis's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["tree", "flat"] = "tree"
    history_items: int = Field(10, gt=0)
    """Most recent history items shown in every prompt."""
    categories: int = Field(3, gt=0)
    subcategories: int = Field(8, gt=0)
    local_candidates: int = Field(80, gt=0)
    picks: int = Field(10, gt=0)
    """Items picked per subcategory in Stage 4."""
    evidence: int = Field(3, ge=0)
    evidence_similarity: float = Field(0.35, ge=-1, le=1)
    preselected: int = Field(40, gt=0)
    final: int = Field(20, gt=0)
    flat_candidates: int = Field(50, gt=0)
    max_per_brand: int | None = Field(3, gt=0)
    fallback_score: int = Field(2, ge=0, le=5)
    """Score of a fallback pick (the first candidates)."""
    temperature: float = Field(0.0, ge=0)


@dataclass(frozen=True)
class Pick:
    """An item chosen for a user: its score 0–5, subcategory and the stage that chose it."""

    item: int
    score: int
    subcategory: int
    source: str


@dataclass
class UserRun:
    """One user's way through the stages, and the trace of it."""

    user: int
    text: UserText
    seen: set[int]
    """Every history item."""
    recent: list[int]
    """History items, most recent first, each once."""
    candidates: np.ndarray
    categories: list[int] = field(default_factory=list)
    subcategories: list[int] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    final: list[Pick] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)

    def fell_back(self, stage: str) -> None:
        self.trace.setdefault("fallbacks", []).append(stage)


def labelled(names: list[str], ids: list[int]) -> dict[str, int]:
    """Allowed value → id for each of ``names``: the name as a grammar can hold it
    (:func:`~coldrec.llm.schemas.grammar_safe`), with ``(#id)`` added to a repeat (as
    often as needed: a title may itself end in ``(#id)``)."""
    out: dict[str, int] = {}
    for name, id_ in zip(names, ids, strict=True):
        label = grammar_safe(name)
        while label in out:
            label = f"{label} (#{id_})"
        out[label] = id_
    return out


class Catalogue:
    """What the stages read: items, taxonomy, candidates, vectors and settings."""

    def __init__(
        self,
        dataset: Dataset,
        taxonomy: Taxonomy,
        candidates: Candidates,
        tw_users: np.ndarray,
        tw_items: np.ndarray,
        content: np.ndarray,
        config: StagesConfig,
    ) -> None:
        self.dataset, self.taxonomy, self.config = dataset, taxonomy, config
        self.candidates, self.tw_users, self.tw_items = candidates, tw_users, tw_items
        self.content = np.ascontiguousarray(content, dtype=np.float32)
        self.texts = dataset.item_text
        self.titles = dataset.items["title"].fillna("").astype(str).tolist()
        self.brands = dataset.items["brand"].fillna("").astype(str).tolist()
        self.item_subcategory = taxonomy.item_subcategory
        self.item_category = taxonomy.item_category
        self.histories = dataset.sequences(*HISTORY_SPLITS)
        self.category_labels = labelled(taxonomy.categories, list(range(len(taxonomy.categories))))

    def user_run(self, user: int) -> UserRun:
        history = self.histories[user]
        leaves = self.taxonomy.user_leaves.get(user, [])
        text = UserText(
            history=[self.texts[i] for i in history[-self.config.history_items :]],
            interests=[self.taxonomy.leaves[leaf].description for leaf in leaves],
        )
        candidates = self.candidates.for_users(np.array([user]))[0]
        recent = list(dict.fromkeys(history[::-1].tolist()))
        return UserRun(user, text, set(recent), recent, candidates[candidates >= 0])

    def local_candidates(self, run: UserRun, subcategory: int) -> list[int]:
        """The user's candidates in ``subcategory``, topped up by Two-Tower score."""
        cap = self.config.local_candidates
        inside = run.candidates[self.item_subcategory[run.candidates] == subcategory]
        chosen = inside[:cap].tolist()
        if len(chosen) < cap:
            pool = self.taxonomy.subcategory_items(subcategory)
            pool = pool[~np.isin(pool, [*run.seen, *chosen])]
            scores = self.tw_items[pool] @ self.tw_users[run.user]
            chosen += pool[np.argsort(-scores, kind="stable")][: cap - len(chosen)].tolist()
        return chosen

    def options(
        self, run: UserRun, items: list[int], facts: bool = False
    ) -> tuple[list[Option], dict[str, int]]:
        """Options for ``items`` (labels unique within the list) and label → item."""
        by_label = labelled([self.texts[i] for i in items], items)
        found = zip(by_label.items(), self._evidence(run, items), strict=True)
        options = [Option(label, self._facts(item) if facts else "", evidence)
                   for (label, item), evidence in found]  # fmt: skip
        return options, by_label

    def _facts(self, item: int) -> str:
        category = self.taxonomy.categories[self.item_category[item]]
        brand = self.brands[item]
        return f"category: {category}" + (f"; brand: {brand}" if brand else "")

    def _evidence(self, run: UserRun, items: list[int]) -> list[tuple[Evidence, ...]]:
        """Up to ``evidence`` history items per candidate with cosine ≥ the threshold."""
        history = np.array(sorted(run.seen), dtype=np.int64)
        count = min(self.config.evidence, len(history))
        if not count or not items:
            return [() for _ in items]
        index = faiss.IndexFlatIP(self.content.shape[1])
        index.add(self.content[history])
        similarity, found = index.search(self.content[np.asarray(items)], count)
        return [
            tuple(Evidence(self.titles[history[j]], float(s))
                  for s, j in zip(row_s, row_j, strict=True)
                  if j >= 0 and s >= self.config.evidence_similarity)
            for row_s, row_j in zip(similarity, found, strict=True)
        ]  # fmt: skip

    def capped(self, picks: list[Pick], run: UserRun) -> list[Pick]:
        """``picks`` with at most ``max_per_brand`` items of one brand (the rest counted)."""
        cap = self.config.max_per_brand
        if cap is None:
            return picks
        seen: Counter[str] = Counter()
        kept = []
        for pick in picks:
            brand = self.brands[pick.item].casefold()
            seen[brand] += 1
            if not brand or seen[brand] <= cap:
                kept.append(pick)
        run.trace["over_brand_cap"] = len(picks) - len(kept)
        return kept
