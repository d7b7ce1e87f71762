"""The LLM as judge: κ, τ_b and AUC against scikit-learn and SciPy on random data, the
judged pairs, and whole judge runs with a scripted judge that knows the answers (the A/B
swaps decoded, the orders read, repeats and the comparison of two judges)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.data import Dataset
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.errors import DataError
from coldrec.llm.base import Backend, Generation, Request, request_key
from coldrec.llm.client import LLM
from coldrec.supervision import judge as judge_module
from coldrec.supervision.judge import (
    JudgeConfig,
    auc,
    cohen_kappa,
    confusion,
    judged_pairs,
    kendall_tau_b,
    run_judge,
)


@pytest.mark.parametrize("seed", range(5))
def test_the_statistics_agree_with_scikit_learn_and_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    b[:30] = a[:30]  # some agreement
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    x, y = rng.integers(0, 5, 40).astype(float), rng.integers(0, 3, 40).astype(float)  # ties
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic)
    labels = rng.integers(0, 2, 50)
    scores = rng.integers(0, 4, 50).astype(float)  # ties count half, as in roc_auc_score
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_confusion_and_degenerate_cases_by_hand() -> None:
    got = confusion(np.array([0, 1, 1, 3]), np.array([0, 1, 2, 3]), (0, 1, 2, 3))
    assert got.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert np.isnan(cohen_kappa(np.array([2, 2]), np.array([2, 2])))
    assert np.isnan(auc(np.array([1.0, 2.0]), np.array([1, 1])))
    assert np.isnan(kendall_tau_b(np.array([1.0, 1.0]), np.array([0.0, 1.0])))


def test_a_repeat_has_its_own_cache_key_and_the_first_answer_keeps_the_old_one() -> None:
    messages = [{"role": "user", "content": "q"}]
    first = request_key("x:y", Request(messages))
    assert request_key("x:y", Request(messages, sample=0)) == first
    assert request_key("x:y", Request(messages, sample=1)) != first


def test_the_judged_pairs(small_dataset: Dataset) -> None:
    config = JudgeConfig(users=20, positives=2, seed=3)
    pairs = judged_pairs(small_dataset, config)
    history = small_dataset.sequences(*HISTORY_SPLITS)
    test = small_dataset.split("test")
    trained = set(np.concatenate(history).tolist())
    assert pairs["user_idx"].nunique() == 20
    for user, rows in pairs.groupby("user_idx"):
        held = test.loc[test["user_idx"] == user, "item_idx"].drop_duplicates().tolist()
        assert len(history[user])
        assert rows.loc[rows["label"] == 1, "item_idx"].tolist() == held[:2]
        negatives = set(rows.loc[rows["label"] == 0, "item_idx"])
        assert len(negatives) == min(2, len(held))
        assert negatives <= trained and not negatives & (set(history[user].tolist()) | set(held))
    assert judged_pairs(small_dataset, config).equals(pairs)


class Knowing(Backend):
    """A judge that knows each user's held-out items (it tells users apart by the history
    in the prompt): grades them 3 (others 0), prefers them in pairs and ranks them first;
    its repeats (sample > 0) grade everything 3."""

    name = "knowing"

    def __init__(self, held_out: dict[frozenset[str], set[str]]) -> None:
        self.held_out = held_out
        self.first_graded: list[bool] = []
        """Per pointwise prompt: whether its first product is held out."""

    @property
    def identity(self) -> str:
        return "knowing:test"

    def generate(self, request: Request) -> Generation:
        prompt = request.messages[-1]["content"]
        history = prompt.split("<context>\n")[1].split("\n</context>")[0]
        held = self.held_out[frozenset(line[2:] for line in history.splitlines())]
        text = prompt.split("</context>")[-1]
        if request.stage == "judge_pointwise":
            titles = re.findall(r"^\d+\. (.*)$", text, flags=re.MULTILINE)
            grades = [3 if request.sample or t in held else 0 for t in titles]
            self.first_graded.append(titles[0] in held)
            return Generation(json.dumps({"grades": grades}))
        if request.stage == "judge_pairwise":
            pairs = re.findall(r"^\d+\. A: (.*) \| B: (.*)$", text, flags=re.MULTILINE)
            return Generation(json.dumps({"choices": ["A" if a in held else "B"
                                                      for a, _ in pairs]}))  # fmt: skip
        titles = re.findall(r"^(\d+)\. (.*)$", text, flags=re.MULTILINE)
        ranking = sorted((int(n) for n, _ in titles), key=lambda n: titles[n - 1][1] not in held)
        return Generation(json.dumps({"ranking": ranking}))


def knowing_run(dataset: Dataset, tmp_path: Path, config: JudgeConfig) -> tuple[Path, Knowing]:
    """A judge run of the knowing judge (a user's held-out and negative items must differ
    in text, and users in history, for it to know)."""
    pairs = judged_pairs(dataset, config)
    texts = np.array(dataset.item_text)
    history = dataset.sequences(*HISTORY_SPLITS)
    held_out = {}
    for user, rows in pairs.groupby("user_idx"):
        held = set(texts[rows.loc[rows["label"] == 1, "item_idx"]])
        assert not held & set(texts[rows.loc[rows["label"] == 0, "item_idx"]])
        shown = frozenset(texts[history[user][-config.history_items :]])
        assert shown not in held_out
        held_out[shown] = held
    data_dir = tmp_path / "data"
    dataset.save(data_dir)
    out = tmp_path / "knowing"
    backend = Knowing(held_out)
    original = judge_module.open_llm
    judge_module.open_llm = lambda job, log=None: LLM(job.llm, log, backend=backend)  # type: ignore[assignment,misc]
    try:
        run_judge(config, data_dir, out)
    finally:
        judge_module.open_llm = original  # type: ignore[misc]
    return out, backend


def test_a_judge_that_knows_scores_perfectly_and_repeats_are_compared(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    config = JudgeConfig(users=15, positives=2, repeats=2, llm={"cache": False})
    out, backend = knowing_run(small_dataset, tmp_path, config)
    summary = json.loads((out / "summary.json").read_text())
    # shown shuffled: a position-biased judge cannot read the labels off the order
    assert 0 < sum(backend.first_graded) < len(backend.first_graded)
    assert summary["grade_auc"] == 1.0 and summary["listwise_auc"] == 1.0
    assert summary["pairwise_accuracy"] == 1.0  # the A/B swaps decoded
    assert summary["faults"]["pointwise"]["invalid_rate"] == 0.0
    judged = pd.read_parquet(out / "judged.parquet")
    assert (judged["grade"] == 3 * judged["label"]).all()
    by_user = judged.groupby("user_idx")
    taus = [kendalltau(r["list_points"], r["label"]).statistic for _, r in by_user]
    assert summary["listwise_tau_b"] == pytest.approx(np.nanmean(taus))
    # the repeat grades everything 3: κ against the first answer is 0, alike where label 1
    consistency = summary["self_consistency"]
    kappa = cohen_kappa_score(judged["grade"], judged["grade_1"])
    assert consistency["mean_kappa"] == pytest.approx(kappa)
    assert consistency["all_alike"] == pytest.approx(judged["label"].mean())


def test_two_judges_compared_on_the_same_pairs(small_dataset: Dataset, tmp_path: Path) -> None:
    config = JudgeConfig(users=15, positives=2, llm={"cache": False})
    knowing, _ = knowing_run(small_dataset, tmp_path, config)
    embedding = tmp_path / "embedding"
    stand_in = JudgeConfig.model_validate({**config.model_dump(),
                                           "llm": {"backend": {"kind": "embedding"}}})  # fmt: skip
    summary = run_judge(stand_in, tmp_path / "data", embedding, against=knowing)
    assert summary["backend"]["llm"] is False
    a = pd.read_parquet(embedding / "judged.parquet")["grade"]
    b = pd.read_parquet(knowing / "judged.parquet")["grade"]
    assert summary["against"]["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert np.array(summary["against"]["confusion"]).sum() == len(a)
    assert summary["against"]["confusion"] == pd.crosstab(a, b).reindex(
        index=range(4), columns=range(4), fill_value=0).to_numpy().tolist()  # fmt: skip
    with pytest.raises(DataError, match="same data, users"):
        run_judge(stand_in.model_copy(update={"seed": 9}), tmp_path / "data",
                  tmp_path / "other", against=knowing)  # fmt: skip


def test_the_judge_command_with_the_stand_in(small_dataset: Dataset, tmp_path: Path) -> None:
    small_dataset.save(tmp_path / "data")
    result = CliRunner().invoke(app, ["judge", "--dataset", str(tmp_path / "data"), "--backend",
                                      "embedding", "--users", "12", "--out",
                                      str(tmp_path / "judge")])  # fmt: skip
    assert result.exit_code == 0, result.stdout
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    assert summary["users"] == 12 and summary["backend"]["note"].startswith("no LLM")
    assert f"grade AUC {summary['grade_auc']:.3f}" in result.stdout
    judged = pd.read_parquet(tmp_path / "judge" / "judged.parquet")
    # the stand-in's grade is its cosine mapped onto 0–3: the order of grades follows it
    assert (np.diff(judged.sort_values("list_points")["grade"].to_numpy()) >= 0).all()
