"""The LLM re-ranking: the fusion on hand numbers, α = 1 keeps the model's order, the
LLM's order wins at α = 0 above the untouched rest, invalid answers keep the model's
order, and the chosen α is the best of the recorded validation curve."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from coldrec.data import Dataset
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.llm.base import Backend, Generation, Request
from coldrec.llm.client import LLM, LLMConfig
from coldrec.supervision.rerank import LLMReranked, RerankConfig, choose_alpha, fused_scores


def test_the_fusion_on_hand_numbers() -> None:
    model = np.array([[2.0, 1.0, 0.0]])
    llm = np.array([[0.0, 0.0, math.log(2.0)]])  # softmax at τ 1: 1/4, 1/4, 1/2
    e = np.exp([2.0, 1.0, 0.0])
    soft_model = e / e.sum()
    expected = 0.3 * soft_model + 0.7 * np.array([0.25, 0.25, 0.5])
    assert fused_scores(model, llm, 0.3, 1.0) == pytest.approx(expected[None])
    assert fused_scores(model, llm, 1.0, 1.0) == pytest.approx(soft_model[None])
    missing = np.array([[0.0, np.nan, 1.0]])  # an invalid answer: the model alone
    assert fused_scores(model, missing, 0.3, 1.0) == pytest.approx(soft_model[None])


class FixedScores:
    """A scorer whose scores are a fixed matrix (a test double for a trained model)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return self.scores[users]


def replayed(tmp_path: Path, answers: list[int]) -> LLM:
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"contains": "Score each of the 4 candidates",
                                "answer": json.dumps({"scores": answers})}) + "\n")  # fmt: skip
    return LLM(LLMConfig.model_validate({"backend": {"kind": "replay", "path": str(path)},
                                         "cache": False}))  # fmt: skip


def test_alpha_one_keeps_the_models_order_and_zero_the_llms_on_top(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((small_dataset.n_users, small_dataset.n_items))
    model = FixedScores(scores)
    history = small_dataset.sequences(*HISTORY_SPLITS)
    user = next(u for u, h in enumerate(history) if len(h))
    masked = scores[user].copy()
    masked[history[user]] = -np.inf
    order = np.argsort(-masked, kind="stable")
    config = RerankConfig(top_c=4, llm={"backend": {"kind": "embedding"}})
    with replayed(tmp_path, [1, 2, 3, 10]) as llm:
        reranked = LLMReranked(model, small_dataset, config, llm, alpha=1.0)
        kept = reranked.score(np.array([user]))[0]
        kept[history[user]] = -np.inf
        assert np.argsort(-kept, kind="stable")[:10].tolist() == order[:10].tolist()
        reranked.alpha = 0.0
        flipped = reranked.score(np.array([user]))[0]
        flipped[history[user]] = -np.inf
        got = np.argsort(-flipped, kind="stable")
        # the LLM scores 1, 2, 3, 10: the model's fourth first, then its third, second, first
        assert got[:4].tolist() == order[[3, 2, 1, 0]].tolist()
        assert got[4:10].tolist() == order[4:10].tolist()  # the rest keep the model's order
        assert reranked.relevance.invalid_users() == 0


@pytest.mark.parametrize("answers", [[1, 2, 3], [1, 2, 3, 11], [1, 2, True, 4]])
def test_an_invalid_answer_keeps_the_models_order(
    small_dataset: Dataset, tmp_path: Path, answers: list[int]
) -> None:
    """Three scores for four candidates, one above 10 (a grammar may ignore the bound), a
    boolean: each answer is unusable and counted."""
    scores = np.random.default_rng(1).random((small_dataset.n_users, small_dataset.n_items))
    config = RerankConfig(top_c=4, llm={"backend": {"kind": "embedding"}})
    history = small_dataset.sequences(*HISTORY_SPLITS)
    user = next(u for u, h in enumerate(history) if len(h))
    with replayed(tmp_path, answers) as llm:
        reranked = LLMReranked(FixedScores(scores), small_dataset, config, llm, alpha=0.0)
        got = reranked.score(np.array([user]))[0]
    masked = scores[user].copy()
    masked[history[user]] = -np.inf
    got[history[user]] = -np.inf
    assert np.argsort(-got, kind="stable")[:4].tolist() == np.argsort(-masked, kind="stable")[
        :4].tolist()  # fmt: skip
    assert reranked.relevance.invalid_users() == 1
    assert (reranked.relevance.faults.answers, reranked.relevance.faults.unusable) == (1, 1)


def test_the_chosen_alpha_is_the_best_of_the_recorded_curve(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    scores = np.random.default_rng(2).random((small_dataset.n_users, small_dataset.n_items))
    config = RerankConfig(top_c=4, alphas=(0.0, 0.5, 1.0), llm={"backend": {"kind": "embedding"}})
    with LLM(config.llm) as llm:
        alpha, curve = choose_alpha(FixedScores(scores), small_dataset, config, llm)
    assert [p["alpha"] for p in curve] == [0.0, 0.5, 1.0]
    means = [(p["warm"] + p["cold"]) / 2 for p in curve]
    best = max(means)
    assert alpha == max(p["alpha"] for p, m in zip(curve, means, strict=True) if m == best)


def test_the_scores_answer_bounds_each_score_by_an_enum(small_dataset: Dataset) -> None:
    """Grammars and lm-format-enforcer ignore an integer's minimum and maximum (SmolLM2
    scored 20 candidates 1 … 20): only an enum holds a score to 0–10."""
    asked: list[Request] = []

    class Capturing(Backend):
        name = "capturing"

        @property
        def identity(self) -> str:
            return "capturing:test"

        def generate(self, request: Request) -> Generation:
            asked.append(request)
            return Generation(json.dumps({"scores": [5] * 4}))

    scores = np.random.default_rng(2).random((small_dataset.n_users, small_dataset.n_items))
    history = small_dataset.sequences(*HISTORY_SPLITS)
    user = next(u for u, h in enumerate(history) if len(h))
    config = RerankConfig(top_c=4, llm={"cache": False})
    with LLM(LLMConfig(cache=False), backend=Capturing()) as llm:
        LLMReranked(FixedScores(scores), small_dataset, config, llm, alpha=0.0).score(
            np.array([user]))  # fmt: skip
    items = asked[0].schema["properties"]["scores"]["items"]  # type: ignore[index]
    assert items["enum"] == list(range(11))
