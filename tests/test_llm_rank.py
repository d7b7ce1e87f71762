"""The LLM as ranker: faulty answers completed and counted, bootstrapped Borda points on
hand lists, the prompts, and the re-ranker's ranking path end to end with a recording
LLM double (no test item in any prompt; shuffled presentations aggregated)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from coldrec.data import Dataset
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.llm.base import Backend, Generation, Request
from coldrec.llm.client import LLM, LLMConfig
from coldrec.supervision.llm_rank import borda, complete_ranking, ranking_request
from coldrec.supervision.rerank import LLMReranked, RerankConfig


def test_a_faulty_answer_is_completed_and_its_faults_counted() -> None:
    shown = [12, 10, 13, 11]  # number 1 shows candidate 12, number 2 candidate 10, …
    ranking, faults = complete_ranking([3, 9, 3, "x", True, 1], shown)
    # 3 → 13, 9 unknown, 3 again repeated, "x" and True unknown, 1 → 12; then the missing
    # 10 and 11 in the model's order
    assert ranking == [13, 12, 10, 11]
    assert (faults.unknown, faults.repeated, faults.missing) == (3, 1, 2)
    assert (faults.partial, faults.unusable, faults.invalid_rate) == (1, 0, 1.0)


def test_a_perfect_answer_has_no_fault_and_no_answer_keeps_the_models_order() -> None:
    ranking, faults = complete_ranking([2, 4, 1, 3], [12, 10, 13, 11])
    assert ranking == [10, 11, 12, 13]
    assert faults.as_dict() == {"answers": 1, "unusable": 0, "partial": 0, "unknown": 0,
                                "repeated": 0, "missing": 0, "invalid_rate": 0.0}  # fmt: skip
    for nothing in (None, {"ranking": [1]}, "1, 2"):
        ranking, faults = complete_ranking(nothing, [12, 10, 13, 11])
        assert ranking == [10, 11, 12, 13]
        assert (faults.unusable, faults.partial, faults.missing) == (1, 0, 0)


def test_borda_points_on_hand_rankings() -> None:
    rankings = [[0, 1, 2], [2, 0, 1], [0, 2, 1]]
    # item 0: 3 + 2 + 3, item 1: 2 + 1 + 1, item 2: 1 + 3 + 2
    assert borda(rankings, 3).tolist() == [8.0, 4.0, 6.0]


def test_the_prompts() -> None:
    history, candidates = ["old", "older still", "newest"], ["a", "b"]
    sequential = ranking_request("sequential", history, candidates)
    text = sequential.messages[1]["content"]
    assert "- old\n- older still\n- newest" in text and "1. a\n2. b" in text
    assert "Example" not in text and "most recent" not in text and "disliked" not in text
    ranking = sequential.schema["properties"]["ranking"]  # type: ignore[index]
    assert ranking["items"] == {"type": "integer", "enum": [1, 2], "minimum": 1, "maximum": 2}
    assert ranking["minItems"] == ranking["maxItems"] == 2
    recency = ranking_request("recency", history, candidates).messages[1]["content"]
    assert "most recent purchase is: newest" in recency
    in_context = ranking_request("in_context", history, candidates, ["bad"]).messages[1]
    demo, rest = in_context["content"].split("The shopper bought", 1)
    assert "- old\n- older still\n</context>\nThey bought next: newest" in demo
    assert "They disliked:\n<context>\n- bad" in rest


class Recording(Backend):
    """Answers every ranking request with the shown order (1, 2, …) and keeps the
    prompts."""

    name = "recording"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    @property
    def identity(self) -> str:
        return "recording:test"

    def generate(self, request: Request) -> Generation:
        self.prompts.append(request.messages[1]["content"])
        c = request.schema["properties"]["ranking"]["maxItems"]  # type: ignore[index]
        return Generation(json.dumps({"ranking": list(range(1, c + 1))}))


class FixedScores:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return self.scores[users]


@pytest.mark.parametrize("prompt", ["sequential", "recency", "in_context"])
def test_ranking_prompts_never_show_a_test_item_as_history(
    small_dataset: Dataset, prompt: Any
) -> None:
    texts = small_dataset.item_text
    history = small_dataset.sequences(*HISTORY_SPLITS)
    test = small_dataset.split("test")
    users = np.array(sorted(set(test["user_idx"]) & {u for u, h in enumerate(history)
                                                      if len(h)}))[:5]  # fmt: skip
    scores = np.random.default_rng(3).random((small_dataset.n_users, small_dataset.n_items))
    config = RerankConfig(top_c=4, answer="ranking", prompt=prompt, llm={"cache": False})
    backend = Recording()
    with LLM(LLMConfig(cache=False), backend=backend) as llm:
        LLMReranked(FixedScores(scores), small_dataset, config, llm, alpha=0.0).score(users)
    for user, text in zip(users, backend.prompts, strict=True):
        shown = re.findall(r"^- (.*)$", text.split("Candidates:")[0], flags=re.MULTILINE)
        held_out = {texts[i] for i in test.loc[test["user_idx"] == user, "item_idx"]}
        seen = {texts[i] for i in history[user]}
        assert set(shown) <= seen
        assert not (set(shown) & (held_out - seen))


def test_bootstrapped_shuffles_are_summed(small_dataset: Dataset) -> None:
    history = small_dataset.sequences(*HISTORY_SPLITS)
    user = next(u for u, h in enumerate(history) if len(h))
    scores = np.random.default_rng(4).random((small_dataset.n_users, small_dataset.n_items))
    config = RerankConfig(top_c=4, answer="ranking", bootstrap=3, seed=7, llm={"cache": False})
    backend = Recording()
    with LLM(LLMConfig(cache=False), backend=backend) as llm:
        reranked = LLMReranked(FixedScores(scores), small_dataset, config, llm, alpha=0.0)
        reranked.score(np.array([user]))
    masked = scores[user].copy()
    masked[history[user]] = -np.inf
    top = np.argsort(-masked, kind="stable")[:4]
    texts = small_dataset.item_text
    assert len({texts[i] for i in top}) == 4  # titles name the candidates unambiguously
    # the double ranks each presentation in its shown order: read the order off the prompt
    points = dict.fromkeys(top.tolist(), 0.0)
    for text in backend.prompts:
        listed = re.findall(r"^\d+\. (.*)$", text.split("Candidates:")[1], flags=re.MULTILINE)
        for position, title in enumerate(listed):
            item = next(i for i in top if texts[i] == title)
            points[int(item)] += 4 - position
    assert len(backend.prompts) == 3
    expected = [points[int(i)] / 3 for i in top]
    assert reranked.relevance[user] == pytest.approx(expected)
    assert reranked.faults.answers == 3 and reranked.faults.invalid_rate == 0.0
