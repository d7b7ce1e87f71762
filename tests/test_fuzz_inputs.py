"""Malformed input never crashes, never corrupts: over a thousand seeded mutations of
small valid files of every source, and malformed settings, end in a Dataset or in one
:class:`~coldrec.errors.ColdrecError` naming the file — never another exception — and a
failed ``data prepare`` leaves an existing ``--out`` folder as it was."""

from __future__ import annotations

import json
import os
import random
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.data.prepare import DataConfig, build_dataset
from coldrec.errors import ColdrecError

USERS, ITEMS = 12, 10


def _events() -> list[tuple[str, str, int, float]]:
    rng = random.Random(0)
    return [(f"U{u}", f"I{rng.randrange(ITEMS)}", 1_300_000_000 + 86_400 * (u * 7 + k),
             float(rng.choice([2, 3, 4, 5]))) for u in range(USERS) for k in range(6)]  # fmt: skip


def _titles() -> dict[str, str]:
    return {f"I{i}": f"Lip balm number {i}" for i in range(ITEMS)}


def amazon2014() -> dict[str, bytes]:
    reviews = "".join(json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": t,
                                  "overall": r}) + "\n" for u, i, t, r in _events())  # fmt: skip
    meta = "".join(repr({"asin": i, "title": t, "categories": [["Beauty", "Lips"]], "price": 3.5,
                         "brand": "B"}) + "\n" for i, t in _titles().items())  # fmt: skip
    return {"reviews.json": reviews.encode(), "meta.json": meta.encode()}


def amazon2018() -> dict[str, bytes]:
    files = amazon2014()
    meta = "".join(json.dumps({"asin": i, "title": t, "category": ["Beauty", "Lips"],
                               "price": "$3.50", "description": ["soft"]}) + "\n"
                   for i, t in _titles().items())  # fmt: skip
    return {"reviews.json": files["reviews.json"], "meta.json": meta.encode()}


def lcrec() -> dict[str, bytes]:
    sequences: dict[str, list[str]] = {}
    for user, item, _, _ in _events():
        sequences.setdefault(user, []).append(item)
    items = {i: {"title": t, "categories": "Beauty, Lips", "brand": "B"}
             for i, t in _titles().items()}  # fmt: skip
    return {"x.inter.json": json.dumps(sequences).encode(),
            "x.item.json": json.dumps(items).encode()}  # fmt: skip


def recbole() -> dict[str, bytes]:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{r}\t{t}\n" for u, i, t, r in _events()
    )
    item = "item_id:token\tmovie_title:token_seq\tclass:token_seq\n" + "".join(
        f"{i}\t{t}\tDrama Comedy\n" for i, t in _titles().items()
    )
    return {"x.inter": inter.encode(), "x.item": item.encode()}


def csv() -> dict[str, bytes]:
    inter = "user,item,ts,rating\n" + "".join(f"{u},{i},{t},{r}\n" for u, i, t, r in _events())
    items = "item,title,categories\n" + "".join(
        f"{i},{t},Beauty > Lips|Beauty > Care\n" for i, t in _titles().items()
    )
    return {"inter.csv": inter.encode(), "items.csv": items.encode()}


SOURCES: dict[str, Callable[[], dict[str, bytes]]] = {
    "amazon2014": amazon2014,
    "amazon2018": amazon2018,
    "lcrec": lcrec,
    "recbole": recbole,
    "csv": csv,
}


def _huge(rng: random.Random) -> str:
    return rng.choice(["9" * 400, "9" * 5000, "inf", "-inf", "NaN", "1e400", "-1e300", "1e19",
                       "1e300", "-1", "9999-12-31", "0001-01-01", '"\\ud800"', "'\\ud800'",
                       "[" * 5000 + "]" * 5000, "{" * 3000, "true", "null", '""'])  # fmt: skip


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage of the kinds a user's files show."""
    kind = rng.randrange(12)
    at = rng.randrange(len(data) + 1) if data else 0
    if kind == 0:  # a flipped byte
        if not data:
            return b"\x00"
        flipped = bytearray(data)
        flipped[at % len(data)] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if kind == 1:  # cut short
        return data[:at]
    if kind == 2:  # NUL, or bytes that are not UTF-8
        return data[:at] + rng.choice([b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"]) + data[at:]
    if kind == 3:  # a value replaced by a huge, infinite, nested or odd one
        text = data.decode("utf-8", "replace")
        tokens = [m for m in _TOKEN.finditer(text)]
        if not tokens:
            return data
        token = rng.choice(tokens)
        return (text[: token.start()] + _huge(rng) + text[token.end() :]).encode()
    if kind == 4:  # another delimiter
        old, new = rng.choice([(b"\t", b","), (b",", b";"), (b",", b"\t"), (b":", b"")])
        return data.replace(old, new)
    if kind == 5:  # an extra cell or a missing one
        lines = data.split(b"\n")
        row = rng.randrange(len(lines))
        lines[row] = lines[row] + rng.choice([b",x", b"\tx", b""]) if rng.random() < 0.5 else \
            lines[row].rsplit(b",", 1)[0]  # fmt: skip
        return b"\n".join(lines)
    if kind == 6:
        return b""
    if kind == 7:  # the header (first line) only
        return data.split(b"\n", 1)[0] + b"\n"
    if kind == 8:  # CR-only line endings
        return data.replace(b"\n", b"\r")
    if kind == 9:  # a header field repeated
        header, _, rest = data.partition(b"\n")
        cells = header.split(b"\t") if b"\t" in header else header.split(b",")
        if len(cells) > 1:
            cells[1] = cells[0]
        sep = b"\t" if b"\t" in header else b","
        return sep.join(cells) + b"\n" + rest
    if kind == 10:  # a duplicated block of lines
        return data + data[:at]
    return data[:at] + b'"' + data[at:]  # an unbalanced quote


_TOKEN = __import__("re").compile(r"-?\d+(?:\.\d+)?|\"[^\"\n]{1,20}\"|'[^'\n]{1,20}'")


def _source_config(kind: str, paths: list[Path]) -> dict[str, Any]:
    return {"kind": kind, "interactions": str(paths[0]), "items": str(paths[1])}


SAVED, REFUSED = "saved", "refused"


def _prepare(config: dict[str, Any], out: Path) -> str:
    """``SAVED`` when the input prepared and saved, ``REFUSED`` when it was refused with
    one short ColdrecError naming an input file; else what went wrong."""
    try:
        build_dataset(DataConfig.model_validate({"source": config})).save(out)
    except ColdrecError as error:
        message = str(error)
        files = [Path(config["interactions"]).name, Path(config["items"]).name]
        if len(message) > 1000:
            return f"an error of {len(message)} characters: {message[:200]}"
        if not any(name in message for name in files):
            return f"an error naming no input file: {message}"
        return REFUSED
    except Exception:
        return traceback.format_exc(limit=4)
    return SAVED


def _cases(count: int, seed: int) -> list[tuple[str, int, bytes, dict[str, bytes]]]:
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        kind = rng.choice(list(SOURCES))
        files = SOURCES[kind]()
        damaged = rng.randrange(2)
        name = list(files)[damaged]
        data = files[name]
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = _mutate(data, rng)
        cases.append((kind, n, data, {**files, name: data}))
    return cases


def _write(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_a_thousand_damaged_files_end_in_a_dataset_or_a_clear_error(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"  # a Dataset that a refused run must leave as it was
    assert _prepare(_source_config("csv", _write(tmp_path / "good", csv())), earlier) == SAVED
    failures, checked = [], 0
    for kind, n, _, files in _cases(1100, seed=23):
        paths = _write(tmp_path / f"{n}", files)
        out = tmp_path / f"{n}" / "out"
        if n % 10 == 0:
            shutil.copytree(earlier, out)
        before = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else None
        outcome = _prepare(_source_config(kind, paths), out)
        if outcome not in (SAVED, REFUSED):
            failures.append(f"{kind} case {n}:\n{outcome}")
        elif outcome == REFUSED and before is not None:
            checked += 1
            if {p.name: p.read_bytes() for p in out.iterdir()} != before:
                failures.append(f"{kind} case {n}: a refused run changed the earlier --out")
    assert not failures, f"{len(failures)} bad outcomes; first:\n" + "\n".join(failures[:3])
    assert checked > 10  # enough refused runs over an earlier Dataset


PARQUET_TIMES = [float("inf"), -float("inf"), float("nan"), 1e300, -1e300, 1e19, 2**62, None]
PARQUET_CATEGORIES = [3, [1, 2], [[1], [2, 3]], [], None, "A > B|C", [["A", "B"], ["C"]], 2.5]


@pytest.mark.parametrize("ts", PARQUET_TIMES, ids=str)
@pytest.mark.parametrize("categories", PARQUET_CATEGORIES, ids=str)
def test_odd_parquet_values_are_skipped_counted_or_read(
    tmp_path: Path, ts: Any, categories: Any
) -> None:
    events = _events()
    times = [ts if k == 3 else t for k, (_, _, t, _) in enumerate(events)]
    pd.DataFrame({"user": [e[0] for e in events], "item": [e[1] for e in events],
                  "ts": times}).to_parquet(tmp_path / "inter.parquet")  # fmt: skip
    titles = _titles()
    cells = [categories] * len(titles)  # Parquet holds one type per column
    pd.DataFrame({"item": list(titles), "title": list(titles.values()),
                  "categories": pd.Series(cells, dtype=object)}).to_parquet(
        tmp_path / "items.parquet")  # fmt: skip
    config = {"kind": "csv", "interactions": str(tmp_path / "inter.parquet"),
              "items": str(tmp_path / "items.parquet")}  # fmt: skip
    assert _prepare(config, tmp_path / "out") in (SAVED, REFUSED)
    if (tmp_path / "out").is_dir():
        meta = json.loads((tmp_path / "out" / "meta.json").read_text())
        if (ts is not None and not -1e15 < ts < 1e15) or ts != ts:  # not a time: one row skipped
            assert meta["skipped"]["total"] >= 1
        assert meta["interactions"] >= 1


def test_paths_that_are_not_files_are_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")  # reading it would block forever
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    expected = {"folder": "is a folder, not a file", "fifo": "is not a regular file",
                "loop": "symbolic links", "missing": "file not found"}  # fmt: skip
    for kind in SOURCES:
        for name, message in expected.items():
            paths = _write(tmp_path / kind, SOURCES[kind]())
            config = _source_config(kind, [tmp_path / name, paths[1]])
            with pytest.raises(ColdrecError, match=message) as caught:
                build_dataset(DataConfig.model_validate({"source": config}))
            assert str(tmp_path / name) in str(caught.value)


runner = CliRunner()
SETTING_KEYS = ["prepare.kcore", "prepare.train_share", "prepare.split", "source.n_users",
                "source.seed", "source.kind", "prepare", "source", "prepare.duplicates",
                "source.columns", "source.path_sep", "prepare.valid_share"]  # fmt: skip


def _bad_value(rng: random.Random) -> str:
    return rng.choice([
        "[" * 3000 + "]" * 3000, "{a: " * 2000, "9" * 5000, "-1", "1e400", ".inf", "nan",
        "|", "", "'", '"unterminated', "[1, 2", "{x: 1}", r'"\x00"', r'"\ud800"', "😀" * 500,
        "!!python/object:os.system ls", "&a [*a, *a]", "- - -", "null", "true", "0x10",
        "a" * 100_000, "2020-13-45", "*ref", "%TAG", "@", "`",
    ])  # fmt: skip


def test_two_hundred_malformed_settings_end_in_one_error_line(tmp_path: Path) -> None:
    rng = random.Random(5)
    out = tmp_path / "out"
    good = ["data", "prepare", "--set", "source.n_users=60", "--set", "source.n_items=100"]
    assert runner.invoke(app, [*good, "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    failures = []
    for n in range(200):
        key, value = rng.choice(SETTING_KEYS), _bad_value(rng)
        if n % 2:
            args = ["--set", f"{key}={value}"]
        else:
            config = tmp_path / f"c{n}.yaml"
            config.write_text(f"{key.split('.')[0]}:\n  {key.split('.')[-1]}: {value}\n")
            args = ["--config", str(config)]
        result = runner.invoke(app, [*good, *args, "--out", str(out)])
        if result.exit_code == 0:
            continue  # a value that happens to be valid (and replaces the dataset)
        lines = result.stderr.strip().splitlines()
        if not isinstance(result.exception, SystemExit) or result.exit_code not in (2, 3) or \
                len(lines) != 1 or not lines[0].startswith("error: "):  # fmt: skip
            failures.append(f"{args}: {result.exit_code} {result.stderr[-300:]!r}")
        elif (out / "meta.json").read_bytes() != before["meta.json"]:
            before = {p.name: p.read_bytes() for p in out.iterdir()}  # a valid run replaced it
    assert not failures, f"{len(failures)} of 200; first: " + "; ".join(failures[:3])
    assert {p.name for p in out.iterdir()} == set(before)  # the folder is whole
