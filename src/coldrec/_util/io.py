"""File helpers shared by every stage: compressed input, atomic output, hashes, and
coldrec's cache folder.

Every artifact coldrec writes goes through :func:`atomic_write` (one file) or
:func:`atomic_dir` (a folder): a temporary sibling that replaces the target only once it
is complete, so a killed process never leaves a half-written artifact.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

from rich.console import Console
from rich.progress import wrap_file

from coldrec.errors import ColdrecError, DataError

__all__ = [
    "CACHE_DIR_ENV",
    "atomic_dir",
    "atomic_write",
    "cache_root",
    "decode_json",
    "file_sha256",
    "json_hash",
    "made_by_coldrec",
    "open_bytes",
    "read_json",
    "read_json_lines",
    "require_file",
    "write_json_atomic",
]


def require_file(
    path: str | os.PathLike[str], what: str, error: type[ColdrecError] = DataError
) -> Path:
    """Return ``path`` as a :class:`Path`, or raise ``error`` saying why it is not a
    readable regular file (missing, a folder, a FIFO or device, a symlink loop)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise error(f"{what} file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{what} file {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise error(f"{what} file {path} is not a regular file (a FIFO, socket or device)")
    return path


@contextmanager
def open_bytes(path: Path) -> Iterator[IO[bytes]]:
    """Open a file for reading bytes (gunzipping ``*.gz``) with a progress bar.

    The bar shows on a terminal only and disappears when the file is closed. A file
    that is not valid gzip, or is cut short, raises :class:`DataError` naming it.
    """
    console = Console(stderr=True)
    try:
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
            yield (
                cast(IO[bytes], gzip.GzipFile(fileobj=tracked)) if path.suffix == ".gz" else tracked
            )
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc or type(exc).__name__})") from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_hash(payload: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``payload`` as canonical JSON
    (keys sorted): a stable key for settings, data and steps."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:length]


def decode_json(text: str) -> Any:
    """``json.loads``, refusing with a :class:`ValueError` whose message quotes nothing
    of the input: bad JSON, a number of more than 4,300 digits, nesting too deep for
    Python's recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    except ValueError:
        raise ValueError(_HUGE_NUMBER) from None
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None


_HUGE_NUMBER = "not valid JSON (a number of more than 4,300 digits)"
_TOO_DEEP = "not valid JSON (nested too deeply)"


def read_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file, naming the file and position on a malformed one."""
    with open_bytes(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except ValueError:
        raise DataError(f"{path}: {_HUGE_NUMBER}") from None
    except RecursionError:
        raise DataError(f"{path}: {_TOO_DEEP}") from None


def read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSONL file; a malformed line
    raises :class:`DataError` naming the file and line."""
    require_file(path, "JSON lines")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    yield number, decode_json(line)
            except UnicodeDecodeError:
                raise DataError(f"{path}:{number}: not UTF-8 text") from None
            except ValueError as exc:
                raise DataError(f"{path}:{number}: {exc}") from None


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it replaces
    ``path`` (a rename), and on an error it is removed and ``path`` is left as it was.

    Example::

        with atomic_write(out / "vectors.npy") as tmp, tmp.open("wb") as handle:
            np.save(handle, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN refused) through :func:`atomic_write`."""
    with atomic_write(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def made_by_coldrec(marker: Path) -> bool:
    """Whether ``marker`` is a JSON file coldrec wrote (an object with ``coldrec_version``)."""
    if not marker.is_file():
        return False
    try:
        found = json.loads(marker.read_bytes())
    except (ValueError, RecursionError, OSError):
        return False
    return isinstance(found, dict) and "coldrec_version" in found


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_dir(target: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``target`` that replaces it once the block succeeds.

    A crash inside the block leaves ``target`` as it was (or absent) and removes the
    temporary folder, so readers never see a half-written artifact. An existing
    ``target`` is replaced only if it is an empty folder or one coldrec made: its
    ``marker`` file is coldrec's JSON (it records ``coldrec_version``); anything else,
    someone's folder that happens to hold a ``meta.json``, raises :class:`DataError`.
    """
    target = Path(target).resolve()
    if target.exists() and not (_is_empty_dir(target) or made_by_coldrec(target / marker)):
        raise DataError(
            f"{target} exists and is not a folder coldrec made (no coldrec {marker}): "
            "refusing to replace it; choose another path or remove it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~_umask())
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


CACHE_DIR_ENV = "COLDREC_CACHE_DIR"
"""Environment variable naming the cache folder when the config leaves it unset."""


def cache_root(explicit: Path | None = None) -> Path:
    """coldrec's cache folder (text vectors, LLM answers): ``explicit`` if given, else
    ``$COLDREC_CACHE_DIR``, else ``~/.cache/coldrec``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    from_env = os.environ.get(CACHE_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "coldrec"
