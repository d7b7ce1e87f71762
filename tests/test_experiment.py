"""The experiment runner: steps cached by key, forced reruns, config checks, and a run
killed during the LLM stages that resumes to the same metrics as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldrec.config import merge, read_yaml, validate
from coldrec.errors import ConfigError, LLMError
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.run import run_experiment

TINY: dict[str, Any] = {
    "name": "tiny",
    "seeds": [0],
    "data": {"source": {"kind": "synthetic", "n_users": 300, "n_items": 200, "seed": 5}},
    "retrieve": {"top_m": 60, "model": {"dim": 16, "training": {"epochs": 2}}},
    "supervise": {
        "llm": {"backend": {"kind": "embedding"}},
        "n_users": 60,
        "chunk_size": 4,
        "stages": {"subcategories": 3, "local_candidates": 20, "picks": 4, "final": 8},
    },
    "losses": ["sim", "pair"],
    "rank": {"model": {"dim": 16, "training": {"epochs": 3, "eval_every": 1}}},
    "baselines": {"popularity": {"model": {"kind": "popularity"}}},
}


def ran(records: list[dict[str, Any]]) -> list[str]:
    return [r["folder"] for r in records if r["ran"]]


def metrics(out: Path) -> dict[str, Any]:
    found = json.loads((out / "rank" / "seed0" / "metrics-seed0.json").read_text())
    epochs = {name: t["epochs_run"] for name, t in found["training"].items()}
    return {"epochs": epochs, **{key: found[key] for key in ("segments", "counts", "fusion")}}


def test_steps_are_cached_by_key_and_forced_reruns_cascade(tmp_path: Path) -> None:
    config = validate(ExperimentConfig, TINY)
    out = tmp_path / "run"
    first = run_experiment(config, out)
    assert ran(first) == ["data", "retrieve", "supervise", "rank/seed0",
                          "baselines/popularity/seed0", "report"]  # fmt: skip
    assert ran(run_experiment(config, out)) == []
    report = (out / "report" / "report.md").read_text()
    assert "| tiny (n=1) |" in report and "| popularity (n=1) |" in report
    assert "## LLM accounting" in report and "no language model" in report
    changed = validate(ExperimentConfig, {**TINY, "rank": {"model": {"dim": 8, "training": {
        "epochs": 3, "eval_every": 1}}}})  # fmt: skip
    assert ran(run_experiment(changed, out)) == ["rank/seed0", "report"]
    forced = run_experiment(changed, out, force="supervise")
    assert ran(forced) == ["supervise", "rank/seed0", "baselines/popularity/seed0", "report"]
    moved = tmp_path / "moved"
    out.rename(moved)
    assert ran(run_experiment(changed, moved)) == []  # keys do not depend on the folder
    other = run_experiment(validate(ExperimentConfig, {**TINY, "name": "other"}), tmp_path / "b")
    assert ran(other) == ["rank/seed0", "report"]  # shares every step before the ranker
    remade = run_experiment(validate(ExperimentConfig, {**TINY, "name": "other"}), tmp_path / "b",
                            force="baselines")  # fmt: skip
    assert ran(remade) == ["baselines/popularity/seed0", "report"]
    assert ran(run_experiment(changed, moved)) == ["report"]  # it read the old baseline
    (tmp_path / "c" / "data").mkdir(parents=True)  # someone's folder: nothing written there
    with pytest.raises(ConfigError, match="is not a run folder of coldrec run"):
        run_experiment(changed, tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["data"]
    with pytest.raises(ConfigError, match="force must be one of"):
        run_experiment(changed, moved, force="nonsense")


def test_configs_are_checked_when_read() -> None:
    with pytest.raises(ConfigError, match="need a supervise node"):
        validate(ExperimentConfig, {**TINY, "supervise": None})
    with pytest.raises(ConfigError, match=r"rank\.modle: Extra inputs"):
        validate(ExperimentConfig, {**TINY, "rank": {"modle": {}}})
    with pytest.raises(ConfigError, match="unknown_field"):
        validate(ExperimentConfig, {**TINY, "unknown_field": 1})
    with pytest.raises(ConfigError, match="upstream_seed"):
        validate(ExperimentConfig, {**TINY, "retrieve": {"seed": 3}})
    with pytest.raises(ConfigError, match=r"supervise\.stages\.picks"):
        validate(ExperimentConfig, {**TINY, "supervise": {"stages": {"picks": 0}}})


def test_a_run_killed_during_supervision_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY))
    coldrec = str(Path(sys.executable).with_name("coldrec"))
    killed = tmp_path / "killed"
    process = subprocess.Popen([coldrec, "-q", "run", str(config_file), "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    traces = ".store/.supervise-*.tmp/.trace.jsonl.*.tmp"  # the trace being written
    while not any(t.read_text().count("\n") >= 2 for t in tmp_path.glob(traces)):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "supervise").exists() and (killed / "retrieve" / "step.json").is_file()
    resumed = run_experiment(validate(ExperimentConfig, TINY), killed)
    assert ran(resumed)[0] == "supervise"  # the finished steps were kept
    calls = json.loads((killed / "supervise" / "summary.json").read_text())["stages"]
    assert sum(s["cached"] for s in calls.values()) > 0  # answers made before the kill
    fresh = tmp_path / "fresh"
    own_cache = {"backend": {"kind": "embedding"}, "cache_dir": str(tmp_path)}
    uninterrupted = {**TINY, "supervise": {**TINY["supervise"], "llm": own_cache}}
    run_experiment(validate(ExperimentConfig, uninterrupted), fresh, store=tmp_path / "other")
    assert metrics(killed) == metrics(fresh)


REPRODUCE = """
import json, sys
from pathlib import Path
from coldrec.data import Dataset
from coldrec.data.candidates import Candidates
from coldrec.eval.protocol import evaluate
from coldrec.rank.fusion import FusedRanker
from coldrec.retrieval.two_tower import TwoTower
from coldrec.training.runs import json_safe

run = Path(sys.argv[1])
data = Dataset.load(run / "data")
candidates = Candidates.load(run / "retrieve" / "candidates.parquet")
models = {"rank/seed0": FusedRanker.load(run / "rank" / "seed0" / "model", data),
          "retrieve": TwoTower.load(run / "retrieve" / "model", data)}
print(json.dumps({name: json_safe(evaluate(model, data, candidates=candidates)["segments"])
                  for name, model in models.items()}))
"""


def test_a_finished_demo_run_keeps_models_that_give_its_metrics_in_a_new_process(
    tmp_path: Path,
) -> None:
    demo = read_yaml(Path(__file__).parents[1] / "configs" / "demo.yaml")
    quick = {"supervise": {"llm": {"backend": {"kind": "embedding"}}},
             "rank": {"model": {"training": {"epochs": 4}}}}  # fmt: skip
    run = tmp_path / "demo"
    run_experiment(validate(ExperimentConfig, merge(demo, quick)), run)
    found = subprocess.run([sys.executable, "-c", REPRODUCE, str(run)], check=True,
                           capture_output=True, text=True).stdout  # fmt: skip
    for folder, segments in json.loads(found).items():
        written = json.loads((run / folder / "metrics-seed0.json").read_text())["segments"]
        assert segments == written  # exactly, every metric of every segment


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_experiment_config_is_valid(path: Path) -> None:
    config = validate(ExperimentConfig, read_yaml(path))
    assert config.name == path.stem  # the run folder is named after the file


def test_an_unreachable_llm_server_fails_the_run_at_once(tmp_path: Path) -> None:
    down = {"backend": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}, "retries": 0,
            "cache_dir": str(tmp_path)}  # fmt: skip
    config = validate(ExperimentConfig, merge(TINY, {"supervise": {"llm": down}}))
    with pytest.raises(LLMError, match=r"openai:local does not answer: .*Connection refused"):
        run_experiment(config, tmp_path / "run")
    assert not (tmp_path / "run" / "supervise").exists()  # no labels made of fallbacks
    assert (tmp_path / "run" / "retrieve" / "model").is_dir()  # the steps before are kept


def test_stages_that_mostly_fall_back_are_warned_about_first_in_the_report(
    tmp_path: Path,
) -> None:
    replay = tmp_path / "answers.jsonl"  # valid JSON that names nothing allowed
    answer = {"items": ["none of these"], "ranked": [], "profile": "x", "keywords": []}
    replay.write_text(json.dumps({"contains": "", "answer": json.dumps(answer)}) + "\n")
    llm = {"backend": {"kind": "replay", "path": str(replay)}, "cache": False}
    config = validate(ExperimentConfig, merge(TINY, {"supervise": {"llm": llm}}))
    run_experiment(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "supervise" / "summary.json").read_text())
    assert any(w.startswith("stage2_categories fell back for 100%") for w in summary["warnings"])
    report = (tmp_path / "run" / "report" / "report.md").read_text().splitlines()
    assert report[2].startswith("> **Warning:** ") and "fell back for 100%" in report[2]


def test_a_stage_without_a_single_usable_answer_stops_the_labels() -> None:
    from coldrec.llm import LLM, LLMConfig
    from coldrec.llm.base import Backend, Generation, Request
    from coldrec.supervision.run import _stop_if_a_stage_got_nothing

    class Broken(Backend):
        identity = "broken:x"

        def generate(self, request: Request) -> Generation:
            raise LLMError("500 everything is on fire")

    with LLM(LLMConfig(cache=False, retries=0), backend=Broken()) as llm:
        llm.batch([Request([{"role": "user", "content": "q"}], stage="s1")] * 3, progress=False)
        with pytest.raises(
            LLMError, match=r"s1: the backend answered none of its 3 requests .*on fire"
        ):
            _stop_if_a_stage_got_nothing(llm)


def test_an_experiment_without_a_ranker_runs_its_graph_baselines_on_the_augmentation(
    tmp_path: Path,
) -> None:
    graph = {"kind": "xsimgcl", "dim": 8, "data_level": True, "rank_level": {},
             "training": {"epochs": 2, "eval_every": 1}}  # fmt: skip
    settings = {
        "name": "lagcl_tiny", "seeds": [0], "rank": None, "data": TINY["data"],
        "augment": {"llm": {"backend": {"kind": "embedding"}}, "sparse_below": 15,
                    "candidates": 32},
        "baselines": {"full": {"model": graph},
                      "base": {"model": {"kind": "lightgcn", "dim": 8,
                                         "training": {"epochs": 2, "eval_every": 1}}}},
    }  # fmt: skip
    out = tmp_path / "run"
    records = run_experiment(validate(ExperimentConfig, settings), out)
    assert ran(records) == ["data", "augment", "baselines/full/seed0", "baselines/base/seed0",
                            "report"]  # fmt: skip
    full = json.loads((out / "baselines" / "full" / "seed0" / "metrics-seed0.json").read_text())
    assert full["inputs"]["augmented"].endswith("augment")
    base = json.loads((out / "baselines" / "base" / "seed0" / "metrics-seed0.json").read_text())
    assert "augmented" not in base["inputs"]
    with pytest.raises(ConfigError, match="need an augment node"):
        validate(ExperimentConfig, {**settings, "augment": None})
    with pytest.raises(ConfigError, match="need a supervise node and a ranker"):
        validate(ExperimentConfig, {**TINY, "rank": None})
