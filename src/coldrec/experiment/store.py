"""The step store: finished steps kept by key, shared by every experiment that uses it.

A step is kept as ``<store>/<step>-<key>/`` with a ``step.json`` marker (its key, the
ids of the makings of the steps it read, its own making id, seconds, settings). A step
is made in a temporary folder that replaces its place only once it has finished
(:func:`~coldrec._util.io.atomic_dir`), under a file lock, so a killed run leaves
finished steps intact and a second process asking for the same step waits instead of
making it again. The trainings of a step keep checkpoints in
``<store>/.<step>-<key>.checkpoints/`` (:mod:`coldrec.training.checkpoint`): a killed
step made again resumes each training where it was; the folder goes once the step is
kept. A run folder links to the steps it used.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldrec import __version__
from coldrec._util.io import atomic_dir, read_json, write_json_atomic
from coldrec.errors import ConfigError
from coldrec.training.checkpoint import checkpoints

__all__ = ["MARKER", "Made", "StepStore", "link"]

log = logging.getLogger(__name__)

MARKER = "step.json"


@dataclass(frozen=True)
class Made:
    """A step as the store holds it: where, whether it was made now, its making's id."""

    folder: Path
    ran: bool
    seconds: float | None
    made: str


class StepStore:
    """The folder of finished steps (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(
        self,
        name: str,
        key: str,
        inputs: list[str],
        settings: dict[str, Any],
        work: Callable[[Path], object],
        force: bool = False,
    ) -> Made:
        """The step ``name`` with ``key`` made from the makings ``inputs``: the kept one,
        or (when absent, made from other inputs, or ``force``) made now by ``work``."""
        target = self.root / f"{name}-{key}"
        with _locked(self.root / f".{target.name}.lock"):
            marker = _marker(target)
            fresh = (marker.get("key"), marker.get("inputs")) == (key, inputs)
            seconds = None
            if force or not fresh:
                seconds = self._make(target, name, key, inputs, settings, work)
            return Made(target, seconds is not None, seconds, _marker(target)["made"])

    def _make(
        self,
        target: Path,
        name: str,
        key: str,
        inputs: list[str],
        settings: dict[str, Any],
        work: Callable[[Path], object],
    ) -> float:
        log.info("step %s (%s)", name, key)
        for stale in self.root.glob(f".{target.name}.*.tmp"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        start = time.perf_counter()
        resume = self.root / f".{target.name}.checkpoints"
        with atomic_dir(target, marker=MARKER) as tmp, checkpoints(resume):
            work(tmp)
            seconds = round(time.perf_counter() - start, 2)
            write_json_atomic(tmp / MARKER, {"step": name, "key": key, "seconds": seconds,
                                             "inputs": inputs, "made": uuid.uuid4().hex,
                                             "settings": settings,
                                             "coldrec_version": __version__})  # fmt: skip
        shutil.rmtree(resume, ignore_errors=True)
        return seconds


def link(link_path: Path, target: Path) -> None:
    """``link_path`` → ``target`` as a relative symlink (replacing an older link only)."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target, link_path.parent)
    if link_path.is_symlink():
        if os.readlink(link_path) == relative:
            return
        link_path.unlink()
    elif link_path.exists():
        raise ConfigError(f"{link_path} exists and is not a step link of coldrec run: refusing "
                          "to replace it (choose another --out)")  # fmt: skip
    link_path.symlink_to(relative, target_is_directory=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _marker(folder: Path) -> dict[str, Any]:
    """A made step's ``step.json``, or ``{}``."""
    marker = folder / MARKER
    return read_json(marker) if marker.is_file() else {}
