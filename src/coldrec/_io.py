"""File helpers shared by every stage: compressed input, atomic output, hashes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import wrap_file

from coldrec.errors import DataError

__all__ = [
    "atomic_dir",
    "file_sha256",
    "open_text",
    "read_json",
    "require_file",
    "write_json_atomic",
]


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """Return ``path`` as a :class:`Path`, or raise :class:`DataError` if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    return path


@contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Open a UTF-8 text file (gunzipping ``*.gz``) with a progress bar over its bytes.

    The bar shows on a terminal only and disappears when the file is closed.
    """
    console = Console(stderr=True)
    with (
        path.open("rb") as raw,
        wrap_file(
            raw,
            total=path.stat().st_size,
            description=f"reading {path.name}",
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as tracked,
    ):
        binary: IO[bytes] = gzip.GzipFile(fileobj=tracked) if path.suffix == ".gz" else tracked
        yield io.TextIOWrapper(binary, encoding="utf-8", newline="")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """Parse a JSON file, naming the file and position on a syntax error."""
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that replaces it once the block succeeds.

    A crash inside the block leaves ``target`` as it was (or absent) and removes the
    temporary folder, so readers never see a half-written artifact.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
