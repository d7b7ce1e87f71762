"""Malformed input never crashes, never corrupts: over a thousand seeded mutations of
small valid files of every source, and malformed settings, end in a Dataset or in one
:class:`~coldrec.errors.ColdrecError` naming the file — never another exception — and a
failed ``data prepare`` leaves an existing ``--out`` folder as it was."""

from __future__ import annotations

import json
import os
import random
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
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
    meta = "".join(repr({"asin": i, "title": t, "categories": [["Beauty", "Lips"]],
                         "price": 3.5, "brand": "B"}) + "\n" for i, t in _titles().items())  # fmt: skip
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
        return data + data[: at]
    return data[:at] + b'"' + data[at:]  # an unbalanced quote


_TOKEN = __import__("re").compile(r"-?\d+(?:\.\d+)?|\"[^\"\n]{1,20}\"|'[^'\n]{1,20}'")


def _source_config(kind: str, paths: list[Path]) -> dict[str, Any]:
    return {"kind": kind, "interactions": str(paths[0]), "items": str(paths[1])}


def _prepare(config: dict[str, Any], out: Path) -> str | None:
    """``None`` when the input prepared and saved, or was refused with one short
    ColdrecError naming an input file; else what went wrong."""
    try:
        build_dataset(DataConfig.model_validate({"source": config})).save(out)
    except ColdrecError as error:
        message = str(error)
        files = [Path(config["interactions"]).name, Path(config["items"]).name]
        if len(message) > 1000:
            return f"an error of {len(message)} characters: {message[:200]}"
        if not any(name in message for name in files):
            return f"an error naming no input file: {message}"
    except Exception:
        return traceback.format_exc(limit=4)
    return None


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


def test_a_thousand_damaged_files_end_in_a_dataset_or_a_clear_error(tmp_path: Path) -> None:
    failures = []
    for kind, n, _, files in _cases(1100, seed=23):
        folder = tmp_path / f"{n}"
        folder.mkdir()
        paths = []
        for name, data in files.items():
            (folder / name).write_bytes(data)
            paths.append(folder / name)
        problem = _prepare(_source_config(kind, paths), folder / "out")
        if problem:
            failures.append(f"{kind} case {n}:\n{problem}")
    assert not failures, f"{len(failures)} tracebacks; first:\n" + "\n".join(failures[:3])
