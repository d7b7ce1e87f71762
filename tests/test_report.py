"""Runs write metrics files; reports aggregate them (mean ± std) into tables and a chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coldrec.baselines.popularity import PopularityConfig
from coldrec.cli import app
from coldrec.data import Dataset
from coldrec.errors import DataError
from coldrec.eval.report import aggregate, load_metrics, markdown, write_report
from coldrec.experiment.evaluate import EvaluateConfig, run_evaluation

runner = CliRunner()


def fake_run(
    folder: Path, method: str, seed: int, recall20: float, hash_: str = "h", data: str = "d"
) -> Path:
    values = {f"{m}@{k}": recall20 / 2 for m in ("recall", "ndcg") for k in (5, 10, 20)}
    values["recall@20"] = recall20
    metrics = {
        "method": method, "seed": seed, "config_hash": hash_, "data_hash": data,
        "protocol": "full",
        "segments": {s: dict(values) for s in ("all", "warm", "cold")},
        "counts": {s: {"users": 10, "targets": 12} for s in ("all", "warm", "cold")},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"metrics-seed{seed}.json").write_text(json.dumps(metrics))
    return folder


def test_aggregate_mean_and_sample_std(tmp_path: Path) -> None:
    runs = load_metrics(
        [fake_run(tmp_path / "a", "A", 1, 0.1), fake_run(tmp_path / "a", "A", 2, 0.3)]
    )
    summary = aggregate(runs)
    mean, std = summary["A"]["segments"]["cold"]["recall@20"]
    assert mean == pytest.approx(0.2)
    assert std == pytest.approx(math.sqrt(((0.1 - 0.2) ** 2 + (0.3 - 0.2) ** 2) / 1))
    assert summary["A"]["seeds"] == [1, 2]


def test_identical_seeds_have_no_spread(tmp_path: Path) -> None:
    # 0.1 three times: the float mean is 0.10000000000000002, whose "std" would be 1.7e-17
    runs = [fake_run(tmp_path / "p", "Popularity", seed, 0.1) for seed in (0, 1, 2)]
    summary = aggregate(load_metrics(runs))
    assert summary["Popularity"]["segments"]["warm"]["recall@20"] == (0.1, 0.0)
    assert "| Popularity (n=3) | 0.0500 | 0.0500 | 0.1000 |" in markdown(summary)


def test_aggregate_refuses_mixed_settings_or_repeated_seeds(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="different settings"):
        aggregate(load_metrics([fake_run(tmp_path / "a", "A", 1, 0.1, "h1"),
                                fake_run(tmp_path / "b", "A", 2, 0.1, "h2")]))  # fmt: skip
    with pytest.raises(DataError, match="same seed"):
        aggregate(load_metrics([fake_run(tmp_path / "c", "B", 1, 0.1),
                                fake_run(tmp_path / "d", "B", 1, 0.2)]))  # fmt: skip
    with pytest.raises(DataError, match="no metrics-seed"):
        load_metrics([tmp_path / "empty"])
    with pytest.raises(DataError, match="different data sets"):
        aggregate(load_metrics([fake_run(tmp_path / "e", "A", 1, 0.1, data="beauty"),
                                fake_run(tmp_path / "f", "B", 1, 0.1, data="office")]))  # fmt: skip


def test_markdown_has_the_thesis_table_layout(tmp_path: Path) -> None:
    summary = aggregate(load_metrics([fake_run(tmp_path / "p", "Popularity", 0, 0.0147),
                                      fake_run(tmp_path / "k", "ItemKNN", 0, 0.0303)]))  # fmt: skip
    text = markdown(summary)
    assert [line for line in text.splitlines() if line.startswith("###")] == [
        "### all (10 users, 12 targets)", "### warm (10 users, 12 targets)",
        "### cold (10 users, 12 targets)"]  # fmt: skip
    header = "| Method | Recall@5 | Recall@10 | Recall@20 | NDCG@5 | NDCG@10 | NDCG@20 |"
    assert text.count(header) == 3
    assert "| ItemKNN (n=1) | 0.0152 | 0.0152 | 0.0303 | 0.0152 | 0.0152 | 0.0152 |" in text


def test_write_report_makes_markdown_and_a_png(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path / "a", "A", s, 0.1 * s) for s in (1, 2)]
    path = write_report(runs, tmp_path / "report")
    assert "± 0.0707" in path.read_text()
    png = (tmp_path / "report" / "recall20_cold_warm.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_run_evaluation_writes_metrics_with_hash_and_seed(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    small_dataset.save(tmp_path / "ds")
    config = EvaluateConfig(model=PopularityConfig(), seed=3)
    result = run_evaluation(config, tmp_path / "ds", tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics-seed3.json").read_text())
    assert saved["seed"] == 3 and saved["method"] == "popularity"
    assert saved["segments"] == json.loads(json.dumps(result["segments"]))
    assert set(saved["segments"]) == {"all", "warm", "cold", "cold_users"}
    other = run_evaluation(config.model_copy(update={"seed": 4}), tmp_path / "ds", tmp_path / "run")
    assert other["config_hash"] == saved["config_hash"]  # the seed is not part of the hash
    unweighted = config.model_copy(update={"model": PopularityConfig(weighted=False)})
    assert (
        run_evaluation(unweighted, tmp_path / "ds", tmp_path / "run2")["config_hash"]
        != saved["config_hash"]
    )


def test_evaluate_and_report_commands(tmp_path: Path, small_dataset: Dataset) -> None:
    small_dataset.save(tmp_path / "ds")
    data = ["evaluate", "--dataset", str(tmp_path / "ds")]
    for seed in ("0", "1"):
        args = [*data, "--model", "popularity", "--seed", seed, "--out", str(tmp_path / "pop")]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    args = [*data, "--model", "bm25", "--set", "model.k1=1.2", "--out", str(tmp_path / "bm25")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "bm25" / "config.json").read_text())["model"]["k1"] == 1.2
    result = runner.invoke(app, ["report", str(tmp_path / "pop"), str(tmp_path / "bm25"),
                                 "--out", str(tmp_path / "report")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| popularity (n=2) |" in (tmp_path / "report" / "report.md").read_text()
    missing = runner.invoke(
        app, ["evaluate", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 3 and "is not a prepared dataset" in missing.stderr


def test_empty_segments_are_null_in_json_and_a_dash_in_tables(tmp_path: Path) -> None:
    from coldrec.data import PrepareConfig, prepare
    from tests.helpers import frames_of

    rows = [(f"u{k % 4}", f"i{k % 6}", k) for k in range(30)]
    prepare(frames_of(rows), PrepareConfig(split="loo")).save(tmp_path / "ds")  # no cold users
    run_evaluation(EvaluateConfig(), tmp_path / "ds", tmp_path / "run")
    text = (tmp_path / "run" / "metrics-seed0.json").read_text()
    assert "NaN" not in text
    saved = json.loads(text)
    assert saved["counts"]["cold_users"] == {"users": 0, "targets": 0}
    assert saved["segments"]["cold_users"]["recall@20"] is None
    table = markdown(aggregate(load_metrics([tmp_path / "run"])), segments=("cold_users",))
    assert "| popularity (n=1) | – | – | – | – | – | – |" in table


def test_cut_offs_must_be_positive(tmp_path: Path) -> None:
    args = ["evaluate", "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--set", "ks=[0]"])
    assert result.exit_code == 2 and "ks.0: Input should be greater than 0" in result.stderr
