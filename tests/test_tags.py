"""``coldrec tag``: the attribute-tag vocabulary and the items' tags (STARS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.errors import DataError
from coldrec.supervision.tags import (
    TagConfig,
    normalise_tag,
    read_tags,
    run_tagging,
    tag_agreement,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset_folder(small_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_dataset.save(tmp_path_factory.mktemp("tags") / "ds")


def config(root: Path, backend: dict, **settings: object) -> TagConfig:
    llm = {"backend": backend, "cache_dir": str(root / "cache")}
    return validate(TagConfig, {"llm": llm, **settings})


def test_tags_are_normalised() -> None:
    assert normalise_tag("  Essential Oils ") == "essential oil"
    assert normalise_tag("Fragrance-Free!") == "fragrance-free"
    assert normalise_tag("Glass") == "glass"  # a double s is not a plural
    assert normalise_tag("Berries") == "berry"
    assert normalise_tag("hair_care   products for curly hair") == "hair care product"
    assert normalise_tag("!!!") == ""


def test_embedding_tagger_uses_the_vocabulary_and_its_threshold(
    dataset_folder: Path, small_dataset: Dataset, tmp_path: Path
) -> None:
    settings = config(tmp_path, {"kind": "embedding"}, vocabulary_size=12, max_tags=3,
                      threshold=0.2)  # fmt: skip
    summary = run_tagging(settings, dataset_folder, tmp_path / "t")
    vocabulary = json.loads((tmp_path / "t" / "vocabulary.json").read_text())
    frame = pd.read_parquet(tmp_path / "t" / "tags.parquet")
    assert summary["backend"]["llm"] is False and "no LLM" in summary["backend"]["note"]
    assert 0 < len(vocabulary["tags"]) <= 12 and summary["vocabulary"] == len(vocabulary["tags"])
    assert set(frame["tag"]) <= set(vocabulary["tags"])
    assert frame.groupby("item").size().max() <= 3
    assert not frame.duplicated(["item", "tag"]).any()
    assert summary["frequency"] == frame["tag"].value_counts().to_dict()
    assert len(summary["sample"]) == 20 and summary["items"] == small_dataset.n_items
    # merged proposals point at kept tags, and every kept tag was proposed
    assert set(vocabulary["merged"].values()) <= set(vocabulary["tags"])
    assert set(vocabulary["tags"]) <= set(vocabulary["proposals"])
    # a higher threshold keeps a subset of the same tags
    stricter = run_tagging(settings.model_copy(update={"threshold": 0.4}), dataset_folder,
                           tmp_path / "strict", tmp_path / "t" / "vocabulary.json")  # fmt: skip
    strict = pd.read_parquet(tmp_path / "strict" / "tags.parquet")
    pairs = set(map(tuple, frame[["item", "tag"]].to_numpy()))
    assert set(map(tuple, strict[["item", "tag"]].to_numpy())) <= pairs
    assert stricter["tags_per_item"] < summary["tags_per_item"]


def test_llm_tags_stay_in_the_vocabulary_and_a_failed_answer_gives_none(
    dataset_folder: Path, small_dataset: Dataset, tmp_path: Path
) -> None:
    vocabulary = tmp_path / "vocabulary.json"
    vocabulary.write_text(json.dumps({"tags": ["organic", "vegan", "matte"]}))
    first, second = small_dataset.items["title"].iloc[[0, 1]]
    answers = [  # item 0: two tags and one outside the vocabulary; item 1: no JSON at all
        {"contains": first, "answer": json.dumps({"tags": ["vegan", "glitter", "organic"]})},
        {"contains": second, "answer": "I cannot tell"},
        {"contains": "Which of the tags", "answer": json.dumps({"tags": []})},
    ]
    replay = tmp_path / "answers.jsonl"
    replay.write_text("\n".join(json.dumps(a) for a in answers) + "\n")
    settings = config(tmp_path, {"kind": "replay", "path": str(replay)})
    summary = run_tagging(settings, dataset_folder, tmp_path / "t", vocabulary)
    frame = pd.read_parquet(tmp_path / "t" / "tags.parquet")
    by_item = frame.groupby("item")["tag"].agg(list).to_dict()
    ids = small_dataset.items["item"].tolist()
    assert by_item == {ids[0]: ["vegan", "organic"]}  # the answer's order, glitter dropped
    assert summary["backend"]["llm"] is True and summary["tagged_items"] is None
    assert summary["llm"]["tag_items"]["requests"] == small_dataset.n_items
    assert summary["llm"]["tag_items"]["failures"] == 1  # item 1's answer had no JSON
    # a sample: that many items asked, their ids recorded; answers come from the cache
    sampled = run_tagging(settings.model_copy(update={"items": 5}), dataset_folder,
                          tmp_path / "s", vocabulary)  # fmt: skip
    assert len(sampled["tagged_items"]) == 5 and set(sampled["tagged_items"]) <= set(ids)
    assert sampled["llm"]["tag_items"]["requests"] == 5


def test_tags_read_back_as_a_multi_hot_matrix_with_clear_errors(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    ids = small_dataset.items["item"].tolist()
    path = tmp_path / "tags.parquet"
    pd.DataFrame({"item": [ids[0], ids[0], ids[3]], "tag": ["b", "a", "b"]}).to_parquet(path)
    matrix, vocabulary = read_tags(path, small_dataset)
    assert vocabulary == ["a", "b"] and matrix.shape == (small_dataset.n_items, 2)
    assert matrix[0].tolist() == [1, 1] and matrix[3].tolist() == [0, 1] and matrix.sum() == 3
    pd.DataFrame({"item": [ids[0], "nope"], "tag": ["a", "a"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"row 2: field 'item' 'nope'"):
        read_tags(path, small_dataset)
    pd.DataFrame({"item": [ids[0]], "tag": ["c"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"row 1: field 'tag' 'c' is not in the vocabulary"):
        read_tags(path, small_dataset, ["a", "b"])


def test_tag_agreement_is_the_mean_jaccard_by_hand() -> None:
    a = pd.DataFrame({"item": ["x", "x", "y"], "tag": ["red", "soft", "blue"]})
    b = pd.DataFrame({"item": ["x", "y", "y"], "tag": ["red", "blue", "hard"]})
    # x: {red, soft} vs {red}: 1/2; y: {blue} vs {blue, hard}: 1/2; z: none in both: 1
    assert tag_agreement(a, b, ["x", "y", "z"]) == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert np.isnan(tag_agreement(a, b, []))


def test_tag_command_prints_the_vocabulary_and_refuses_a_bad_vocabulary(
    dataset_folder: Path, tmp_path: Path
) -> None:
    base = ["tag", "--dataset", str(dataset_folder), "--backend", "embedding",
            "--set", f"llm.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "no LLM" in result.output and "tags per item" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tags": []}))
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "u"), "--vocabulary", str(bad)])
    assert result.exit_code == 3 and "field 'tags' must be a non-empty list" in result.stderr
    assert not (tmp_path / "u").exists()  # refused before anything was written


def test_stars_evaluates_with_the_tags_and_other_models_refuse_them(
    dataset_folder: Path, tmp_path: Path
) -> None:
    tagged = run_tagging(config(tmp_path, {"kind": "embedding"}, vocabulary_size=8),
                         dataset_folder, tmp_path / "t")  # fmt: skip
    assert tagged["items_with_tags"] > 0
    tags = str(tmp_path / "t" / "tags.parquet")
    args = ["evaluate", "--dataset", str(dataset_folder), "--tags", tags,
            "--set", "model.dim=32", "--set", "model.training.epochs=2",
            "--set", "model.n_negatives=10"]  # fmt: skip
    result = runner.invoke(app, [*args, "--model", "stars", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "s" / "metrics-seed0.json").read_text())
    assert metrics["inputs"]["tags"].endswith("tags.parquet")
    saved = json.loads((tmp_path / "s" / "model" / "model.json").read_text())
    assert saved["config"]["kind"] == "stars"
    result = runner.invoke(app, ["evaluate", "--dataset", str(dataset_folder), "--tags", tags,
                                 "--out", str(tmp_path / "p")])  # fmt: skip
    assert result.exit_code == 2 and "tags are read by the stars model only" in result.stderr
