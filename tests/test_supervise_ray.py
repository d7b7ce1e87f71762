"""The Ray labelling engine (``supervise --engine ray``): the labels the local engine
writes for the same answers, a failed request recorded as a fallback without stopping
the job, and, on a local Ray runtime with two real llama.cpp servers (SmolLM2), a driver
killed mid-job whose rerun asks only the questions not yet answered."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from coldrec.config import validate
from coldrec.data.prepare import prepare
from coldrec.data.sources import SyntheticSource
from coldrec.retrieval.retrieve import RetrieveConfig, run_retrieval
from coldrec.supervision.run import SuperviseConfig
from tests.test_supervision import (  # noqa: F401 (retrieved: a fixture)
    catalogue_of,
    replay_answers,
    retrieved,
    supervise,
    write_replay,
)

pytest.importorskip("ray", reason="needs Ray (installed by make test)")

LABELS = ("edges.parquet", "triplets.parquet", "trace.jsonl")


def assert_same_labels(a: Path, b: Path) -> None:
    for name in LABELS[:2]:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name))
    assert (a / "trace.jsonl").read_text() == (b / "trace.jsonl").read_text()


def without_seconds(stages: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {stage: {k: v for k, v in counts.items() if k not in ("latency_s", "busy_s")}
            for stage, counts in stages.items()}  # fmt: skip


@pytest.mark.usefixtures("ray_runtime")
def test_ray_labels_equal_the_local_engine_and_failed_requests_fall_back(
    retrieved: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Stage 4 is answered for every other subcategory only: the rest fail (the replay
    has no answer for them) and fall back, and the job goes on."""
    catalogue = catalogue_of(retrieved, validate(SuperviseConfig, {}))
    answers = replay_answers(catalogue)
    stage4 = answers.pop("Candidates in ")
    for name in catalogue.taxonomy.subcategories[::2]:
        answers[f"Candidates in {name}:"] = stage4
    replay = write_replay(tmp_path / "answers.jsonl", answers)
    settings: dict[str, Any] = {
        "n_users": 8, "chunk_size": 3, "validation_view": False,
        "llm": {"backend": {"kind": "replay", "path": str(replay)}, "cache": False},
    }  # fmt: skip
    local = supervise(retrieved, validate(SuperviseConfig, settings), tmp_path / "local")
    on_ray = supervise(retrieved, validate(SuperviseConfig, {
        **settings, "engine": "ray", "ray": {"actors": 2}}), tmp_path / "ray")  # fmt: skip
    assert_same_labels(tmp_path / "local", tmp_path / "ray")
    counts = on_ray["stages"]["stage4_items"]
    assert 0 < counts["fallbacks"] < counts["requests"] and on_ray["users"] == 8
    assert without_seconds(on_ray["stages"]) == without_seconds(local["stages"])
    logged = (tmp_path / "ray" / "llm_calls.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["kind"] == "call" for line in logged) == sum(
        c["calls"] for c in on_ray["stages"].values()
    )


# --- two real llama.cpp servers -----------------------------------------------------


@pytest.fixture(scope="module")
def demo_retrieved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's data (the built-in synthetic source at its defaults) and a small
    Two-Tower run over it."""
    root = tmp_path_factory.mktemp("demo")
    prepare(SyntheticSource().load()).save(root / "ds")
    config = validate(RetrieveConfig, {
        "top_m": 50, "model": {"dim": 16, "early_stopping": False, "training": {"epochs": 2}},
    })  # fmt: skip
    run_retrieval(config, root / "ds", root / "tw")
    return root


def cached_answers(cache: Path) -> int:
    database = cache / "llm" / "answers.sqlite"
    if not database.is_file():
        return 0
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


def kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment holds ``marker`` (Linux /proc)."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker.encode() in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)


def test_a_killed_ray_job_resumes_with_the_missing_calls_only(
    demo_retrieved: Path, tmp_path: Path, llama_server: str, second_server: str
) -> None:
    """20 demo users on two SmolLM2 replicas: SIGKILL of the driver after 25 answers;
    the rerun asks exactly the questions whose answers are not cached (each fresh answer
    adds one cache row: none re-asked), and the local engine, given the same cached
    answers, writes the same edges, triplets and trace."""
    cache = tmp_path / "cache"
    small = {"history_items": 3, "categories": 1, "subcategories": 1, "local_candidates": 4,
             "picks": 2, "preselected": 3, "final": 3, "evidence": 0}  # fmt: skip
    settings = {
        "n_users": 20, "chunk_size": 2, "validation_view": False, "stages": small,
        "taxonomy": {"interest_leaves": 1},
        "llm": {"backend": {"kind": "openai", "model": "smollm2"}, "cache_dir": str(cache)},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    command = [str(Path(sys.executable).parent / "coldrec"), "supervise",
               "--dataset", str(demo_retrieved / "ds"), "--candidates", str(demo_retrieved / "tw"),
               "--config", str(tmp_path / "config.yaml")]  # fmt: skip
    on_ray = [*command, "--out", str(tmp_path / "ray"), "--engine", "ray",
              "--endpoint", llama_server, "--endpoint", second_server]  # fmt: skip
    marker = {"COLDREC_TEST_JOB": str(tmp_path)}  # inherited by every Ray process it starts
    driver = subprocess.Popen(on_ray, env={**os.environ, **marker}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while cached_answers(cache) < 25:
            assert driver.poll() is None, "the job ended before it was killed"
            assert time.monotonic() < deadline, "no 25 answers in 10 minutes"
            time.sleep(0.5)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:  # Ray's workers and agents outlive a killed driver: clear them away
        kill_marked(f"COLDREC_TEST_JOB={tmp_path}")
    before = cached_answers(cache)
    assert not (tmp_path / "ray" / "summary.json").exists()
    subprocess.run(on_ray, check=True, capture_output=True)
    calls = [json.loads(line) for line in (tmp_path / "ray" / "llm_calls.jsonl").open()]
    calls = [c for c in calls if c["kind"] == "call"]
    fresh = [c for c in calls if not c["cached"]]
    assert all(c["error"] is None for c in fresh)
    after = cached_answers(cache)
    assert len(fresh) == after - before > 0
    assert sum(c["cached"] for c in calls) >= before
    assert {c["backend"] for c in calls} == {"openai:smollm2"}
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["users"] == 20
    subprocess.run([*command, "--out", str(tmp_path / "local"), "--base-url", llama_server],
                   check=True, capture_output=True)  # fmt: skip
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert all(c["calls"] == c["cached"] for c in local["stages"].values())
    assert_same_labels(tmp_path / "ray", tmp_path / "local")
