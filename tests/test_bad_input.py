"""Bad input through the command line: one `error:` line, no traceback, the file (and
line) named; exit status 3 for bad data, 2 for bad settings."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coldrec.cli import app

runner = CliRunner()
GOOD_REVIEW = json.dumps({"reviewerID": "u", "asin": "a", "unixReviewTime": 1}) + "\n"
GOOD_META = "{'asin': 'a', 'title': 'A'}\n{'asin': 'b', 'title': 'B'}\n"


def amazon(
    tmp: Path, reviews: bytes, meta: bytes = GOOD_META.encode(), gz: bool = False
) -> list[str]:
    suffix = ".json.gz" if gz else ".json"
    (tmp / f"r{suffix}").write_bytes(reviews)
    (tmp / f"m{suffix}").write_bytes(meta)
    return ["--source", "amazon2014", "--reviews", str(tmp / f"r{suffix}"),
            "--meta", str(tmp / f"m{suffix}"), "--split", "loo"]  # fmt: skip


def table(tmp: Path, name: str, content: bytes) -> list[str]:
    (tmp / name).write_bytes(content)
    (tmp / "items.csv").write_text("item,title\na,A\n")
    return ["--source", "csv", "--interactions", str(tmp / name), "--items", str(tmp / "items.csv")]


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "not gzip": (
        lambda t: amazon(t, b"plain text", gz=True),
        r"r.json.gz: not a readable gzip file",
    ),
    "truncated gzip": (
        lambda t: amazon(t, gzip.compress(GOOD_REVIEW.encode() * 50)[:-30], gz=True),
        r"r.json.gz: not a readable gzip file",
    ),
    "every line bad": (
        lambda t: amazon(t, b'{"reviewerID": "u", "asin": "a", "unixReviewTime": "1400000000"}\n'),
        r"no interactions could be read from .*r.json.* \(skipped 1 malformed record\(s\); first: "
        r".*r.json:1: field 'unixReviewTime' is not a number: '1400000000'\)",
    ),
    "NaN time": (
        lambda t: amazon(t, b'{"reviewerID": "u", "asin": "a", "unixReviewTime": NaN}\n'),
        r"r.json:1: field 'unixReviewTime' is not a number: nan",
    ),
    "huge time": (
        lambda t: amazon(t, b'{"reviewerID": "u", "asin": "a", "unixReviewTime": 1e30}\n'),
        r"r.json:1: field 'unixReviewTime' is out of range \(±1e\+15\): 1e\+30",
    ),
    "empty csv": (lambda t: table(t, "events.csv", b""), r"events.csv: cannot be read as a table"),
    "corrupt parquet": (
        lambda t: table(t, "events.parquet", b"PAR1 not really"),
        r"events.parquet: cannot be read as a table",
    ),
    "unknown table format": (lambda t: table(t, "events.xlsx", b"x"), r"unknown table format"),
    "bad YAML in --set": (lambda t: ["--set", "prepare.kcore=[1"], r"--set 'prepare.kcore=\[1'"),
    "--set into a value": (
        lambda t: ["--set", "prepare.kcore=3", "--set", "prepare.kcore.x=1"],
        r"'kcore' is set to a value, not a section",
    ),
    "negative seed": (
        lambda t: ["--seed", "-1"],
        r"seed: Input should be greater than or equal to 0",
    ),
    "bad YAML config": (
        lambda t: (t / "c.yaml").write_text("source: [\n  x") and ["--config", str(t / "c.yaml")],
        r"c.yaml: not valid YAML",
    ),
}


SETTINGS = {"bad YAML in --set", "--set into a value", "negative seed", "bad YAML config"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_its_exit_status(tmp_path: Path, case: str) -> None:
    make_args, message = CASES[case]
    args = make_args(tmp_path)
    result = runner.invoke(app, ["data", "prepare", *args, "--out", str(tmp_path / "ds")])
    assert result.exit_code == (2 if case in SETTINGS else 3), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pytest.importorskip("re").search(message, lines[0]), lines[0]
    assert not (tmp_path / "ds").exists()


def test_a_line_that_is_not_utf8_is_skipped_and_counted(tmp_path: Path) -> None:
    reviews = GOOD_REVIEW.encode() + b'{"reviewerID": "\xff", "asin": "a", "unixReviewTime": 2}\n'
    reviews += json.dumps({"reviewerID": "u", "asin": "b", "unixReviewTime": 3}).encode() + b"\n"
    args = amazon(tmp_path, reviews)
    result = runner.invoke(app, ["data", "prepare", *args, "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["skipped"]["examples"] == [f"{tmp_path / 'r.json'}:2: not UTF-8 text (byte 16)"]


def test_out_refuses_to_replace_what_is_not_a_dataset(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("important")
    for target in (precious, precious / "notes.txt"):
        small = ["--set", "source.n_users=50", "--set", "source.n_items=100"]
        result = runner.invoke(app, ["data", "prepare", *small, "--out", str(target)])
        assert result.exit_code == 3
        assert "refusing to replace it" in result.stderr
    assert (precious / "notes.txt").read_text() == "important"
    # A dataset folder is replaced, and the result is readable by others (umask 022).
    ok = ["data", "prepare", "--set", "source.n_users=50", "--set", "source.n_items=100"]
    assert runner.invoke(app, [*ok, "--out", str(tmp_path / "ds")]).exit_code == 0
    assert runner.invoke(app, [*ok, "--out", str(tmp_path / "ds"), "--seed", "1"]).exit_code == 0
    assert json.loads((tmp_path / "ds" / "meta.json").read_text())["prepare"]["seed"] == 1
    assert (tmp_path / "ds").stat().st_mode & 0o055 == 0o055
    assert (tmp_path / "ds" / "meta.json").stat().st_mode & 0o044 == 0o044


def test_stats_of_a_corrupt_dataset(tmp_path: Path) -> None:
    ok = ["data", "prepare", "--set", "source.n_users=50", "--set", "source.n_items=100"]
    assert runner.invoke(app, [*ok, "--out", str(tmp_path / "ds")]).exit_code == 0
    (tmp_path / "ds" / "items.parquet").write_bytes(b"garbage")
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "ds")])
    assert result.exit_code == 3
    assert "items.parquet: not a readable Parquet file" in result.stderr
    (tmp_path / "ds" / "meta.json").write_text("[]")
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "ds")])
    assert result.exit_code == 3
    assert "meta.json: not a coldrec dataset meta file" in result.stderr
