"""``coldrec run CONFIG.yaml``: one experiment as typed, cached, resumable steps.

Steps, in order (each a folder of the run directory):

===========  =====================================  ===================================
step         does                                   reads
===========  =====================================  ===================================
prepare      ``data`` → the Dataset (``data/``)     the raw files
retrieve     Two-Tower + FAISS candidates, the      prepare
             saved Two-Tower (``retrieve/``)
supervise    taxonomy, LLM stages → edges,          prepare, retrieve
             triplets (only with ``supervise``)
tag          attribute tags of the items            prepare
             (only with ``tag``; STARS reads them)
augment      LLM-judged extra interactions of       prepare
             sparse users (only with ``augment``;
             graph baselines with ``data_level``)
rank         per seed: the ranker with the labels   prepare, retrieve, supervise,
             of ``losses`` (or the tags), fused,    tag
             evaluated and
             kept (``rank/seed<N>/``)
llm_rank     per seed: the LLM ranks the fused      prepare, rank
             ranker's top C of sampled users
             (only with ``llm_rank``;
             ``llm_rank/seed<N>/``)
baselines    per seed and baseline: ``evaluate``    prepare
             (``baselines/<name>/seed<N>/``)
report       ``report/report.md`` over all seeds    rank, baselines, supervise
===========  =====================================  ===================================

A step's key hashes its typed settings, the keys of the steps it reads, coldrec's version
and the source of the code it runs (:func:`~coldrec._util.source.source_hash`), so a code
fix makes the steps that run that code stale. Steps are kept in a store shared by
experiments (:mod:`coldrec.experiment.store`; ``.store`` beside the run folder by
default), so E0–E3 make their common steps once. ``force`` reruns a step and every step
after it. Each made step records the ids of the makings of the steps it read, so a step
made again (forced, in any experiment that shares it) makes every step that read the old
one stale.

``seeds`` vary what is trained after the labels (the ranker and the baselines); the
candidates and the labels are made once, with ``upstream_seed``, so that E0–E3 compare
rankers on the same candidates and the same labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from coldrec import __version__
from coldrec._util.io import json_hash, made_by_coldrec, read_json, write_json_atomic
from coldrec._util.source import source_hash
from coldrec.data.prepare import build_dataset
from coldrec.errors import ConfigError
from coldrec.eval.report import write_report
from coldrec.experiment.config import ExperimentConfig, Loss
from coldrec.experiment.evaluate import run_evaluation
from coldrec.experiment.llm_rank import run_llm_rank, summary_markdown
from coldrec.experiment.store import MARKER, StepStore, link
from coldrec.rank.run import RankConfig, run_ranking
from coldrec.retrieval.retrieve import run_retrieval
from coldrec.supervision.augment import run_augmentation
from coldrec.supervision.labels import LabelFiles
from coldrec.supervision.quality import quality_line
from coldrec.supervision.run import run_supervision, stages_markdown
from coldrec.supervision.tags import run_tagging

__all__ = ["STEPS", "Step", "plan", "run_experiment", "step_key"]

log = logging.getLogger(__name__)

STEPS = (
    "prepare",
    "retrieve",
    "supervise",
    "tag",
    "augment",
    "rank",
    "llm_rank",
    "baselines",
    "report",
)


class RankStep(BaseModel):
    """The rank step's settings: the ranker's, and which label losses it trains with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: RankConfig
    losses: tuple[Loss, ...]


class ReportStep(BaseModel):
    """The report step's settings: the published figures printed beside ours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    references: dict[str, dict[str, dict[str, float]]]


@dataclass(frozen=True)
class Step:
    """One unit of work: its folder, its typed settings, the steps it reads, the module
    whose code it runs (part of its key), and how it fills a (temporary) folder."""

    name: str
    folder: str
    settings: BaseModel
    reads: tuple[str, ...]
    module: str
    work: Callable[[Path], object]


def plan(config: ExperimentConfig, out: Path) -> list[Step]:
    """The steps of ``config`` in order; inputs are the run folder's own step folders."""
    data, retrieval, labels = out / "data", out / "retrieve", out / "supervise"
    steps = [Step("prepare", "data", config.data, (), "coldrec.data.prepare",
                  lambda tmp: build_dataset(config.data).save(tmp))]  # fmt: skip
    if config.rank is not None or config.supervise is not None:
        steps.append(Step("retrieve", "retrieve", config.retrieve, ("data",),
                          "coldrec.retrieval.retrieve",
                          partial(run_retrieval, config.retrieve, data)))  # fmt: skip
    if config.supervise is not None:
        steps.append(Step("supervise", "supervise", config.supervise, ("data", "retrieve"),
                          "coldrec.supervision.run",
                          partial(run_supervision, config.supervise, data, retrieval)))  # fmt: skip
    tags = None
    if config.tag is not None:
        tags = out / "tag" / "tags.parquet"
        steps.append(Step("tag", "tag", config.tag, ("data",), "coldrec.supervision.tags",
                          partial(run_tagging, config.tag, data)))  # fmt: skip
    augmented = None
    if config.augment is not None:
        augmented = out / "augment"
        steps.append(Step("augment", "augment", config.augment, ("data",),
                          "coldrec.supervision.augment",
                          partial(run_augmentation, config.augment, data)))  # fmt: skip
    view = config.supervise is not None and config.supervise.validation_view
    files = LabelFiles.of_run(labels, "sim" in config.losses, "pair" in config.losses, view)
    reads = ("data", "retrieve", *(("supervise",) if config.losses else ()),
             *(("tag",) if tags else ()))  # fmt: skip
    for seed in config.seeds:
        if config.rank is not None:
            rank = config.rank_run(seed)
            steps.append(Step("rank", f"rank/seed{seed}", RankStep(rank=rank,
                              losses=config.losses), reads, "coldrec.rank.run",
                              partial(run_ranking, rank, data, retrieval, labels=files,
                                      tags=tags)))  # fmt: skip
        if config.llm_rank is not None:
            ranked = f"rank/seed{seed}"
            work = partial(run_llm_rank, config.llm_rank, data, out / ranked)
            steps.append(Step("llm_rank", f"llm_rank/seed{seed}", config.llm_rank,
                              ("data", ranked), "coldrec.experiment.llm_rank", work))  # fmt: skip
        for name in config.baselines:
            base = config.baseline_run(name, seed)
            reading = augmented if getattr(base.model, "data_level", False) else None
            steps.append(Step("baselines", f"baselines/{name}/seed{seed}", base,
                              ("data", *(("augment",) if reading else ())),
                              "coldrec.experiment.evaluate",
                              partial(run_evaluation, base, data,
                                      augmented=reading)))  # fmt: skip
    results = tuple(s.folder for s in steps
                    if s.name in ("rank", "llm_rank", "baselines", "supervise"))  # fmt: skip
    steps.append(Step("report", "report", ReportStep(references=config.references), results,
                      "coldrec.experiment.run",
                      partial(write_experiment_report, config, out)))  # fmt: skip
    return steps


def step_key(step: Step, keys: dict[str, str]) -> str:
    """Hash of the step's name, settings, the keys of the steps it reads, coldrec's
    version and the source of the code the step runs."""
    settings = step.settings.model_dump(mode="json")
    reads = [keys[folder] for folder in step.reads]
    return json_hash([step.name, settings, reads, __version__, source_hash(step.module)])


def run_experiment(
    config: ExperimentConfig,
    out: Path,
    force: str | None = None,
    command: str | None = None,
    store: Path | None = None,
) -> list[dict[str, Any]]:
    """Run every step not finished with the same key; ``force`` reruns that step and all
    after it. Returns one record per step (folder, key, whether it ran, seconds).

    Steps live in ``store`` (default: ``.store`` beside ``out``) and ``out/<folder>``
    links to them (:mod:`coldrec.experiment.store`).
    """
    if force is not None and force not in STEPS:
        raise ConfigError(f"force must be one of {', '.join(STEPS)}; got {force!r}")
    _check_run_folder(out)
    steps = StepStore(store or out.parent / ".store")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "experiment.json", {"config": config.model_dump(mode="json"),
                                                "command": command,
                                                "coldrec_version": __version__})  # fmt: skip
    forced = set(STEPS[STEPS.index(force) :]) if force else set()
    keys: dict[str, str] = {}
    made: dict[str, str] = {}  # folder → the id of the making of the step used there
    records = []
    for step in plan(config, out):
        key = keys[step.folder] = step_key(step, keys)
        inputs = [made[folder] for folder in step.reads]
        settings = step.settings.model_dump(mode="json")
        kept = steps.get(step.name, key, inputs, settings, step.work, step.name in forced)
        made[step.folder] = kept.made
        link(out / step.folder, kept.folder)
        records.append({"step": step.name, "folder": step.folder, "key": key, "ran": kept.ran,
                        "seconds": kept.seconds})  # fmt: skip
    return records


def _check_run_folder(out: Path) -> None:
    """Refuse an ``out`` that is neither new, empty, nor a run folder coldrec made: its
    files would be overwritten or linked over. (Run folders of coldrec before 0.1's
    source reorganisation have an ``experiment.json`` of just ``config`` and ``command``.)"""
    if not out.exists():
        return
    marker = out / "experiment.json"
    found = read_json(marker) if marker.is_file() else None
    earlier = isinstance(found, dict) and set(found) == {"config", "command"}
    if out.is_dir() and (not any(out.iterdir()) or made_by_coldrec(marker) or earlier):
        return
    raise ConfigError(f"{out} exists and is not a run folder of coldrec run (no coldrec "
                      "experiment.json): choose another --out")  # fmt: skip


def write_experiment_report(config: ExperimentConfig, out: Path, tmp: Path) -> None:
    """``report.md``: the tables over every seed (with ``references``), the bar chart,
    the LLM accounting, wall time per step and the command."""
    dirs = [out / "rank" / f"seed{seed}" for seed in config.seeds if config.rank is not None]
    dirs += [out / "baselines" / name / f"seed{seed}"
             for name in config.baselines for seed in config.seeds]  # fmt: skip
    labels = read_json(out / "supervise" / "summary.json") if config.supervise else {}
    write_report(dirs, tmp, config.references, _notes(config, out), labels.get("warnings", []))


def _label_passes(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The supervise step's passes by name: the labels, and the validation view's."""
    view = summary.get("validation_view")
    return {"supervise": summary, **({"supervise (validation view)": view} if view else {})}


def _notes(config: ExperimentConfig, out: Path) -> str:
    # The report being written is left out: its step.json, if any, is the previous one's.
    steps = [(s.folder, read_json(out / s.folder / MARKER)["seconds"])
             for s in plan(config, out)
             if s.folder != "report" and (out / s.folder / MARKER).is_file()]  # fmt: skip
    lines = ["## Wall time per step", "", "| step | seconds |", "|---|---:|",
             *(f"| {folder} | {seconds:,.1f} |" for folder, seconds in steps)]  # fmt: skip
    if config.supervise is not None:
        summary = read_json(out / "supervise" / "summary.json")
        backend = summary["backend"]
        kind = "a language model" if backend["generates_text"] else "no language model"
        lines += ["", "## LLM accounting", "",
                  f"Backend `{backend['identity']}` ({kind}), {summary['users']:,} users, "
                  f"{summary['edges']:,} edges ({summary['edges_on_cold_items']:,} on cold "
                  f"items), {summary['triplets']:,} triplets, "
                  f"{summary['seconds_per_user']:.2f} s per user.", "",
                  stages_markdown(_label_passes(summary)), "",
                  "Label quality (edges against the labelled users' held-out "
                  "interactions, beside a random control with as many edges per user):", "",
                  *(f"- {name}: {quality_line(part['quality'])}"
                    for name, part in _label_passes(summary).items())]  # fmt: skip
    if config.llm_rank is not None:
        lines += ["", "## The LLM as ranker", ""]
        for seed in config.seeds:
            summary = read_json(out / "llm_rank" / f"seed{seed}" / "summary.json")
            lines += [f"Seed {seed}:", "", summary_markdown(summary), ""]
    command = read_json(out / "experiment.json").get("command")
    if command:
        lines += ["", "## Command", "", f"    {command}"]
    return "\n".join(lines)
