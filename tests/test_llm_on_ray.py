"""LLM batches on Ray (``engine: ray`` of ``coldrec tag``, ``augment``, ``judge``,
``llm-rank``): the outputs, the per-stage accounting and the call log of the local
engine for the same answers, answers back in request order from several actors; on two
real llama.cpp servers (SmolLM2), the Ray job's answers fill the cache the local engine
then reads without a fresh call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.errors import ConfigError
from coldrec.experiment.llm_rank import LLMRankConfig
from coldrec.llm import LLM
from coldrec.llm.engines import open_llm
from coldrec.supervision.augment import AugmentConfig, run_augmentation
from coldrec.supervision.judge import JudgeConfig
from coldrec.supervision.run import SuperviseConfig
from coldrec.supervision.tags import TagConfig, run_tagging

pytest.importorskip("ray", reason="needs Ray (installed by make test)")
pytestmark = pytest.mark.usefixtures("ray_runtime")

from coldrec.llm.on_ray import RayLLM  # noqa: E402 (needs Ray)

ON_RAY = {"engine": "ray", "ray": {"actors": 2, "requests_per_batch": 3}}


def replay(path: Path, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """LLM settings answering from ``lines`` (first matching ``contains`` wins), uncached."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {"backend": {"kind": "replay", "path": str(path)}, "cache": False}


def without_seconds(totals: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {stage: {k: v for k, v in counts.items() if k not in ("latency_s", "busy_s")}
            for stage, counts in totals.items()}  # fmt: skip


def logged_calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "config", [SuperviseConfig, TagConfig, AugmentConfig, JudgeConfig, LLMRankConfig]
)
def test_every_llm_job_takes_the_engine_settings(config: type, tmp_path: Path) -> None:
    llm = replay(tmp_path / "answers.jsonl", [])
    with open_llm(validate(config, {"llm": llm})) as here:
        assert type(here) is LLM
    with open_llm(validate(config, {"llm": llm, **ON_RAY})) as on_ray:
        assert isinstance(on_ray, RayLLM) and on_ray.ray_config.actors == 2
    with pytest.raises(ConfigError, match=r"need llm\.backend\.kind=openai"):
        validate(config, {"engine": "ray", "ray": {"endpoints": ["http://x/v1"]}})


def test_tags_on_ray_equal_the_local_engine(small_dataset: Dataset, tmp_path: Path) -> None:
    """Proposal then tagging; each item's answer depends on its title, so an answer
    returned to the wrong request would change the tags."""
    titles = small_dataset.items["title"].tolist()
    vocabulary = ["organic", "vegan", "matte", "unscented"]
    lines = [{"contains": "Propose up to", "answer": json.dumps({"tags": vocabulary})}]
    lines += [{"contains": title, "answer": json.dumps({"tags": vocabulary[k % 4 : k % 4 + 2]})}
              for k, title in enumerate(titles[:40])]  # fmt: skip
    lines.append({"contains": "Which of the tags", "answer": "no JSON here"})  # fails, counted
    settings = {"llm": replay(tmp_path / "answers.jsonl", lines), "synonym_threshold": 0.99}
    folder = small_dataset.save(tmp_path / "ds")
    local = run_tagging(validate(TagConfig, settings), folder, tmp_path / "local")
    on_ray = run_tagging(validate(TagConfig, {**settings, **ON_RAY}), folder, tmp_path / "ray")
    for name in ("vocabulary.json", "tags.parquet"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
    tags = pd.read_parquet(tmp_path / "ray" / "tags.parquet")
    assert tags.groupby("item_idx")["tag"].agg(list)[5] == vocabulary[1:3]
    assert without_seconds(on_ray["llm"]) == without_seconds(local["llm"])
    unanswered = sum(not any(t in text for t in titles[:40]) for text in small_dataset.item_text)
    assert on_ray["llm"]["tag_items"]["failures"] == unanswered > 100
    assert len(logged_calls(tmp_path / "ray" / "calls.jsonl")) == len(
        logged_calls(tmp_path / "local" / "calls.jsonl"))  # fmt: skip


def test_augmentation_on_ray_equals_the_local_engine(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    """A scoring prompt's answer depends on the first of its four titles found in the
    replay, so scores returned out of order would change what is kept."""
    titles = small_dataset.items["title"].tolist()
    lines = [{"contains": "Describe this shopper", "answer": json.dumps({"profile": "likes it"})}]
    lines += [{"contains": title, "answer": json.dumps({"scores": [k % 11, 3, 10 - k % 11, 5]})}
              for k, title in enumerate(titles)]  # fmt: skip
    settings = {"llm": replay(tmp_path / "answers.jsonl", lines), "sparse_below": 15,
                "users": 6, "candidates": 16, "chunk": 4, "keep_share": 0.125}  # fmt: skip
    folder = small_dataset.save(tmp_path / "ds")
    local = run_augmentation(validate(AugmentConfig, settings), folder, tmp_path / "local")
    on_ray = run_augmentation(validate(AugmentConfig, {**settings, **ON_RAY}), folder,
                              tmp_path / "ray")  # fmt: skip
    for name in ("profiles.parquet", "augmented.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / name),
                                      pd.read_parquet(tmp_path / "ray" / name))  # fmt: skip
    augmented = pd.read_parquet(tmp_path / "ray" / "augmented.parquet")
    assert augmented["score"].nunique() > 2  # the answers differ from prompt to prompt
    assert without_seconds(on_ray["llm"]) == without_seconds(local["llm"])
    assert on_ray["llm"]["augment_score"]["requests"] == 6 * 16 / 4


def test_tagging_on_two_real_servers_fills_the_cache_the_local_engine_reads(
    small_dataset: Dataset, tmp_path: Path, llama_server: str, second_server: str
) -> None:
    """``coldrec tag --engine ray`` over two SmolLM2 replicas; the local engine on the same
    cache then makes no fresh call and writes the same tags."""
    folder = small_dataset.save(tmp_path / "ds")
    (tmp_path / "vocabulary.json").write_text(json.dumps({"tags": ["floral", "matte", "vegan"]}))
    settings = {"items": 12, "llm": {"backend": {"kind": "openai", "model": "smollm2"},
                                     "cache_dir": str(tmp_path / "cache")}}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    command = [str(Path(sys.executable).parent / "coldrec"), "tag", "--dataset", str(folder),
               "--config", str(tmp_path / "config.yaml"),
               "--vocabulary", str(tmp_path / "vocabulary.json")]  # fmt: skip
    subprocess.run([*command, "--out", str(tmp_path / "ray"), "--engine", "ray",
                    "--endpoint", llama_server, "--endpoint", second_server],
                   check=True, capture_output=True)  # fmt: skip
    calls = logged_calls(tmp_path / "ray" / "calls.jsonl")
    fresh = [c for c in calls if c["kind"] == "call" and not c["cached"]]
    assert len(fresh) >= 12 and all(c["error"] is None for c in fresh)
    assert {c["backend"] for c in calls} == {"openai:smollm2"}
    subprocess.run([*command, "--out", str(tmp_path / "local"), "--base-url", llama_server],
                   check=True, capture_output=True)  # fmt: skip
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert local["llm"]["tag_items"]["calls"] == local["llm"]["tag_items"]["cached"] >= 12
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray" / "tags.parquet"),
                                  pd.read_parquet(tmp_path / "local" / "tags.parquet"))  # fmt: skip
