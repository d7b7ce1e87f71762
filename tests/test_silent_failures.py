"""What used to pass silently, damage the user's files or fail unclearly, one case each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.data.prepare import DataConfig, build_dataset
from coldrec.errors import ConfigError, DataError
from coldrec.eval.protocol import evaluate, segment_warnings
from coldrec.experiment.config import ExperimentConfig
from coldrec.llm.parse import extract_json, project
from tests.test_experiment import TINY

runner = CliRunner()


def write_csv(folder: Path, events: str, items: str = "item,title\na,A\nb,B\nc,C\n") -> dict:
    (folder / "events.csv").write_text(events)
    (folder / "items.csv").write_text(items)
    return {"kind": "csv", "interactions": str(folder / "events.csv"),
            "items": str(folder / "items.csv")}  # fmt: skip


def prepared(source: dict, **prepare: object) -> Dataset:
    return build_dataset(DataConfig.model_validate({"source": source, "prepare": prepare}))


EVENTS = "".join(f"u{u},{i},{1_400_000_000 + 86_400 * (3 * u + k)}\n"
                 for u in range(8) for k, i in enumerate("abc"))  # fmt: skip


def test_times_too_large_for_int64_are_skipped_and_counted(tmp_path: Path) -> None:
    huge = "u9,a,1e300\nu9,b,-1e300\nu9,c,1e19\nu9,a,inf\n"
    data = prepared(write_csv(tmp_path, "user,item,ts\n" + EVENTS + huge))
    assert data.interactions["ts"].min() > 0  # none became -9223372036854775808
    assert data.meta["skipped"]["total"] == 4
    assert "field 'ts' is out of range (±1e+15): '1e300'" in data.meta["skipped"]["examples"][0]


def test_an_unmapped_time_column_is_warned_about_and_the_split_says_why(tmp_path: Path) -> None:
    data = prepared(write_csv(tmp_path, "user,item,when\n" + EVENTS))
    assert data.meta["order_only"] and data.stats()["split"] == "loo"
    assert data.stats()["split_reason"] == "the default for order-only data (no timestamps)"
    assert any("column(s) ['when'] look like times" in w for w in data.stats()["warnings"])
    result = runner.invoke(app, ["data", "stats", str(data.save(tmp_path / "ds"))])
    assert "warning: events.csv: no 'ts' column" in result.stderr


def test_a_header_that_repeats_a_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.inter").write_text("user_id:token\tuser_id:token\titem_id:token\nu\tv\ta\n")
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token_seq\na\tA\n")
    source = {"kind": "recbole", "interactions": str(tmp_path / "x.inter"),
              "items": str(tmp_path / "x.item")}  # fmt: skip
    with pytest.raises(DataError, match=r"x.inter:1: the header repeats field\(s\) \['user_id'\]"):
        prepared(source)
    with pytest.raises(DataError, match=r"events.csv: the header repeats column\(s\) \['item'\]"):
        prepared(write_csv(tmp_path, "user,item,item\n" + EVENTS))


def test_a_cell_of_labels_keeps_every_label_in_the_item_text(tmp_path: Path) -> None:
    items = "item,title,categories\na,A,Adventure|Animation|Comedy\nb,B,Drama\nc,C,X > Y\n"
    data = prepared(write_csv(tmp_path, "user,item,ts\n" + EVENTS, items))
    assert data.item_text == ["A | Adventure, Animation, Comedy", "B | Drama", "C | X > Y"]


def test_an_extra_cell_is_an_error_naming_the_line_not_a_shifted_row(tmp_path: Path) -> None:
    events = "user,item,ts\nu0,a,1400000000,EXTRA\n" + EVENTS
    with pytest.raises(DataError, match=r"events.csv: cannot be read .*line 2, saw 4"):
        prepared(write_csv(tmp_path, events))


def test_separators_must_be_two_different_non_empty_strings(tmp_path: Path) -> None:
    source = write_csv(tmp_path, "user,item,ts\n" + EVENTS)
    for bad, why in (({"path_sep": None}, "path_sep"), ({"path_sep": ""}, "at least 1"),
                     ({"level_sep": "|"}, "must differ")):  # fmt: skip
        with pytest.raises(ConfigError, match=why):
            validate(DataConfig, {"source": {**source, **bad}})


def test_thin_and_empty_segments_are_warned_about(tmp_path: Path) -> None:
    counts = {"all": {"users": 10, "targets": 12}, "cold": {"users": 0, "targets": 0},
              "warm": {"users": 500, "targets": 700}}  # fmt: skip
    assert segment_warnings(counts) == [
        "segment all has only 10 users (12 targets): its figures are noise",
        "segment cold is empty: its metrics are null",
    ]
    data = prepared(write_csv(tmp_path, "user,item,ts\n" + EVENTS))
    assert any(re.match(r"the global-time split leaves \d test users with a history", w)
               for w in data.meta["warnings"])  # fmt: skip

    class Constant:
        def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
            return np.zeros((len(users), data.n_items), dtype=np.float32)

    assert "segment cold is empty: its metrics are null" in evaluate(Constant(), data)["warnings"]


def test_someone_elses_folder_is_never_replaced(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "meta.json").write_text('{"owner": "someone"}')
    (theirs / "thesis.tex").write_text("years of work")
    small = ["--set", "source.n_users=50", "--set", "source.n_items=100"]
    result = runner.invoke(app, ["data", "prepare", *small, "--out", str(theirs)])
    assert result.exit_code == 3 and "is not a folder coldrec made" in result.stderr
    assert sorted(p.name for p in theirs.iterdir()) == ["meta.json", "thesis.tex"]


def test_a_run_folder_of_an_earlier_coldrec_is_still_recognised(tmp_path: Path) -> None:
    from coldrec.experiment.run import _check_run_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text('{"config": {}, "command": null}')  # before 9ae9b91
    _check_run_folder(run)
    (run / "experiment.json").write_text('["someone", "else"]')
    with pytest.raises(ConfigError, match="is not a run folder of coldrec run"):
        _check_run_folder(run)


def test_names_cannot_leave_the_run_folder() -> None:
    for bad in (
        {"name": "../../x"},
        {"baselines": {"../../../x": {"model": {"kind": "popularity"}}}},
    ):
        with pytest.raises(ConfigError, match="should match pattern"):
            validate(ExperimentConfig, {**TINY, **bad})


def test_the_same_experiment_hashes_the_same_in_another_folder(tmp_path: Path) -> None:
    from coldrec.experiment.run import run_experiment

    config = validate(ExperimentConfig, {**TINY, "supervise": None, "losses": [],
                                         "baselines": {}})  # fmt: skip
    hashes = []
    for folder in ("a", "deeper/b"):
        run_experiment(config, tmp_path / folder / "run", store=tmp_path / folder / "store")
        metrics = tmp_path / folder / "run" / "rank" / "seed0" / "metrics-seed0.json"
        hashes.append(json.loads(metrics.read_text())["config_hash"])
    assert hashes[0] == hashes[1]


def test_unclear_errors_now_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["data", "prepare", "--out", str(tmp_path / "file" / "sub")])
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'file'}: File exists"
    (tmp_path / "mac.json").write_bytes(b'{"a": 1}\r{"a": 2}\r')
    args = ["data", "prepare", "--source", "amazon2018", "--reviews", str(tmp_path / "mac.json"),
            "--meta", str(tmp_path / "mac.json"), "--out", str(tmp_path / "ds")]  # fmt: skip
    result = runner.invoke(app, args)
    assert "mac.json: lines end in a carriage return alone" in result.stderr
    source = write_csv(tmp_path, "user,item,ts\n" + EVENTS)
    source["columns"] = {"user": "customer"}
    with pytest.raises(DataError) as caught:
        prepared(source)
    assert str(caught.value).count("customer") == 1  # the missing column named once


def test_llm_check_says_the_server_is_unreachable(tmp_path: Path) -> None:
    args = ["llm", "check", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
            "--set", "retries=0"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 3  # an expected failure, not Python's crash status 1
    assert "Connection refused" in result.stderr.splitlines()[-1]


def test_the_parser_is_right_on_its_worst_inputs() -> None:
    # (their speed is measured by benchmarks/parser_speed.py)
    titles = [
        f"Moisturising cream number {i} with a rather long name for testing" for i in range(50)
    ]
    answers = [f"{' ' * 40_000}[{i}] " + "x" * 2_000 for i in range(300)]
    assert extract_json(" " * 40_000 + "[3]" + " " * 40_000) == [3]
    numbered = project(answers, titles)  # [0] … [49] name the titles; [50] … are none
    assert numbered.values == titles and numbered.dropped == 250
    reversed_titles = project([t[::-1] * 20 for t in titles * 6], titles)  # fuzzy: no match
    assert reversed_titles.values == [] and reversed_titles.dropped == 300


def test_a_synthetic_source_too_large_for_memory_is_refused_before_generating() -> None:
    with pytest.raises(ConfigError, match=r"need about [\d,.]+ GiB to generate and prepare"):
        validate(DataConfig, {"source": {"kind": "synthetic", "n_users": 10**9}})
