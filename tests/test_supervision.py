"""The LLM stages on synthetic data: the replay backend drives every stage and every
fallback path, the embedding judge runs end to end, and no prompt ever shows a test
item as history. The label rules are checked on hand-made rankings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.data.candidates import Candidates
from coldrec.data.prepare import validation_view
from coldrec.errors import ConfigError
from coldrec.llm import LLM, LLMConfig
from coldrec.llm.backends import ReplayConfig
from coldrec.llm.backends.replay import ReplayBackend
from coldrec.llm.base import Generation, Request
from coldrec.retrieval.retrieve import RetrieveConfig, run_retrieval
from coldrec.supervision.catalogue import Catalogue
from coldrec.supervision.labels import LabelFiles, LabelRules, labels_from_rankings, read_labels
from coldrec.supervision.run import SuperviseConfig, eligible_users, run_supervision
from coldrec.supervision.stages import run_stages, stages_for


@pytest.fixture(scope="module")
def retrieved(tmp_path_factory: pytest.TempPathFactory, small_dataset: Dataset) -> Path:
    """A saved synthetic Dataset and a small Two-Tower run over it (``ds``, ``tw``)."""
    root = tmp_path_factory.mktemp("supervision")
    small_dataset.save(root / "ds")
    config = validate(RetrieveConfig, {
        "top_m": 60, "model": {"dim": 16, "early_stopping": False, "training": {"epochs": 2}},
    })  # fmt: skip
    run_retrieval(config, root / "ds", root / "tw")
    return root


def supervise_config(root: Path, replay: Path | None, **settings: Any) -> SuperviseConfig:
    backend = {"kind": "replay", "path": str(replay)} if replay else {"kind": "embedding"}
    llm = {"backend": backend, "cache_dir": str(root / "cache")}
    return validate(SuperviseConfig, {"n_users": 6, "llm": llm, "validation_view": False,
                                      **settings})  # fmt: skip


def supervise(root: Path, config: SuperviseConfig, out: Path) -> dict[str, Any]:
    """``coldrec supervise`` over the fixture's Dataset and Two-Tower run."""
    return run_supervision(config, root / "ds", root / "tw", out)


def write_replay(path: Path, answers: dict[str, Any]) -> Path:
    """``contains`` lines: a request whose messages hold the key gets the JSON value."""
    lines = [json.dumps({"contains": k, "answer": json.dumps(v)}) for k, v in answers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_trace(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]


# --- label rules on hand-made rankings ---------------------------------------------


@dataclass(frozen=True)
class Row:
    item: int
    score: int
    source: str = "stage5"


def test_edges_keep_scores_from_two_weighted_by_score_over_five() -> None:
    ranking = [Row(10, 5), Row(11, 2), Row(12, 1), Row(13, 3, "stage5_fallback")]
    edges, _ = labels_from_rankings({7: ranking})
    assert edges.to_dict("list") == {
        "user": [7, 7, 7], "item": [10, 11, 13], "weight": [1.0, 0.4, 0.2],
        "source": ["stage5", "stage5", "stage5_fallback"],
    }  # fmt: skip
    stricter, _ = labels_from_rankings({7: ranking}, LabelRules(min_score=3, fallback_weight=0.5))
    assert stricter["item"].tolist() == [10, 13] and stricter["weight"].tolist() == [1.0, 0.5]


def test_triplets_adjacent_gaps_first_then_head_versus_tail() -> None:
    # scores 5 5 3 3 1: adjacent gaps at (1,2) and (3,4); then head-tail (0,4) 5 vs 1
    ranking = [Row(0, 5), Row(1, 5), Row(2, 3), Row(3, 3), Row(4, 1)]
    _, triplets = labels_from_rankings({1: ranking})
    assert triplets[["pos", "neg"]].values.tolist() == [[1, 2], [3, 4], [0, 4]]
    assert triplets["weight"].tolist() == pytest.approx([0.4, 0.4, 0.8])
    # an out-of-order pair is written with the higher score as pos
    _, flipped = labels_from_rankings({1: [Row(0, 2), Row(1, 4)]})
    assert flipped[["pos", "neg", "weight"]].values.tolist() == [[1, 0, pytest.approx(0.4)]]


def test_triplets_by_position_only_when_every_score_ties() -> None:
    ranking = [Row(i, 3) for i in range(7)]
    _, triplets = labels_from_rankings({2: ranking}, LabelRules(tie_weight=0.1))
    assert triplets[["pos", "neg"]].values.tolist() == [[0, 6], [1, 5], [2, 4]]
    assert triplets["weight"].tolist() == [0.1, 0.1, 0.1]
    _, capped = labels_from_rankings({2: ranking}, LabelRules(triplets_per_user=1))
    assert len(capped) == 1
    _, single = labels_from_rankings({2: [Row(0, 4)]})
    assert single.empty


def test_a_triplet_with_a_fallback_row_carries_the_fallback_source() -> None:
    ranking = [Row(0, 4), Row(1, 2, "stage5_fallback")]
    _, triplets = labels_from_rankings({3: ranking})
    assert triplets["source"].tolist() == ["stage5_fallback"]
    assert triplets["weight"].tolist() == [0.2]  # the gap says 0.4; a fallback caps it


def test_written_labels_pass_the_ranker_filter(tmp_path: Path, small_dataset: Dataset) -> None:
    edges, triplets = labels_from_rankings({0: [Row(5, 4), Row(6, 2)], 10**6: [Row(1, 5)]})
    edges.to_parquet(tmp_path / "e.parquet")
    triplets.to_parquet(tmp_path / "t.parquet")
    labels = read_labels(small_dataset, tmp_path / "e.parquet", tmp_path / "t.parquet")
    assert labels.dropped["e_unknown_user"] == 1  # user 10**6 is not in the Dataset
    assert len(labels.triplets) == 1


# --- stages with the replay backend -------------------------------------------------


def catalogue_of(root: Path, config: SuperviseConfig) -> Catalogue:
    from coldrec.supervision.run import _catalogue

    tw = root / "tw"
    return _catalogue(config, Dataset.load(root / "ds"), tw / "candidates.parquet", tw / "model",
                      None, root / "scratch")  # fmt: skip


def replay_answers(catalogue: Catalogue) -> dict[str, Any]:
    """Answers for every stage: the first two categories, every subcategory offered
    (by 1-based index), in stage 4 candidates 2 and 1 with scores 5 and 3, in stage 5
    preselected items 2, 1, 3 with scores 4, 4, 1."""
    names = catalogue.taxonomy.categories
    return {
        "Describe this shopper": {"profile": "likes hair care", "keywords": ["hair"],
                                  "preferred_categories": [names[0]]},
        "Choose the 3 categories": {"items": names[:2]},
        "subcategories this shopper": {"items": [f"[{i}]" for i in range(1, 9)]},
        "Candidates in ": {"ranked": [{"item": "[2]", "score": 5}, {"item": "[1]", "score": 3}]},
        "Candidates:\n": {"ranked": [{"item": "[2]", "score": 4}, {"item": "[1]", "score": 4},
                                     {"item": "[3]", "score": 1}]},
    }  # fmt: skip


def test_every_stage_follows_the_recorded_answers(retrieved: Path) -> None:
    config = supervise_config(retrieved, retrieved / "unused.jsonl")
    catalogue = catalogue_of(retrieved, config)
    replay = write_replay(retrieved / "answers.jsonl", replay_answers(catalogue))
    config = supervise_config(retrieved, replay)
    user = int(eligible_users(config, catalogue.dataset, catalogue.candidates)[0])
    run = catalogue.user_run(user)
    with LLM(config.llm.model_copy(update={"cache": False})) as llm:
        run_stages([run], stages_for(catalogue), llm)
    assert "fallbacks" not in run.trace
    assert run.trace["profile"]["keywords"] == ["hair"] and run.text.profile == "likes hair care"
    assert run.categories == [0, 1]
    allowed = [s for c in (0, 1) for s in catalogue.taxonomy.category_subcategories(c)]
    assert run.subcategories == allowed[:8]
    expected_picks = []
    for sub in run.subcategories:
        local = catalogue.local_candidates(run, sub)
        assert set(local).isdisjoint(run.seen) and len(local) <= 80
        in_sub = catalogue.item_subcategory[np.asarray(local)]
        assert (in_sub == sub).all()
        expected_picks += [(local[1], 5), (local[0], 3)] if len(local) > 1 else [(local[0], 3)]
    assert [(p.item, p.score) for p in run.picks] == expected_picks
    preselected = sorted(dict.fromkeys(expected_picks), key=lambda p: -p[1])  # stable
    want = [(preselected[1][0], 4), (preselected[0][0], 4), (preselected[2][0], 1)]
    assert [(p.item, p.score) for p in run.final] == want
    assert {p.source for p in run.final} == {"stage5"}


def test_every_fallback_path_is_taken_and_marked(retrieved: Path, tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "garbage.jsonl", {"": "not an answer"})  # matches all
    config = supervise_config(retrieved, replay, n_users=3)
    summary = supervise(retrieved, config, tmp_path / "out")
    for line in read_trace(tmp_path / "out"):
        assert line["profile"] is None
        fallbacks = line["fallbacks"]
        assert fallbacks[:3] == ["stage1_profile", "stage2_categories", "stage3_subcategories"]
        assert fallbacks.count("stage4_items") == len(line["stage4"]) and fallbacks[-1] == (
            "stage5_rerank"
        )
        assert all(pick["fallback"] for pick in line["stage4"])
        assert {row["source"] for row in line["final"]} == {"stage5_fallback"}
    edges = pd.read_parquet(tmp_path / "out" / "edges.parquet")
    assert set(edges["weight"]) == {0.2} and set(edges["source"]) == {"stage5_fallback"}
    for stage in ("stage1_profile", "stage2_categories", "stage5_rerank"):
        assert summary["stages"][stage]["fallback_rate"] == 1.0
    assert summary["stages"]["stage1_profile"]["calls"] == 2 * 3  # one JSON retry each


def test_stage4_fallback_takes_the_first_local_candidates(retrieved: Path, tmp_path: Path) -> None:
    config = supervise_config(retrieved, retrieved / "unused.jsonl")
    answers = replay_answers(catalogue_of(retrieved, config))
    answers["Candidates in "] = {"ranked": [{"item": "not a candidate", "score": 5}]}
    config = supervise_config(retrieved, write_replay(tmp_path / "a.jsonl", answers), n_users=2)
    supervise(retrieved, config, tmp_path / "out")
    catalogue = catalogue_of(retrieved, config)
    for line in read_trace(tmp_path / "out"):
        assert set(line["fallbacks"]) == {"stage4_items"}
        run = catalogue.user_run(line["user"])
        for sub_name, block in zip(line["subcategories"], line["stage4"], strict=True):
            sub = catalogue.taxonomy.subcategories.index(sub_name)
            first = catalogue.local_candidates(run, sub)[:10]
            assert block["picks"] == [[item, 2] for item in first]  # fallback_score 2


def test_flat_variant_ranks_the_top_candidates(retrieved: Path, tmp_path: Path) -> None:
    config = supervise_config(retrieved, retrieved / "unused.jsonl")
    answers = replay_answers(catalogue_of(retrieved, config))
    replay = write_replay(tmp_path / "flat.jsonl", answers)
    config = supervise_config(retrieved, replay, n_users=2, stages={"method": "flat"})
    summary = supervise(retrieved, config, tmp_path / "out")
    assert set(summary["stages"]) == {"stage1_profile", "flat_rank"}
    candidates = Candidates.load(retrieved / "tw" / "candidates.parquet")
    for line in read_trace(tmp_path / "out"):
        top = candidates.for_users(np.array([line["user"]]))[0]
        assert [(r["item"], r["score"]) for r in line["final"]] == [
            (top[1], 4), (top[0], 4), (top[2], 1)]  # fmt: skip
        assert {r["source"] for r in line["final"]} == {"flat"}


class Recording(ReplayBackend):
    """The replay backend, keeping every request it answers."""

    def __init__(self, config: ReplayConfig) -> None:
        super().__init__(config)
        self.requests: list[Request] = []

    def generate(self, request: Request) -> Generation:
        self.requests.append(request)
        return super().generate(request)


def test_no_prompt_shows_a_test_item_as_history(retrieved: Path) -> None:
    config = supervise_config(retrieved, retrieved / "unused.jsonl")
    catalogue = catalogue_of(retrieved, config)
    replay = write_replay(retrieved / "answers.jsonl", replay_answers(catalogue))
    backend = Recording(ReplayConfig(path=replay))
    data = catalogue.dataset
    test = data.split("test")
    texts = data.item_text
    checked = 0
    with LLM(LLMConfig(cache=False), backend=backend) as llm:
        for user in eligible_users(config, data, catalogue.candidates)[:8]:
            run = catalogue.user_run(int(user))
            backend.requests.clear()
            run_stages([run], stages_for(catalogue), llm)  # one user: every request is theirs
            before = data.interactions.query("user_idx == @user and split != 'test'")
            only_test = set(test.loc[test["user_idx"] == user, "item_idx"]) - set(
                before["item_idx"]
            )
            assert len(backend.requests) > 3
            for request in backend.requests:
                context = request.messages[1]["content"].split("</context>")[0] + "\n"
                assert not any(f"- {texts[i]}\n" in context for i in only_test)
                assert all(f"- {texts[i]}\n" in context for i in before["item_idx"].iloc[-10:])
            checked += len(only_test)
    assert checked > 0  # the users had test items that could have leaked


# --- the embedding judge end to end -------------------------------------------------


def test_embedding_judge_run_writes_labels_inside_the_candidates(
    retrieved: Path, tmp_path: Path
) -> None:
    config = supervise_config(retrieved, None, n_users=5, stages={"subcategories": 3})
    summary = supervise(retrieved, config, tmp_path / "out")
    out = tmp_path / "out"
    assert summary["backend"]["generates_text"] is False
    assert summary["users"] == 5 and len(read_trace(out)) == 5
    data = Dataset.load(retrieved / "ds")
    edges = pd.read_parquet(out / "edges.parquet")
    assert list(edges.columns) == ["user", "item", "weight", "source"] and len(edges)
    history = data.interactions[data.interactions["split"] != "test"]
    assert edges.merge(history, left_on=["user", "item"],
                       right_on=["user_idx", "item_idx"]).empty  # fmt: skip
    assert ((edges["weight"] > 0) & (edges["weight"] <= 1)).all()
    triplets = pd.read_parquet(out / "triplets.parquet")
    assert triplets.groupby("user").size().max() <= 3
    labels = read_labels(data, out / "edges.parquet", out / "triplets.parquet")
    assert len(labels.edges) == len(edges)  # every written row maps into the Dataset
    assert (out / "taxonomy.json").is_file() and (out / "llm_calls.jsonl").is_file()
    again = supervise(retrieved, config, tmp_path / "again")  # resumed through the cache
    assert all(s["cached"] == s["calls"] for s in again["stages"].values())
    assert pd.read_parquet(tmp_path / "again" / "edges.parquet").equals(edges)


def test_user_selection(retrieved: Path) -> None:
    data = Dataset.load(retrieved / "ds")
    candidates = Candidates.load(retrieved / "tw" / "candidates.parquet")
    every = eligible_users(supervise_config(retrieved, None, n_users=None), data, candidates)
    history = data.interactions[data.interactions["split"] != "test"].groupby("user_idx").size()
    assert set(every) == {u for u in candidates.users if history.get(u, 0) >= 2}
    sample = eligible_users(supervise_config(retrieved, None, users="sample", n_users=4), data,
                            candidates)  # fmt: skip
    assert len(sample) == 4 and set(sample) <= set(every)
    cold = eligible_users(supervise_config(retrieved, None, users="cold", n_users=None), data,
                          candidates)  # fmt: skip
    cold_items = data.items["cold"].to_numpy()
    for user in every:
        row = candidates.for_users(np.array([user]))[0]
        assert (user in cold) == bool(cold_items[row[row >= 0]].any())


# --- a real SmolLM2 run -------------------------------------------------------------


def test_real_smollm2_run_for_two_users_through_the_local_server(
    retrieved: Path, tmp_path: Path, llama_server: str
) -> None:
    """Structure only (the 135M model proves the plumbing, not the quality): every
    stage asked the real server, every final item is one of the user's candidates or
    subcategory items and none of their history, and the labels are written."""
    small = {"subcategories": 2, "local_candidates": 8, "picks": 3, "final": 5, "evidence": 1}
    backend = {"kind": "openai", "base_url": llama_server, "model": "smollm2"}
    config = supervise_config(retrieved, None, n_users=2, stages=small,
                              llm={"backend": backend, "cache_dir": str(tmp_path)})  # fmt: skip
    summary = supervise(retrieved, config, tmp_path / "out")
    assert summary["backend"] == {"identity": "openai:smollm2", "generates_text": True}
    for stage in ("stage1_profile", "stage2_categories", "stage3_subcategories",
                  "stage4_items", "stage5_rerank"):  # fmt: skip
        counts = summary["stages"][stage]
        assert counts["calls"] >= counts["requests"] > 0 and counts["prompt_tokens"] > 0
    catalogue = catalogue_of(retrieved, config)
    for line in read_trace(tmp_path / "out"):
        run = catalogue.user_run(line["user"])
        assert len(line["final"]) <= 5 and line["final"]
        allowed = {i for b in line["stage4"] for i, _ in b["picks"]}
        assert {row["item"] for row in line["final"]} <= allowed
        assert allowed.isdisjoint(run.seen)
        assert all(0 <= row["score"] <= 5 for row in line["final"])
    assert (tmp_path / "out" / "edges.parquet").is_file()


def test_the_answer_budget_grows_with_the_longest_labels() -> None:
    from coldrec.supervision.stages import answer_budget

    labels = ["x" * 300, "y" * 30, "z" * 90]
    assert answer_budget(labels, 1) == 32 + 300 // 3 + 16
    assert answer_budget(labels, 2) == 32 + 390 // 3 + 32  # the two longest
    assert answer_budget(labels, 5) == 32 + 420 // 3 + 80


def test_allowed_values_are_grammar_safe_and_unique() -> None:
    from coldrec.supervision.catalogue import labelled

    got = labelled(['Comb 8" Black', 'Comb 8" Black', "Back\\slash"], [4, 9, 2])
    assert got == {"Comb 8'' Black": 4, "Comb 8'' Black (#9)": 9, "Back/slash": 2}
    # a title that itself ends in "(#id)" does not take another item's place
    got = labelled(["Brush (#7)", "Brush", "Brush"], [9, 3, 7])
    assert got == {"Brush (#7)": 9, "Brush": 3, "Brush (#7) (#7)": 7}


# --- labels of the validation view ------------------------------------------------


@pytest.fixture(scope="module")
def retrieved_with_view(tmp_path_factory: pytest.TempPathFactory, small_dataset: Dataset) -> Path:
    """As ``retrieved``, with early stopping: the run has a validation view to label."""
    root = tmp_path_factory.mktemp("supervision_view")
    small_dataset.save(root / "ds")
    config = validate(RetrieveConfig, {"top_m": 60, "model": {
        "dim": 16, "training": {"epochs": 2, "eval_every": 1}}})  # fmt: skip
    run_retrieval(config, root / "ds", root / "tw")
    return root


def test_the_validation_view_is_labelled_from_its_history_only(
    retrieved_with_view: Path, tmp_path: Path
) -> None:
    root = retrieved_with_view
    config = supervise_config(root, None, n_users=8, validation_view=True)
    summary = supervise(root, config, tmp_path / "out")
    data = Dataset.load(root / "ds")
    view = validation_view(data, 0.3)
    valid = tmp_path / "out" / "valid"
    assert (valid / "edges.parquet").is_file() and (valid / "summary.json").is_file()
    assert summary["validation_view"]["users"] == 8
    for part in (summary, summary["validation_view"]):
        assert {"precision", "recall", "random_precision", "random_recall"} <= set(part["quality"])
    # no view label names an item of its user's view history, and the view's prompts
    # showed only that history: its held-out items never appear as history
    edges = pd.read_parquet(valid / "edges.parquet")
    before = view.interactions[view.interactions["split"] != "test"]
    assert edges.merge(before, left_on=["user", "item"],
                       right_on=["user_idx", "item_idx"]).empty  # fmt: skip
    held = view.interactions[view.interactions["split"] == "test"]
    catalogue = _view_catalogue(root, config, view)
    replay = write_replay(tmp_path / "answers.jsonl", replay_answers(catalogue))
    backend = Recording(ReplayConfig(path=replay))
    texts, checked = data.item_text, 0
    with LLM(LLMConfig(cache=False), backend=backend) as llm:
        for user in eligible_users(config, view, catalogue.candidates)[:8]:
            backend.requests.clear()
            run_stages([catalogue.user_run(int(user))], stages_for(catalogue), llm)
            mine = before.loc[before["user_idx"] == user, "item_idx"]
            only_held = set(held.loc[held["user_idx"] == user, "item_idx"]) - set(mine)
            for request in backend.requests:
                context = request.messages[1]["content"].split("</context>")[0] + "\n"
                assert not any(f"- {texts[i]}\n" in context for i in only_held)
                assert all(f"- {texts[i]}\n" in context for i in mine.iloc[-10:])
            checked += len(only_held)
    assert checked > 0  # the view's users had held-out items that could have leaked
    # a ranker trained on the view reads the view's labels
    files = LabelFiles.of_run(tmp_path / "out", validation=True)
    assert files.read(view).edges.equals(read_labels(view, valid / "edges.parquet").edges)
    assert files.read(data).edges.equals(read_labels(data, tmp_path / "out" /
                                                     "edges.parquet").edges)  # fmt: skip


def _view_catalogue(root: Path, config: SuperviseConfig, view: Dataset) -> Catalogue:
    from coldrec.supervision.run import _catalogue

    tw = root / "tw"
    return _catalogue(config, view, tw / "valid_candidates.parquet", tw / "valid_model", None,
                      root / "scratch_view")  # fmt: skip


def test_validation_view_labels_need_a_retrieve_run_with_one(
    retrieved: Path, tmp_path: Path
) -> None:
    config = supervise_config(retrieved, None, n_users=2, validation_view=True)
    with pytest.raises(ConfigError, match=r"valid_candidates\.parquet"):
        supervise(retrieved, config, tmp_path / "out")
