"""The artifacts of a finished run that a server needs, found in its folder.

A ``coldrec run`` folder holds ``data/`` (the Dataset), ``retrieve/`` (the saved Two-Tower
and its settings: the candidate depth), ``rank/seed<N>/model`` (the fused ranker) and,
when the ranker trained with pseudo labels, ``supervise/`` (their edges and triplets). A
``coldrec rank`` run folder holds ``model/`` and names its Dataset, retrieve run and label
files in its metrics file; it is served as well. A ``coldrec evaluate --model stars``
folder holds ``model/`` (STARS, which ranks the whole catalogue itself) and names its
Dataset in its metrics file (:class:`StarsRun`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coldrec._util.io import read_json
from coldrec.config import validate
from coldrec.data.dataset import Dataset
from coldrec.errors import DataError
from coldrec.rank.fusion import EvidenceBlend, FusedRanker, FusionMode
from coldrec.rank.sequential import SequentialRecommender
from coldrec.rank.stars import StarsRecommender
from coldrec.retrieval.retrieve import RetrieveConfig
from coldrec.retrieval.two_tower import TwoTower
from coldrec.supervision.labels import LabelFiles

__all__ = ["RunArtifacts", "StarsRun", "load_run"]


@dataclass(frozen=True)
class RunArtifacts:
    """A run's Dataset, retriever, ranker and fusion, and the candidate depth it used."""

    folder: Path
    dataset: Dataset
    retriever: TwoTower
    ranker: SequentialRecommender
    mode: FusionMode
    alpha: float
    top_m: int
    """Candidates retrieved per user (the run's ``retrieve.top_m``)."""
    labels: LabelFiles
    """The pseudo labels the ranker trained with (none for E0-like runs)."""
    blend: EvidenceBlend = field(default_factory=EvidenceBlend)
    """The fusion's evidence blend."""


@dataclass(frozen=True)
class StarsRun:
    """A ``coldrec evaluate --model stars`` run: its Dataset and the trained model."""

    folder: Path
    dataset: Dataset
    model: StarsRecommender


def load_run(folder: Path, seed: int | None = None) -> RunArtifacts | StarsRun:
    """The artifacts of the run in ``folder``: an experiment folder (the ranker of
    ``seed``, default the first one there), a ``coldrec rank`` run folder, or a STARS
    ``coldrec evaluate`` run folder."""
    folder = Path(folder)
    sidecar = folder / "model" / "model.json"
    if sidecar.is_file() and str(read_json(sidecar).get("class", "")).endswith(
            ".StarsRecommender"):  # fmt: skip
        inputs = _named_inputs(folder)
        if "dataset" not in inputs:
            raise DataError(f"{folder}: no metrics file naming the Dataset")
        dataset = Dataset.load(inputs["dataset"])
        return StarsRun(folder, dataset, StarsRecommender.load(folder / "model", dataset))
    if (folder / "experiment.json").is_file():
        seeds = sorted(p.name for p in (folder / "rank").glob("seed*")) if (
            folder / "rank").is_dir() else []  # fmt: skip
        if not seeds:
            raise DataError(f"{folder}: the experiment has no finished rank step")
        chosen = f"seed{seed}" if seed is not None else seeds[0]
        model = folder / "rank" / chosen / "model"
        data, retrieval = folder / "data", folder / "retrieve"
        named = _named_inputs(model.parent)
        found = {name: folder / "supervise" / f"{name}.parquet" for name in ("edges", "triplets")
                 if name in named}  # fmt: skip
        labels = LabelFiles(found.get("edges"), found.get("triplets"))
    elif (folder / "model" / "model.json").is_file():
        inputs = _rank_inputs(folder)
        model, data, retrieval = folder / "model", inputs["dataset"], inputs["retrieval"]
        labels = LabelFiles(inputs.get("edges"), inputs.get("triplets"))
    else:
        raise DataError(f"{folder} is neither a coldrec run folder nor a coldrec rank run")
    if not model.is_dir():
        raise DataError(f"{model}: no saved ranker (a run made before models were kept?)")
    dataset = Dataset.load(data)
    fused = FusedRanker.load(model, dataset)
    assert isinstance(fused.ranker, SequentialRecommender)
    assert isinstance(fused.retriever, TwoTower)
    settings = validate(RetrieveConfig, read_json(retrieval / "config.json"))
    return RunArtifacts(folder, dataset, fused.retriever, fused.ranker, fused.mode,
                        fused.alpha, settings.top_m, labels, fused.blend)  # fmt: skip


def _named_inputs(folder: Path) -> dict[str, Path]:
    """The inputs a rank step's metrics file names (none without one)."""
    metrics = sorted(folder.glob("metrics-seed*.json"))
    inputs = read_json(metrics[0]).get("inputs", {}) if metrics else {}
    return {name: Path(path) for name, path in inputs.items()}


def _rank_inputs(folder: Path) -> dict[str, Path]:
    """The Dataset and retrieve run a ``coldrec rank`` run read (its metrics file)."""
    inputs = _named_inputs(folder)
    if not {"dataset", "retrieval"} <= set(inputs):
        raise DataError(f"{folder}: no metrics file naming the Dataset and retrieve run")
    return inputs
