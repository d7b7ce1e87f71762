"""LAGCL4Rec's data level: augmentation reads only the history, never adds what a user
has, keeps the LLM's top and bottom scores; the graph rankers take the augmented edges
and negatives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from coldrec.data import Dataset
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.errors import ConfigError, DataError
from coldrec.experiment.evaluate import EvaluateConfig, run_evaluation
from coldrec.graph import GraphRecommender, LightGCNConfig
from coldrec.graph.lightgcn import _Trainer
from coldrec.supervision.augment import AugmentConfig, read_augmentation, run_augmentation

EMBEDDING = {"backend": {"kind": "embedding"}}


def without_test(dataset: Dataset) -> Dataset:
    """The Dataset with its test rows removed (counts updated)."""
    rows = dataset.interactions.loc[dataset.interactions["split"] != "test"]
    return dataclasses.replace(dataset, interactions=rows.reset_index(drop=True),
                               meta={**dataset.meta, **Dataset.count_stats(
                                   rows, dataset.items, dataset.users)})  # fmt: skip


def test_augmentation_reads_only_the_history_and_never_adds_a_users_item(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    config = AugmentConfig(llm=EMBEDDING, sparse_below=15, candidates=64, keep_share=0.05)
    small_dataset.save(tmp_path / "data")
    without_test(small_dataset).save(tmp_path / "no_test")
    summary = run_augmentation(config, tmp_path / "data", tmp_path / "a")
    run_augmentation(config, tmp_path / "no_test", tmp_path / "b")
    first = pd.read_parquet(tmp_path / "a" / "augmented.parquet")
    assert first.equals(pd.read_parquet(tmp_path / "b" / "augmented.parquet"))
    history = small_dataset.sequences(*HISTORY_SPLITS)
    assert not any(i in set(history[u]) for u, i in zip(first["user_idx"], first["item_idx"],
                                                        strict=True))  # fmt: skip
    lengths = np.array([len(h) for h in history])
    assert set(first["user_idx"]) <= set(np.flatnonzero((lengths > 0) & (lengths < 15)))
    per_user = first.groupby(["user_idx", "kind"]).size()
    assert set(per_user) == {round(0.05 * 64)}  # the top and the bottom 5% of 64
    assert summary["positives"] == summary["negatives"] == len(first) // 2
    assert not summary["backend"]["llm"]


def test_the_llm_scores_keep_the_top_and_bottom_share(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    replay = tmp_path / "answers.jsonl"
    lines = [
        {"contains": "Describe this shopper", "answer": json.dumps({"profile": "x"})},
        {"contains": "Score each of the 4", "answer": json.dumps({"scores": [9, 1, 5, 5]})},
    ]
    replay.write_text("".join(json.dumps(line) + "\n" for line in lines))
    llm = {"backend": {"kind": "replay", "path": str(replay)}, "cache": False}
    config = AugmentConfig(llm=llm, sparse_below=15, users=3, candidates=8, chunk=4,
                           keep_share=0.125)  # fmt: skip
    small_dataset.save(tmp_path / "data")
    summary = run_augmentation(config, tmp_path / "data", tmp_path / "out")
    frame = pd.read_parquet(tmp_path / "out" / "augmented.parquet")
    profiles = pd.read_parquet(tmp_path / "out" / "profiles.parquet")
    assert profiles["profile"].tolist() == ["x"] * 3
    # per user the 8 candidates score 9 1 5 5 9 1 5 5: one positive (the first 9), one
    # negative (a 1), as the kept 12.5%
    assert frame.groupby("user_idx")["kind"].value_counts().tolist() == [1, 1] * 3
    assert sorted(set(frame["score"])) == [1.0, 9.0]
    assert summary["backend"]["llm"] and summary["llm"]["augment_score"]["calls"] == 6


def test_scores_out_of_range_are_counted_and_never_kept(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    replay = tmp_path / "answers.jsonl"
    lines = [  # 11 is past the 0-10 scale (a grammar may let a bound through)
        {"contains": "Describe this shopper", "answer": json.dumps({"profile": "x"})},
        {"contains": "Score each of the 4", "answer": json.dumps({"scores": [11, 1, 5, 5]})},
    ]
    replay.write_text("".join(json.dumps(line) + "\n" for line in lines))
    llm = {"backend": {"kind": "replay", "path": str(replay)}, "cache": False}
    config = AugmentConfig(llm=llm, sparse_below=15, users=3, candidates=8, chunk=4)
    small_dataset.save(tmp_path / "data")
    summary = run_augmentation(config, tmp_path / "data", tmp_path / "out")
    assert summary["unscored"] == 3 * 8 and summary["positives"] == summary["negatives"] == 0
    assert pd.read_parquet(tmp_path / "out" / "augmented.parquet").empty


def test_graph_rankers_take_augmented_edges_and_negatives(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    small_dataset.save(tmp_path / "data")
    config = AugmentConfig(llm=EMBEDDING, sparse_below=15, candidates=64, keep_share=0.05)
    run_augmentation(config, tmp_path / "data", tmp_path / "aug")
    augmented = read_augmentation(tmp_path / "aug", small_dataset)
    model = GraphRecommender(LightGCNConfig(dim=8, disliked_share=1.0))
    model.augmentation = augmented
    trainer = model._start(small_dataset, torch.Generator().manual_seed(0))
    assert isinstance(trainer, _Trainer)
    positives = augmented.loc[augmented["kind"] == "positive"]
    codes = positives["user_idx"] * small_dataset.n_items + positives["item_idx"]
    assert torch.isin(torch.tensor(codes.to_numpy()), trainer.history.pairs).all()  # new edges
    negatives = augmented.loc[augmented["kind"] == "negative"]
    user = int(negatives["user_idx"].iloc[0])
    disliked = set(negatives.loc[negatives["user_idx"] == user, "item_idx"])
    users = torch.full((50,), user)
    drawn = trainer.negatives(users, torch.zeros(50, dtype=torch.long))
    assert set(drawn.flatten().tolist()) <= disliked  # share 1: always the user's negatives
    with pytest.raises(DataError, match=r"no augmented\.parquet"):
        read_augmentation(tmp_path, small_dataset)


def test_data_level_and_the_augmentation_go_together(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    small_dataset.save(tmp_path / "data")
    wanting = EvaluateConfig.model_validate({"model": {"kind": "lightgcn", "data_level": True}})
    with pytest.raises(ConfigError, match=r"data_level .* go together"):
        run_evaluation(wanting, tmp_path / "data", tmp_path / "out")
    plain = EvaluateConfig.model_validate({"model": {"kind": "lightgcn"}})
    with pytest.raises(ConfigError, match=r"data_level .* go together"):
        run_evaluation(plain, tmp_path / "data", tmp_path / "out", augmented=tmp_path)
