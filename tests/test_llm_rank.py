"""The LLM as ranker: faulty answers completed and counted, bootstrapped Borda points on
hand lists, the prompts, and the re-ranker's ranking path end to end with a recording
LLM double (no test item in any prompt; shuffled presentations aggregated)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.config import validate
from coldrec.data import Dataset, prepare
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.data.prepare import validation_view
from coldrec.data.sources import SyntheticSource
from coldrec.errors import ConfigError
from coldrec.eval.metrics import METRICS
from coldrec.eval.protocol import ranked_candidates
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.llm_rank import (
    LLMRankConfig,
    expected_random_hits,
    run_llm_rank,
    run_rankings,
    summary_markdown,
)
from coldrec.experiment.run import run_experiment
from coldrec.llm.base import Backend, Generation, Request
from coldrec.llm.client import LLM, LLMConfig
from coldrec.llm.engines import LLMJobConfig
from coldrec.supervision.llm_rank import borda, complete_ranking, ranking_request
from coldrec.supervision.rerank import LLMReranked, RerankConfig, fused_scores
from tests.test_experiment import TINY


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
    assert ranking["minItems"] == ranking["maxItems"] == 2 and ranking["uniqueItems"]
    recency = ranking_request("recency", history, candidates).messages[1]["content"]
    assert "most recent purchase is: newest" in recency
    in_context = ranking_request("in_context", history, candidates, ["bad"]).messages[1]
    demo, rest = in_context["content"].split("The shopper bought", 1)
    assert "- old\n- older still\n</context>\nThey bought next: newest" in demo
    assert "They disliked:\n<context>\n- bad" in rest


@pytest.mark.parametrize("c", [2, 20, 50])
def test_the_answer_budget_holds_a_full_ranking_written_one_quoted_number_a_line(c: int) -> None:
    """A constrained decoder may write integer enums as strings, one to a line; a token is
    at least one character, so the characters bound the tokens (SmolLM2's 20-candidate
    answers were cut at the old budget of 4 tokens a candidate). The judge's grade and A/B
    arrays take the same budget (array_answer_tokens)."""
    request = ranking_request("sequential", ["old"], [f"item {k}" for k in range(c)])
    answer = json.dumps({"ranking": [str(k) for k in range(c, 0, -1)]}, indent=2)
    assert len(answer) <= request.max_tokens


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
    assert reranked.relevance.scores[user] == pytest.approx(expected)
    assert reranked.relevance.faults.answers == 3 and reranked.relevance.faults.invalid_rate == 0.0


def test_a_random_orders_expected_hits_give_the_mean_over_every_order() -> None:
    hits = np.array([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    n_targets = np.array([2, 3, 1])
    orders = list(itertools.permutations(range(5)))
    for k in (1, 2, 3, 5):
        for name in ("recall", "ndcg"):
            every = np.mean([METRICS[name](hits[:, list(o)], n_targets, k) for o in orders], axis=0)
            expected = METRICS[name](expected_random_hits(hits), n_targets, k)
            assert expected == pytest.approx(every)
    # by hand: two hits in five slots, two targets: E[recall@2] = (2 · 2/5) / 2
    assert METRICS["recall"](expected_random_hits(hits), n_targets, 2)[0] == pytest.approx(0.4)


def test_candidates_ranked_by_a_scorer_keep_padding_last_and_cut_to_width() -> None:
    candidates = Candidates(users=np.array([7, 9]), items=np.array([[3, 1, 2], [4, 5, -1]]),
                            scores=np.zeros((2, 3), dtype=np.float32))  # fmt: skip
    got = np.array([[0.1, 0.9, 0.5], [0.2, 0.2, 5.0]])
    ranked = ranked_candidates(candidates, Rows(got), width=2)
    assert ranked.items.tolist() == [[1, 2], [4, 5]]  # equal scores keep their order
    assert ranked.scores.ravel().tolist() == pytest.approx([0.9, 0.5, 0.2, 0.2])
    assert ranked_candidates(candidates, Rows(got), width=5).items[1, 2] == -1


def test_llm_rank_compares_the_llm_order_with_the_runs(served_run: Path, tmp_path: Path) -> None:
    """The recording double ranks the candidates in the order shown (a seeded shuffle):
    each order's Recall@10 in each segment must equal the one recomputed by hand from the
    written rankings, the fused order's at the chosen α included."""
    dataset = Dataset.load(served_run / "data")
    config = LLMRankConfig(users=25, top_c=20, ks=(10,), llm={"cache": False})
    backend = Recording()
    with patch("coldrec.experiment.llm_rank.open_llm", recording_llm(backend)):
        summary = run_llm_rank(config, served_run / "data", served_run / "rank" / "seed0",
                               tmp_path / "llm_rank")  # fmt: skip
    rankings = pd.read_parquet(tmp_path / "llm_rank" / "rankings.parquet")
    test = rankings[rankings["split"] == "test"].copy()
    assert summary["users"]["test"] == test["user_idx"].nunique() == 25
    history = dataset.sequences(*HISTORY_SPLITS)
    held = dataset.split("test").groupby("user_idx")["item_idx"].agg(set)
    cold = set(np.flatnonzero(dataset.items["cold"].to_numpy()).tolist())
    users = test.groupby("user_idx", sort=False)
    scores = np.stack([g["model_score"].to_numpy() for _, g in users])
    points = np.stack([g["llm_points"].to_numpy() for _, g in users])
    fused = fused_scores(scores, points, summary["alpha"], config.temperature)
    test["fused"] = fused.ravel()

    def at_10(column: str, ascending: bool, segment: str) -> tuple[list[float], list[float]]:
        """Each user's Recall@10 and NDCG@10 of the order by ``column``, by hand."""
        recalls, ndcgs = [], []
        for user, rows in users:
            targets = held[user] - set(history[user].tolist())
            if segment != "all":
                targets = {t for t in targets if (t in cold) == (segment == "cold")}
            if targets:
                order = test.loc[rows.index].sort_values(column, ascending=ascending,
                                                          kind="stable")  # fmt: skip
                top = list(order["item_idx"][:10])
                recalls.append(len(targets & set(top)) / len(targets))
                gains = sum(1 / np.log2(i + 2) for i, item in enumerate(top) if item in targets)
                ndcgs.append(gains / sum(1 / np.log2(i + 2) for i in range(min(len(targets), 10))))
        return recalls, ndcgs

    table, differences = summary["metrics"], summary["differences"]
    for segment in ("all", "warm", "cold"):
        per_user = {}
        for name, column, ascending in (("model", "model_position", True),
                                        ("llm", "llm_points", False),
                                        ("fused", "fused", False)):  # fmt: skip
            recalls, per_user[name] = at_10(column, ascending, segment)
            expected = float(np.mean(recalls))
            assert table[name][segment]["recall@10"] == pytest.approx(expected), (name, segment)
        for name, first, second in (("llm_vs_model", "llm", "model"),
                                    ("fused_vs_model", "fused", "model")):  # fmt: skip
            paired = np.subtract(per_user[first], per_user[second])
            found = differences[name][segment]["ndcg@10"]
            assert found["mean"] == pytest.approx(paired.mean(), abs=1e-12), (name, segment)
            assert found["se"] == pytest.approx(stats.sem(paired), abs=1e-12), (name, segment)
        random = differences["llm_vs_random"][segment]["ndcg@10"]["mean"]
        assert random == pytest.approx(table["llm"][segment]["ndcg@10"]
                                       - table["random"][segment]["ndcg@10"])  # fmt: skip
    for _, rows in users:  # one shuffle answered in its order: C … 1
        assert sorted(rows["llm_points"]) == list(range(1, 21))
    answers = summary["users"]["test"] + summary["users"]["valid"]
    faults = summary["answer_faults"]
    assert faults["test"]["answers"] + faults["valid"]["answers"] == answers
    assert faults["test"]["invalid_rate"] == 0.0
    # the validation users' prompts (asked first) show the view's history only
    share = json.loads((served_run / "rank" / "seed0" / "config.json").read_text())["model"][
        "valid_share"]  # fmt: skip
    view = validation_view(dataset, share)
    before = view.sequences(*HISTORY_SPLITS)
    after = view.split("test").groupby("user_idx")["item_idx"].agg(set)
    valid_users = rankings.loc[rankings["split"] == "valid", "user_idx"].unique()
    texts = dataset.item_text
    for user, text in zip(valid_users, backend.prompts, strict=False):
        shown = set(re.findall(r"^- (.*)$", text.split("Candidates:")[0], flags=re.MULTILINE))
        assert shown <= {texts[i] for i in before[user]}
        assert not shown & {texts[i] for i in after[user] - set(before[user].tolist())}


def test_llm_rank_needs_a_run_with_rankings(served_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no ranking"):
        run_rankings(served_run / "data")
    copy = tmp_path / "rank"
    copy.mkdir()
    (copy / "ranked.parquet").write_bytes((served_run / "rank/seed0/ranked.parquet").read_bytes())
    with pytest.raises(ConfigError, match=r"valid_ranked\.parquet is missing"):
        run_rankings(copy)
    other = tmp_path / "other"
    Dataset.load(served_run / "data").save(other)  # the same data keeps its hash …
    config = LLMRankConfig(users=5, top_c=10, llm={"backend": {"kind": "embedding"}})
    run_llm_rank(config, other, served_run / "rank" / "seed0", tmp_path / "same")
    prepare(SyntheticSource(n_users=300, n_items=200, seed=6).load()).save(other)  # … not this
    with pytest.raises(ConfigError, match="made from other data"):
        run_llm_rank(config, other, served_run / "rank" / "seed0", tmp_path / "other_run")


class Rows:
    """Scores of candidate matrices, one given row per asked user, in order."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        assert items is not None and items.shape == self.scores.shape
        return self.scores


def recording_llm(backend: Backend) -> Any:
    """A stand-in for :func:`~coldrec.llm.engines.open_llm` whose LLM answers with
    ``backend``."""

    def made(job: LLMJobConfig, log: Path | None = None) -> LLM:
        return LLM(job.llm, log=log, backend=backend)

    return made


def test_llm_rank_command_with_the_embedding_stand_in(served_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "llm-rank", "--dataset", str(served_run / "data"), "--run",
        str(served_run / "rank" / "seed0"), "--out", str(tmp_path / "out"), "--backend",
        "embedding", "--users", "30", "--set", "top_c=10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no LLM" in result.output and "random" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["users"]["test"] == 30 and summary["backend"]["llm"] is False


def test_an_experiment_runs_llm_rank_after_each_rank(tmp_path: Path) -> None:
    node = {"llm": {"backend": {"kind": "embedding"}}, "users": 20, "top_c": 10}
    config = validate(ExperimentConfig, {**TINY, "supervise": None, "losses": [],
                                         "baselines": {}, "llm_rank": node})  # fmt: skip
    records = run_experiment(config, tmp_path / "run")
    assert [r["folder"] for r in records if r["step"] == "llm_rank"] == ["llm_rank/seed0"]
    summary = json.loads((tmp_path / "run" / "llm_rank" / "seed0" / "summary.json").read_text())
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## The LLM as ranker" in report and summary_markdown(summary) in report
    with pytest.raises(ConfigError, match="add a rank node in hybrid mode"):
        validate(ExperimentConfig, {**TINY, "rank": None, "supervise": None, "losses": [],
                                    "llm_rank": node})  # fmt: skip


def test_a_larger_user_sample_holds_the_smaller_one(served_run: Path, tmp_path: Path) -> None:
    """So that a run over more users reuses every cached answer of a smaller one."""
    samples = []
    for users in (10, 30):
        config = LLMRankConfig(users=users, top_c=10, llm={"backend": {"kind": "embedding"}})
        run_llm_rank(
            config, served_run / "data", served_run / "rank" / "seed0", tmp_path / str(users)
        )
        rankings = pd.read_parquet(tmp_path / str(users) / "rankings.parquet")
        samples.append(
            {(s, u) for s, u in zip(rankings["split"], rankings["user_idx"], strict=True)}
        )
    assert samples[0] < samples[1] and len(samples[1]) == 60
