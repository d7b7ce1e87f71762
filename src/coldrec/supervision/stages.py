"""The LLM stages that turn a user's history and Two-Tower candidates into a final
ranking (thesis §4.3): every answer goes through :class:`~coldrec.llm.LLM` (cached,
retried, parsed) and is projected onto the allowed values, so no stage ever invents an
item, category or subcategory.

Tree (``method="tree"``):

============  ==============================================  ============================
stage         asks                                            fallback (marked in trace)
============  ==============================================  ============================
1 profile     JSON profile, keywords, preferred categories    none: later prompts go on
              from the recent history texts                   with the history alone
2 categories  ``categories`` of the taxonomy's categories     the categories of the user's
                                                              interest leaves and history
3 subcats     top ``subcategories`` (K) within the chosen     the subcategories holding
              categories, best first                          most history items, then the
                                                              best-ranked candidates
4 items       per subcategory: up to ``picks`` of at most     the first ``picks`` local
              ``local_candidates`` items, scored 0–5;         candidates, score
              local candidates are the user's Two-Tower       ``fallback_score``
              candidates in the subcategory, topped up from
              its other items by Two-Tower score (so cold
              items can enter); each shown with up to
              ``evidence`` history items of cosine ≥
              ``evidence_similarity`` (FAISS, MiniLM vectors)
5 rerank      the ``final`` best of the merged picks (at      the preselection in order
              most ``preselected``, by stage-4 score),        (stage-4 score, then
              scored 0–5, with variety across categories      subcategory order)
              and brands
============  ==============================================  ============================

Flat (``method="flat"``, the ablation without the tree): Stage 1, then one ranking of
the user's first ``flat_candidates`` Two-Tower candidates (fallback: the first
``final`` of them).

The final list keeps at most ``max_per_brand`` items of one brand (the rest are dropped
and counted). Each final row has a ``source``: ``stage5``, ``stage5_fallback``, ``flat``
or ``flat_fallback``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any

from coldrec.llm import LLM, Completion, Request, project
from coldrec.llm.parse import project_scored
from coldrec.llm.schemas import choice_schema, profile_schema, scored_schema
from coldrec.supervision import prompts
from coldrec.supervision.catalogue import Catalogue, Pick, UserRun, labelled
from coldrec.supervision.prompts import UserText

__all__ = ["Stage", "answer_budget", "keywords_in", "run_stages", "stages_for"]

_WORD = re.compile(r"[^\W\d_]{3,}")


class Stage(ABC):
    """One LLM stage: requests for a user, then what their answers mean."""

    name: str

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue, self.config = catalogue, catalogue.config

    @abstractmethod
    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        """The requests of this stage for ``run`` and what each one needs to be read."""

    @abstractmethod
    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        """Read the answers into ``run`` (with the fallback where an answer is unusable)."""

    def request(self, messages: list[dict[str, str]], schema: dict, max_tokens: int) -> Request:
        return Request(messages, schema, self.config.temperature, max_tokens, stage=self.name)


def answer_budget(labels: list[str], count: int) -> int:
    """Tokens for a scored list of ``count`` of ``labels``: the longest ``count`` labels
    at about three characters a token, plus the JSON around each entry."""
    longest = sorted((len(label) for label in labels), reverse=True)[:count]
    return 32 + sum(longest) // 3 + 16 * count


class ProfileStage(Stage):
    name = "stage1_profile"

    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        categories = list(self.catalogue.category_labels)
        schema = profile_schema(categories)
        return [(self.request(prompts.profile_prompt(run.text, categories), schema, 200), None)]

    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        parsed = answers[0][1].parsed if answers[0][1].ok else None
        parsed = parsed if isinstance(parsed, dict) else {}
        profile = str(parsed.get("profile") or "")[:300]
        words = parsed.get("keywords")
        words = words if isinstance(words, list) else []
        keywords = list({str(w)[:40].casefold(): str(w)[:40] for w in words if w}.values())[:5]
        labels = self.catalogue.category_labels
        preferred = project(parsed.get("preferred_categories"), list(labels)).values
        if not (profile or keywords or preferred):
            run.fell_back(self.name)
            run.trace["profile"] = None
            return
        run.text = UserText(run.text.history, run.text.interests, profile, keywords)
        run.trace["profile"] = {"profile": profile, "keywords": keywords,
                                "preferred_categories": preferred}  # fmt: skip


class CategoryStage(Stage):
    name = "stage2_categories"

    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        labels = list(self.catalogue.category_labels)
        count = min(self.config.categories, len(labels))
        messages = prompts.categories_prompt(run.text, labels, count)
        return [(self.request(messages, choice_schema(labels, count), 24 * count + 24), count)]

    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        count, answer = answers[0]
        labels = self.catalogue.category_labels
        chosen = [labels[v] for v in project(answer.field("items"), list(labels)).values]
        if not chosen:
            run.fell_back(self.name)
            chosen = self._from_history(run)
        run.categories = chosen[:count]
        run.trace["categories"] = [self.catalogue.taxonomy.categories[c] for c in run.categories]

    def _from_history(self, run: UserRun) -> list[int]:
        """Categories of the user's interest leaves, then of their history items (most
        recent first), then of their candidates."""
        catalogue = self.catalogue
        leaves = catalogue.taxonomy.user_leaves.get(run.user, [])
        leaf_items = [int(catalogue.taxonomy.leaves[leaf].items[0]) for leaf in leaves]
        ranked = [*leaf_items, *run.recent, *run.candidates.tolist()]
        return list(dict.fromkeys(int(catalogue.item_category[i]) for i in ranked))


class SubcategoryStage(Stage):
    name = "stage3_subcategories"

    def allowed(self, run: UserRun) -> list[int]:
        taxonomy = self.catalogue.taxonomy
        return [s for c in run.categories for s in taxonomy.category_subcategories(c)]

    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        allowed = self.allowed(run)
        if not allowed:
            return []
        labels = labelled([self.catalogue.taxonomy.subcategories[s] for s in allowed], allowed)
        count = min(self.config.subcategories, len(labels))
        messages = prompts.subcategories_prompt(run.text, list(labels), count)
        schema = choice_schema(list(labels), count)
        return [(self.request(messages, schema, 32 * count + 24), (labels, count))]

    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        if not answers:
            return
        (labels, count), answer = answers[0]
        chosen = [labels[v] for v in project(answer.field("items"), list(labels)).values]
        if not chosen:
            run.fell_back(self.name)
            chosen = self._by_evidence(run, self.allowed(run))
        run.subcategories = chosen[:count]
        names = self.catalogue.taxonomy.subcategories
        run.trace["subcategories"] = [names[s] for s in run.subcategories]

    def _by_evidence(self, run: UserRun, allowed: list[int]) -> list[int]:
        """Most history items first, then the best-ranked candidate."""
        subcategory = self.catalogue.item_subcategory
        in_history = Counter(int(subcategory[i]) for i in run.seen)
        first_rank: dict[int, int] = {}
        for rank, item in enumerate(run.candidates.tolist()):
            first_rank.setdefault(int(subcategory[item]), rank)
        never = len(run.candidates)
        return sorted(allowed, key=lambda s: (-in_history[s], first_rank.get(s, never), s))


class ItemStage(Stage):
    name = "stage4_items"

    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        out = []
        for subcategory in run.subcategories:
            local = self.catalogue.local_candidates(run, subcategory)
            if not local:
                continue
            options, by_label = self.catalogue.options(run, local)
            count = min(self.config.picks, len(local))
            name = self.catalogue.taxonomy.subcategories[subcategory]
            schema = scored_schema(list(by_label), count, min_count=1)
            messages = prompts.items_prompt(run.text, name, options, count)
            budget = answer_budget(list(by_label), count)
            out.append((self.request(messages, schema, budget),
                        (subcategory, local, by_label, count)))  # fmt: skip
        return out

    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        run.trace["stage4"] = []
        for (subcategory, local, by_label, count), answer in answers:
            scored = project_scored(answer.field("ranked"), list(by_label)).values[:count]
            picks = [Pick(by_label[label], score, subcategory, "stage4") for label, score in scored]
            if not picks:
                run.fell_back(self.name)
                picks = [Pick(i, self.config.fallback_score, subcategory, "stage4_fallback")
                         for i in local[:count]]  # fmt: skip
            run.picks += picks
            run.trace["stage4"].append({
                "subcategory": self.catalogue.taxonomy.subcategories[subcategory],
                "local_candidates": len(local),
                "picks": [[p.item, p.score] for p in picks],
                "fallback": picks[0].source == "stage4_fallback",
            })  # fmt: skip


class RerankStage(Stage):
    name = "stage5_rerank"

    def preselection(self, run: UserRun) -> list[Pick]:
        """The merged picks (each item once, at its best), by score then subcategory order."""
        order = {s: i for i, s in enumerate(run.subcategories)}
        best: dict[int, Pick] = {}
        for pick in run.picks:
            if pick.item not in best or pick.score > best[pick.item].score:
                best[pick.item] = pick
        ranked = sorted(best.values(), key=lambda p: (-p.score, order.get(p.subcategory, 0)))
        return ranked[: self.config.preselected]

    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        preselected = self.preselection(run)
        if not preselected:
            return []
        items = [p.item for p in preselected]
        options, by_label = self.catalogue.options(run, items, facts=True)
        count = min(self.config.final, len(items))
        schema = scored_schema(list(by_label), count, min_count=1)
        messages = prompts.rerank_prompt(run.text, options, count)
        meta = (by_label, {p.item: p for p in preselected}, count)
        return [(self.request(messages, schema, answer_budget(list(by_label), count)), meta)]

    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        if not answers:
            return
        (by_label, preselected, count), answer = answers[0]
        scored = project_scored(answer.field("ranked"), list(by_label)).values[:count]
        final = [Pick(by_label[label], score, preselected[by_label[label]].subcategory, "stage5")
                 for label, score in scored]  # fmt: skip
        if not final:
            run.fell_back(self.name)
            final = [Pick(p.item, p.score, p.subcategory, "stage5_fallback")
                     for p in list(preselected.values())[:count]]  # fmt: skip
        run.final = self.catalogue.capped(final, run)


class FlatStage(Stage):
    name = "flat_rank"

    def requests(self, run: UserRun) -> list[tuple[Request, Any]]:
        items = run.candidates[: self.config.flat_candidates].tolist()
        if not items:
            return []
        options, by_label = self.catalogue.options(run, items, facts=True)
        count = min(self.config.final, len(items))
        schema = scored_schema(list(by_label), count, min_count=1)
        messages = prompts.rerank_prompt(run.text, options, count)
        budget = answer_budget(list(by_label), count)
        return [(self.request(messages, schema, budget), (by_label, items, count))]

    def apply(self, run: UserRun, answers: list[tuple[Any, Completion]]) -> None:
        if not answers:
            return
        (by_label, items, count), answer = answers[0]
        subcategory = self.catalogue.item_subcategory
        scored = project_scored(answer.field("ranked"), list(by_label)).values[:count]
        final = [Pick(by_label[label], score, int(subcategory[by_label[label]]), "flat")
                 for label, score in scored]  # fmt: skip
        if not final:
            run.fell_back(self.name)
            final = [Pick(i, self.config.fallback_score, int(subcategory[i]), "flat_fallback")
                     for i in items[:count]]  # fmt: skip
        run.final = self.catalogue.capped(final, run)


def stages_for(catalogue: Catalogue) -> list[Stage]:
    """The stages of the configured method, in order."""
    if catalogue.config.method == "flat":
        return [ProfileStage(catalogue), FlatStage(catalogue)]
    kinds = (ProfileStage, CategoryStage, SubcategoryStage, ItemStage, RerankStage)
    return [kind(catalogue) for kind in kinds]


def run_stages(runs: list[UserRun], stages: list[Stage], llm: LLM) -> None:
    """Run every stage over ``runs``, each stage as one batch of LLM calls."""
    for stage in stages:
        asked = [(run, request, meta) for run in runs for request, meta in stage.requests(run)]
        answers = llm.batch([request for _, request, _ in asked], progress=False)
        grouped: dict[int, list[tuple[Any, Completion]]] = {id(run): [] for run in runs}
        for (run, _, meta), answer in zip(asked, answers, strict=True):
            grouped[id(run)].append((meta, answer))
        for run in runs:
            stage.apply(run, grouped[id(run)])


def keywords_in(text: str, keywords: list[str]) -> list[str]:
    """The profile keywords whose words all occur in ``text``."""
    words = {w.casefold() for w in _WORD.findall(text)}
    return [k for k in keywords if (parts := _WORD.findall(k)) and
            all(p.casefold() in words for p in parts)]  # fmt: skip
