"""The command line as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from coldrec.cli import app

runner = CliRunner()
SMALL = ["--set", "source.n_users=200", "--set", "source.n_items=150"]


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_prepare_synthetic_then_stats_json(tmp_path: Path) -> None:
    code, out, _ = run("data", "prepare", "--out", str(tmp_path / "ds"), "--seed", "3", *SMALL)
    assert code == 0, out
    code, out, _ = run("data", "stats", str(tmp_path / "ds"), "--json")
    assert code == 0
    stats = json.loads(out)
    for key in (
        "interactions",
        "users",
        "items",
        "train_interactions",
        "test_interactions",
        "cold_items",
        "cold_users",
        "order_only",
    ):
        assert key in stats
    assert stats["users"] <= 200 and stats["items"] <= 150
    assert stats["train_interactions"] == int(0.7 * stats["interactions"])
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["prepare"]["seed"] == 3


def test_yaml_config_then_flags_then_set(tmp_path: Path) -> None:
    config = tmp_path / "data.yaml"
    config.write_text(
        "source: {kind: synthetic, n_users: 150, n_items: 120}\n"
        "prepare: {train_share: 0.5, valid_share: 0.2}\n"
    )
    code, out, _ = run(
        "data",
        "prepare",
        "--config",
        str(config),
        "--valid-share",
        "0.3",
        "--set",
        "prepare.train_share=0.6",
        "--out",
        str(tmp_path / "ds"),
    )
    assert code == 0, out
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert (meta["prepare"]["train_share"], meta["prepare"]["valid_share"]) == (0.6, 0.3)
    assert meta["users"] <= 150


def test_missing_file_is_one_line_and_exit_3(tmp_path: Path) -> None:
    code, out, err = run(
        "data",
        "prepare",
        "--source",
        "amazon2014",
        "--reviews",
        str(tmp_path / "reviews_Beauty_5.json.gz"),
        "--meta",
        "x",
        "--out",
        str(tmp_path / "ds"),
    )
    assert code == 3
    assert err.strip() == f"error: reviews file not found: {tmp_path / 'reviews_Beauty_5.json.gz'}"
    assert "Traceback" not in out + err
    assert not (tmp_path / "ds").exists()


def test_unknown_setting_and_unknown_source_are_errors(tmp_path: Path) -> None:
    code, _, err = run(
        "data", "prepare", "--set", "prepare.trian_share=0.5", "--out", str(tmp_path)
    )
    assert code == 2
    assert "prepare.trian_share: Extra inputs are not permitted" in err
    code, _, _ = run("data", "prepare", "--source", "netflix", "--out", str(tmp_path))
    assert code == 2  # rejected by the option's choices


def test_stats_of_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    code, _, err = run("data", "stats", str(tmp_path))
    assert code == 3
    assert err.strip() == f"error: {tmp_path} is not a prepared dataset (no meta.json)"


def test_malformed_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.json"
    reviews.write_text(
        '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n'
        '{"reviewerID": "u", "asin": "b", "unixReviewTime": 2}\nbroken\n'
    )
    meta = tmp_path / "meta.json"
    meta.write_text("{'asin': 'a', 'title': 'A'}\n{'asin': 'b', 'title': 'B'}\n")
    code, _, err = run(
        "data",
        "prepare",
        "--source",
        "amazon2014",
        "--reviews",
        str(reviews),
        "--meta",
        str(meta),
        "--split",
        "loo",
        "--out",
        str(tmp_path / "ds"),
    )
    assert code == 0
    assert "skipped 1 malformed record(s)" in err
    assert f"{reviews}:3" in err.replace("\n", "")
    meta_json = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta_json["skipped"]["per_file"] == {str(reviews): 1}
