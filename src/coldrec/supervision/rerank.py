"""The LLM as re-ranker of a model's top candidates, fused with the model (LAGCL4Rec's
rerank level, eq. 19–21; the LLM-ranking issue shares it).

For each user, the model's top ``top_c`` items (history left out) go to the LLM with the
titles of the user's ``history_items`` most recent items; it scores each candidate's
relevance (0–10, an integer-array schema, cached and accounted). The fused score of a
candidate is ``α·softmax(s_model) + (1 − α)·softmax(s_llm / τ)`` over the user's
candidates: the model's scores are softmax-normalised too, so both terms are
distributions over the same items and α weighs like against like (``α = 1`` keeps the
model's order). A user whose answer is missing or invalid keeps the model's order
(counted). α is chosen on the validation view (:func:`choose_alpha`), never on test.

With ``answer: ranking`` the LLM orders the candidates instead (the LLMRank protocol:
prompts, bootstrapping and the completion of faulty answers in
:mod:`coldrec.supervision.llm_rank`); a candidate's LLM score is then its mean Borda
points (``C`` for the top, ``1`` for the last) over the usable answers.

With the ``embedding`` backend (no LLM, said so) the relevance is the cosine of the
user's mean history text vector with the candidate's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig, user_content_vectors
from coldrec.eval.protocol import Scorer, Selection, evaluate
from coldrec.llm.base import Request
from coldrec.llm.client import LLM
from coldrec.llm.engines import LLMJobConfig
from coldrec.llm.schemas import array_answer_tokens, grades_of, grades_schema
from coldrec.supervision.llm_rank import (
    Faults,
    PromptKind,
    borda,
    complete_ranking,
    ranking_request,
)

__all__ = [
    "CandidateRelevance",
    "LLMReranked",
    "RerankConfig",
    "best_alpha",
    "choose_alpha",
    "fused_scores",
]

TOP_SCORE = 10
"""The LLM scores each candidate 0–``TOP_SCORE``."""
_RANK = ("You judge how relevant each candidate product is to a shopper, from their "
         "purchase history, from 0 (irrelevant) to 10 (what they want next), one score per "
         "candidate, in order.")  # fmt: skip


class RerankConfig(LLMJobConfig):
    """The LLM re-ranking of a model's top candidates (``llm``, ``engine`` and ``ray``:
    :class:`~coldrec.llm.engines.LLMJobConfig`)."""

    top_c: int = Field(20, gt=1)
    """Candidates per user the LLM re-ranks."""
    history_items: int = Field(50, gt=0)
    """Most recent history items shown."""
    temperature: float = Field(1.0, gt=0)
    """τ of the softmax over the LLM's scores."""
    alphas: tuple[Annotated[float, Field(ge=0, le=1)], ...] = Field(
        tuple(round(0.1 * step, 1) for step in range(11)), min_length=1
    )
    """The α values tried on validation."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """The ``embedding`` backend's text vectors."""
    answer: Literal["scores", "ranking"] = "scores"
    """``scores``: a 0–10 relevance per candidate (LAGCL4Rec); ``ranking``: an order of
    the candidates (LLMRank)."""
    prompt: PromptKind = "sequential"
    """``answer: ranking``: ``sequential``, ``recency`` or ``in_context``."""
    bootstrap: int = Field(1, ge=1)
    """``answer: ranking``: shuffled presentations per user, their Borda points summed."""
    seed: int = 0
    """Seeds the presentation shuffles (per user, so batches do not matter)."""


def fused_scores(model: np.ndarray, llm: np.ndarray, alpha: float, tau: float) -> np.ndarray:
    """``α·softmax(model) + (1 − α)·softmax(llm/τ)`` per row; a row whose LLM scores are
    not all finite keeps the model's softmax alone."""
    usable = np.isfinite(llm).all(axis=1)
    fused = _softmax(model)
    blend = alpha * fused[usable] + (1 - alpha) * _softmax(llm[usable] / tau)
    fused[usable] = blend
    return fused


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


class LLMReranked:
    """A :class:`~coldrec.eval.protocol.Scorer`: ``model``'s scores with each user's top
    ``top_c`` (history left out) re-ordered by the fusion at ``alpha``, above the rest,
    which keep the model's order. The LLM's scores (``relevance``) are asked once per user
    and reused across α values."""

    def __init__(
        self, model: Scorer, dataset: Dataset, config: RerankConfig, llm: LLM, alpha: float
    ) -> None:
        self.model, self.config, self.alpha = model, config, alpha
        self.relevance = CandidateRelevance(dataset, config, llm)
        self.history = self.relevance.history

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if items is not None:
            raise ValueError("the LLM re-ranker ranks the full catalogue's top candidates")
        base = np.asarray(self.model.score(users), dtype=np.float64)
        top = self._top(users, base)
        llm = self.relevance.of(users, top)
        model = np.take_along_axis(base, top, axis=1)
        fused = fused_scores(model, llm, self.alpha, self.config.temperature)
        finite = np.where(np.isfinite(base), base, np.nan)
        low = np.nanmin(finite, axis=1, keepdims=True)
        high = np.nanmax(finite, axis=1, keepdims=True)
        out = base - (high - low) - 2.0  # every other item below the fused ones, in order
        np.put_along_axis(out, top, fused, axis=1)
        return out.astype(np.float32)

    def _top(self, users: np.ndarray, base: np.ndarray) -> np.ndarray:
        masked = np.where(np.isfinite(base), base, -np.inf)
        for row, user in enumerate(users):
            masked[row, self.history[user]] = -np.inf
        return np.argsort(-masked, axis=1, kind="stable")[:, : self.config.top_c]


class CandidateRelevance:
    """The LLM's relevance of each user's candidates (a row of ``top`` per user, best
    first by the model), asked once per user and kept in ``scores``: 0–10 scores, or mean
    Borda points with ``answer: ranking`` (NaN where the answer was unusable)."""

    def __init__(self, dataset: Dataset, config: RerankConfig, llm: LLM) -> None:
        self.dataset, self.config, self.llm = dataset, config, llm
        self.history = dataset.sequences(*HISTORY_SPLITS)
        self.scores: dict[int, np.ndarray] = {}
        self.faults = Faults()
        """What was wrong with the LLM's answers (a scores answer is usable or not)."""
        self._profiles: np.ndarray | None = None
        self._items: np.ndarray | None = None

    def of(self, users: np.ndarray, top: np.ndarray) -> np.ndarray:
        """The scores of each user's candidates ``top`` (asked for users not kept yet)."""
        missing = [row for row, user in enumerate(users) if int(user) not in self.scores]
        if missing:
            asked = users[missing]
            if not self.llm.backend.generates_text:
                found = self._similarity(asked, top[missing])
            elif self.config.answer == "ranking":
                found = self._ask_rankings(asked, top[missing])
            else:
                found = self._ask(asked, top[missing])
            for user, scores in zip(asked, found, strict=True):
                self.scores[int(user)] = scores
        return np.stack([self.scores[int(user)] for user in users])

    def invalid_users(self) -> int:
        """Users whose LLM answer was missing or invalid (they keep the model's order)."""
        return sum(not np.isfinite(s).all() for s in self.scores.values())

    def _similarity(self, users: np.ndarray, top: np.ndarray) -> np.ndarray:
        if self._items is None:
            encoder = TextEncoder(self.config.encoder)
            self._items = encoder.encode(self.dataset.item_text)
            self._profiles = user_content_vectors(self.dataset, self._items, HISTORY_SPLITS,
                                                  self.config.history_items)  # fmt: skip
        assert self._profiles is not None
        return np.einsum("ucd,ud->uc", self._items[top], self._profiles[users])

    def _ask(self, users: np.ndarray, top: np.ndarray) -> np.ndarray:
        titles = self.dataset.items["title"].fillna("").astype(str).to_numpy()
        c = top.shape[1]
        schema = grades_schema("scores", c, TOP_SCORE)
        requests = []
        for user, candidates in zip(users, top, strict=True):
            recent = self.history[user][-self.config.history_items :]
            seen = "\n".join(f"- {titles[i]}" for i in recent)
            listing = "\n".join(f"{k + 1}. {titles[i]}" for k, i in enumerate(candidates))
            prompt = (f"History:\n<context>\n{seen}\n</context>\nCandidates:\n<context>\n"
                      f"{listing}\n</context>\nScore each of the {c} candidates. Answer as "
                      'JSON: {"scores": [...]}')  # fmt: skip
            messages = [{"role": "system", "content": _RANK}, {"role": "user", "content": prompt}]
            requests.append(Request(messages, schema, max_tokens=array_answer_tokens(c),
                                    stage="rerank"))  # fmt: skip
        out = np.full(top.shape, np.nan)
        for row, answer in enumerate(self.llm.batch(requests)):
            got = grades_of(answer.field("scores"), c, TOP_SCORE)
            self.faults.add(Faults(answers=1, unusable=int(got is None)))
            if got is not None:
                out[row] = np.asarray(got, dtype=float)
        return out

    def _ask_rankings(self, users: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Mean Borda points of each user's candidates over their usable ranking answers
        (NaN where none was usable)."""
        texts = self.dataset.item_text
        disliked = self.dataset.known_negatives().groupby("user_idx")["item_idx"].agg(list)
        requests, shown = [], []
        for user, candidates in zip(users, top, strict=True):
            rng = np.random.default_rng([self.config.seed, int(user)])
            history = [texts[i] for i in self.history[user][-self.config.history_items :]]
            bad = [texts[i] for i in disliked.get(user, [])[-self.config.history_items :]]
            for _ in range(self.config.bootstrap):
                order = rng.permutation(len(candidates))
                shown.append(order)
                listed = [texts[candidates[k]] for k in order]
                requests.append(ranking_request(self.config.prompt, history, listed, bad))
        answers = self.llm.batch(requests)
        out = np.full(top.shape, np.nan)
        b = self.config.bootstrap
        for row in range(len(users)):
            rankings = []
            for order, answer in zip(shown[row * b : (row + 1) * b],
                                     answers[row * b : (row + 1) * b], strict=True):  # fmt: skip
                ranking, faults = complete_ranking(answer.field("ranking"), order.tolist())
                self.faults.add(faults)
                if not faults.unusable:
                    rankings.append(ranking)
            if rankings:
                out[row] = borda(rankings, top.shape[1]) / len(rankings)
        return out


def choose_alpha(
    model: Scorer,
    view: Dataset,
    config: RerankConfig,
    llm: LLM,
    selection: Selection | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """The α of ``config.alphas`` whose re-ranking of ``model`` (trained on the validation
    ``view``) scores best on the view by ``selection`` over warm and cold NDCG@10 (the
    re-ranking only reorders the top ``top_c``, so a cut-off inside it must judge it),
    the larger α among equals (the model's own order is the cautious choice); and the
    curve (α, warm, cold)."""
    reranked = LLMReranked(model, view, config, llm, alpha=1.0)
    curve = []
    for alpha in config.alphas:
        reranked.alpha = alpha
        segments = evaluate(reranked, view, ks=(10,))["segments"]
        curve.append({"alpha": alpha, "warm": segments["warm"]["ndcg@10"],
                      "cold": segments["cold"]["ndcg@10"]})  # fmt: skip
    return best_alpha(curve, selection), curve


def best_alpha(curve: list[dict[str, Any]], selection: Selection | None = None) -> float:
    """The α of the curve's best point (``alpha``, ``warm``, ``cold``) by ``selection``,
    the larger α among equals (the model's own order is the cautious choice)."""
    selection = selection or Selection()
    best = max(curve, key=lambda p: (selection.key(p["warm"], p["cold"]), p["alpha"]))
    return float(best["alpha"])
