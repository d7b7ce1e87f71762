"""Saved models: a folder with ``model.safetensors`` (named tensors) and ``model.json``.

``model.json`` describes the model without running any of it::

    {"format": 1, "class": "coldrec.rank.sequential.SequentialRecommender",
     "config_class": "coldrec.rank.sasrec.SASRecConfig", "config": {…},
     "coldrec_version": "0.1.0", "data_hash": "…",
     "item_ids": [row i = item id i], "user_ids": [row u = user id u],
     "training": {"validation": {…}, "final": {…}}, …extra fields of the model}

Classes are named by import path and only coldrec's own are loaded; weights are
safetensors, never pickles. A folder is written atomically (:func:`atomic_dir`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from coldrec import __version__
from coldrec._util.io import atomic_dir, atomic_write, read_json, write_json_atomic
from coldrec.data.dataset import Dataset
from coldrec.errors import DataError
from coldrec.training.loop import TrainingLog

if TYPE_CHECKING:
    from coldrec.training.model import TrainedModel

__all__ = [
    "SIDECAR",
    "WEIGHTS",
    "Saved",
    "check_ids",
    "class_path",
    "import_class",
    "read_saved",
    "write_saved",
]

SIDECAR = "model.json"
WEIGHTS = "model.safetensors"
_FORMAT = 1


@dataclass(frozen=True)
class Saved:
    """What ``model.json`` holds, parsed."""

    config: Any
    item_ids: list[str]
    user_ids: list[str]
    data_hash: str | None
    training_log: TrainingLog
    fields: dict[str, Any]
    """The whole sidecar, extra fields included."""


def class_path(cls: type) -> str:
    """``module.Class`` of a class, as recorded in a sidecar."""
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str, where: Path) -> type:
    """The class a sidecar names; only coldrec's own classes are imported."""
    module, _, name = path.rpartition(".")
    if not module.startswith("coldrec."):
        raise DataError(f"{where}: names {path!r}, which is not a coldrec class")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise DataError(f"{where}: names {path!r}, which this coldrec does not have") from None
    if not isinstance(found, type):
        raise DataError(f"{where}: {path!r} is not a class")
    return found


def write_saved(
    folder: Path, model: TrainedModel, tensors: dict[str, torch.Tensor], extra: dict[str, Any]
) -> Path:
    """Write ``model``'s weights and sidecar into ``folder`` (replacing an older saved
    model there, and nothing else) and return the folder."""
    sidecar = {
        "format": _FORMAT,
        "class": class_path(type(model)),
        "config_class": class_path(type(model.config)),
        "config": model.config.model_dump(mode="json"),
        "coldrec_version": __version__,
        "data_hash": model.data_hash,
        "item_ids": model.item_ids,
        "user_ids": model.user_ids,
        "training": model.training_log.to_json(),
        **extra,
    }
    with atomic_dir(Path(folder), marker=SIDECAR) as tmp:
        weights = save({name: t.detach().contiguous() for name, t in tensors.items()})
        with atomic_write(tmp / WEIGHTS) as path:  # save_file would leave the file 0600
            path.write_bytes(weights)
        model._write_files(tmp)
        write_json_atomic(tmp / SIDECAR, sidecar)
    return Path(folder).resolve()


def read_saved(
    folder: Path, cls: type, dataset: Dataset | None = None
) -> tuple[Saved, dict[str, torch.Tensor]]:
    """The sidecar and tensors of a model of class ``cls`` saved in ``folder``; with
    ``dataset``, :class:`DataError` unless it has the model's items and users."""
    sidecar_path = folder / SIDECAR
    if not sidecar_path.is_file():
        raise DataError(f"{folder} is not a saved coldrec model (no {SIDECAR})")
    fields = read_json(sidecar_path)
    if not isinstance(fields, dict) or fields.get("format") != _FORMAT:
        raise DataError(f"{sidecar_path}: not a coldrec model sidecar of format {_FORMAT}")
    if fields.get("class") != class_path(cls):
        raise DataError(f"{sidecar_path}: holds a {fields.get('class')}, not a {class_path(cls)}")
    config_class = import_class(str(fields.get("config_class")), sidecar_path)
    if not issubclass(config_class, BaseModel):
        raise DataError(f"{sidecar_path}: {config_class.__name__} is not a settings class")
    try:
        config = config_class.model_validate(fields["config"])
        saved = Saved(config, list(fields["item_ids"]), list(fields["user_ids"]),
                      fields.get("data_hash"), TrainingLog.from_json(fields["training"]),
                      fields)  # fmt: skip
    except (ValidationError, KeyError, TypeError) as exc:
        raise DataError(f"{sidecar_path}: malformed ({exc})".replace("\n", " ")) from None
    if dataset is not None:
        check_ids(saved, dataset, folder)
    try:
        tensors = load_file(folder / WEIGHTS)
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{folder / WEIGHTS}: not readable safetensors ({exc})") from None
    return saved, tensors


def check_ids(saved: Saved, dataset: Dataset, folder: Path) -> None:
    """Refuse a Dataset whose items or users differ from the ones the model was trained
    on: a model's rows are the training Dataset's ids, in its order."""
    for what, ours, theirs in (
        ("items", saved.item_ids, dataset.items["item"].tolist()),
        ("users", saved.user_ids, dataset.users["user"].tolist()),
    ):
        if ours != theirs:
            pairs = zip(ours, theirs, strict=False)
            differ = next(
                (i for i, (a, b) in enumerate(pairs) if a != b), min(len(ours), len(theirs))
            )
            raise DataError(
                f"the model in {folder} was trained on {len(ours):,} {what}, the dataset has "
                f"{len(theirs):,} and they first differ at row {differ}: load it with the "
                "Dataset it was trained on"
            )
