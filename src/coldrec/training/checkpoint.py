"""Checkpoints of a training in progress, so that a stopped run resumes at the epoch it
had reached instead of starting the training again.

Inside :func:`checkpoints` (``coldrec run`` opens it for every step, in the store beside
the step), each training of the one epoch loop writes, at most every
``CHECKPOINT_SECONDS`` and always after its last epoch, one file named by a fingerprint
of the training (model settings, data, seed, epochs, validation or final): the loop's
progress (epoch, log, best weights, patience), the network, and every optimiser,
learning-rate schedule and random generator the trainer holds, with torch's and numpy's
global generator states. A training that finds its file resumes from it and ends exactly
as an uninterrupted one would (the tests check this per model family). A trainer must
keep its changing state in those types (``vars(trainer)``); the others are rebuilt by the
model's ``_start`` as before. Data-parallel trainings write none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from coldrec._util.io import json_hash
from coldrec.training.distributed import world_size

if TYPE_CHECKING:
    from coldrec.training.loop import Progress

__all__ = ["CHECKPOINT_SECONDS", "Checkpoint", "checkpoint_for", "checkpoints"]

CHECKPOINT_SECONDS = 60.0
"""Least seconds between two checkpoints of one training."""

_FOLDER: ContextVar[Path | None] = ContextVar("coldrec_checkpoints", default=None)


@contextmanager
def checkpoints(folder: Path | None) -> Iterator[None]:
    """Trainings run inside keep their checkpoints in ``folder`` (``None``: none)."""
    token = _FOLDER.set(folder)
    try:
        yield
    finally:
        _FOLDER.reset(token)


@dataclass
class Checkpoint:
    """One training's checkpoint file."""

    path: Path
    last_saved: float = field(default_factory=time.monotonic)

    def load(self, trainer: Any) -> Progress | None:
        """The progress saved for this training, its state restored into ``trainer``
        (``None``: nothing saved yet)."""
        if not self.path.is_file():
            return None
        saved = torch.load(self.path, weights_only=False)
        trainer.net.load_state_dict(saved["net"])
        for name, state in saved["parts"].items():
            _restore(getattr(trainer, name), state)
        torch.set_rng_state(saved["torch_rng"])
        np.random.set_state(saved["numpy_rng"])
        progress: Progress = saved["progress"]
        return progress

    def save(self, trainer: Any, progress: Progress, last: bool = False) -> None:
        """Write the checkpoint (replacing the previous one whole) when
        ``CHECKPOINT_SECONDS`` have passed since the last, or at the ``last`` epoch."""
        if not last and time.monotonic() - self.last_saved < CHECKPOINT_SECONDS:
            return
        parts = {name: _state(value) for name, value in vars(trainer).items()}
        state = {
            "progress": progress,
            "net": trainer.net.state_dict(),
            "parts": {name: part for name, part in parts.items() if part is not None},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
        }
        partial = self.path.with_name(f"{self.path.name}.partial-{os.getpid()}")
        torch.save(state, partial)
        os.replace(partial, self.path)
        self.last_saved = time.monotonic()


def checkpoint_for(fingerprint: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint of the training ``fingerprint`` describes, in the folder of the
    enclosing :func:`checkpoints` (``None`` outside one, or in a data-parallel run)."""
    folder = _FOLDER.get()
    if folder is None or world_size() > 1:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return Checkpoint(folder / f"{json_hash(fingerprint)}.pt")


def _state(value: Any) -> Any:
    """The state of a changing part of a trainer (``None``: not one)."""
    if isinstance(value, torch.optim.Optimizer | torch.optim.lr_scheduler.LRScheduler):
        return value.state_dict()
    if isinstance(value, torch.Generator):
        return value.get_state()
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    return None


def _restore(value: Any, state: Any) -> None:
    if isinstance(value, torch.Generator):
        value.set_state(state)
    elif isinstance(value, np.random.Generator):
        value.bit_generator.state = state
    else:
        value.load_state_dict(state)
