"""``coldrec run CONFIG.yaml``: one experiment as named, cached, resumable steps.

Steps, in order (each a folder of the run directory):

===========  =====================================  ===================================
step         does                                   reads
===========  =====================================  ===================================
prepare      ``data`` → the Dataset (``data/``)     the raw files
encode       item text vectors (``encode/``)        prepare
retrieve     Two-Tower + FAISS candidates           prepare, encode
taxonomy     ``taxonomy/taxonomy.json``             prepare, retrieve
supervise    LLM stages → edges, triplets           prepare, retrieve, taxonomy
             (only with a ``supervise`` node)
rank         per seed: the ranker with the labels   prepare, retrieve, supervise
             of ``losses``, fused and evaluated
             (``rank/seed<N>/``)
baselines    per seed and baseline: ``evaluate``    prepare
             (``baselines/<name>/seed<N>/``)
report       ``report/report.md`` over all seeds    rank, baselines, supervise
===========  =====================================  ===================================

A step's key is a hash of its own settings and the keys of the steps it reads. Steps
are kept in a store shared by experiments (``<store>/<step>-<key>/``, with the key in
its ``step.json``; the run folder links to them), so E0–E3 make their common steps
once. A step runs in a temporary folder that takes its place only when it has
finished, so a killed run leaves finished steps intact and resumes where it stopped
(the LLM stages resume through the answer cache); a step whose key is unchanged is
skipped. ``force`` reruns a step and every step after it. Each made step records the
ids of the makings of the steps it read, so a step made again (forced, in any
experiment that shares it) makes every step that read the old one stale.

``seeds`` vary what is trained after the labels (the ranker and the baselines); the
candidates and the labels are made once, with ``upstream_seed``, so that E0–E3 compare
rankers on the same candidates and the same labels.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldrec._io import read_json, write_json_atomic
from coldrec.config import validate
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import DataConfig, build_dataset
from coldrec.data.taxonomy import TaxonomyConfig, build_taxonomy
from coldrec.errors import ConfigError
from coldrec.eval.report import write_report
from coldrec.eval.runner import EvaluateConfig, run_evaluation
from coldrec.rank.run import RankConfig, run_ranking
from coldrec.retrieval.retrieve import RetrieveConfig, run_retrieval
from coldrec.supervision.run import SuperviseConfig, run_supervision, stages_markdown
from coldrec.text import TextEncoder, TextEncoderConfig, load_vectors, save_vectors

__all__ = ["STEPS", "ExperimentConfig", "Step", "plan", "run_experiment"]

log = logging.getLogger(__name__)

STEPS = ("prepare", "encode", "retrieve", "taxonomy", "supervise", "rank", "baselines", "report")
_PLACEHOLDER = Path("<run>")


class ExperimentConfig(BaseModel):
    """An experiment: data, the stage settings and the seeds (see the module doc).

    ``retrieve``, ``supervise``, ``rank`` and each of ``baselines`` hold the settings of
    ``coldrec retrieve``, ``supervise``, ``rank`` and ``evaluate`` without their paths,
    which the runner fills in; they are checked when the experiment is read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Method name of the ranker in reports."""
    seeds: tuple[int, ...] = Field((0,), min_length=1)
    upstream_seed: int = 0
    """Seed of the retriever (and of the user sample of the LLM stages)."""
    data: DataConfig = Field(default_factory=DataConfig)
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """The item text encoder of the ``encode`` step, the retriever and the LLM stages'
    evidence (unless their nodes set their own)."""
    retrieve: dict[str, Any] = Field(default_factory=dict)
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)
    supervise: dict[str, Any] | None = None
    """The LLM stages; ``None``: no labels (E0)."""
    losses: tuple[Literal["sim", "pair"], ...] = ()
    """Label losses of the ranker: ``sim`` (edges, ``L_sim``), ``pair`` (triplets)."""
    rank: dict[str, Any] = Field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Extra methods evaluated beside the ranker: name → ``evaluate`` settings."""
    references: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    """Published figures printed beside ours: method → segment → metric → value."""

    @model_validator(mode="after")
    def _check_nodes(self) -> Self:
        if self.losses and self.supervise is None:
            raise ValueError(f"losses {list(self.losses)} need a supervise node")
        if "taxonomy" in (self.supervise or {}):  # the taxonomy step's tree is the one used
            raise ValueError("supervise.taxonomy has no effect here: set the top-level "
                             "taxonomy node instead")  # fmt: skip
        for seed in self.seeds:  # each node must make a valid step config
            _rank_config(self, _PLACEHOLDER, seed)
            for name in self.baselines:
                _baseline_config(self, _PLACEHOLDER, name, seed)
        _retrieve_config(self, _PLACEHOLDER)
        if self.supervise is not None:
            _supervise_config(self, _PLACEHOLDER)
        return self


def _settings(where: str, model: type[BaseModel], node: dict[str, Any], **paths: Any) -> Any:
    """``model`` from an experiment node plus the paths the runner fills in; an error
    names the node (``where``)."""
    try:
        return validate(model, {**node, **paths})
    except ConfigError as exc:
        raise ConfigError(f"experiment node {where!r}: {exc}") from None


def _with_encoder(config: ExperimentConfig, node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with the experiment's ``encoder`` unless it sets its own."""
    return {"encoder": config.encoder.model_dump(mode="json"), **node}


def _retrieve_config(config: ExperimentConfig, out: Path) -> RetrieveConfig:
    retrieve = {**config.retrieve, "model": _with_encoder(config, config.retrieve.get("model", {}))}
    return _settings("retrieve", RetrieveConfig, retrieve, dataset=out / "data",
                     seed=config.upstream_seed)  # fmt: skip


def _supervise_config(config: ExperimentConfig, out: Path) -> SuperviseConfig:
    node = _with_encoder(config, {"seed": config.upstream_seed, **(config.supervise or {})})
    paths = {"dataset": out / "data", "candidates": out / "retrieve",
             "taxonomy_path": out / "taxonomy" / "taxonomy.json"}  # fmt: skip
    return _settings("supervise", SuperviseConfig, node, **paths)


def _rank_config(config: ExperimentConfig, out: Path, seed: int) -> RankConfig:
    model = dict(config.rank.get("model", {}))
    labels = out / "supervise"
    if "sim" in config.losses:
        model["edges"] = labels / "edges.parquet"
    if "pair" in config.losses:
        model["triplets"] = labels / "triplets.parquet"
    node = {**config.rank, "model": model, "name": config.name, "seed": seed}
    return _settings("rank", RankConfig, node, dataset=out / "data", candidates=out / "retrieve")


def _baseline_config(config: ExperimentConfig, out: Path, name: str, seed: int) -> EvaluateConfig:
    node = {**config.baselines[name], "name": name, "seed": seed}
    return _settings(f"baselines.{name}", EvaluateConfig, node, dataset=out / "data")


@dataclass(frozen=True)
class Step:
    """One unit of work: its folder, the settings it is keyed by, the steps it reads,
    and how it fills a (temporary) folder."""

    name: str
    folder: str
    settings: dict[str, Any]
    reads: tuple[str, ...]
    work: Callable[[Path], None]


def plan(config: ExperimentConfig, out: Path) -> list[Step]:
    """The steps of ``config`` in order (folders under ``out``). Settings are keyed with
    the paths inside the run folder written relative to it, so a moved run folder keeps
    its keys."""
    retrieve, keyed = _retrieve_config(config, out), _retrieve_config(config, _PLACEHOLDER)
    steps = [
        Step("prepare", "data", _dump(config.data), (),
             lambda tmp: build_dataset(config.data).save(tmp)),
        Step("encode", "encode", _dump(config.encoder), ("data",),
             lambda tmp: _encode(config, out, tmp)),
        Step("retrieve", "retrieve", _dump(keyed), ("data", "encode"),
             lambda tmp: run_retrieval(retrieve, tmp)),
        Step("taxonomy", "taxonomy", _dump(config.taxonomy), ("data", "retrieve"),
             lambda tmp: _taxonomy(config, out, tmp)),
    ]  # fmt: skip
    if config.supervise is not None:
        supervise = _supervise_config(config, out)
        keyed_supervise = _dump(_supervise_config(config, _PLACEHOLDER))
        reads = ("data", "retrieve", "taxonomy")
        steps.append(Step("supervise", "supervise", keyed_supervise, reads,
                          lambda tmp: run_supervision(supervise, tmp)))  # fmt: skip
    labels = ("supervise",) if config.losses else ()
    for seed in config.seeds:
        rank, keyed_rank = _rank_config(config, out, seed), _rank_config(config, _PLACEHOLDER, seed)
        steps.append(Step("rank", f"rank/seed{seed}", _dump(keyed_rank),
                          ("data", "retrieve", *labels),
                          lambda tmp, rank=rank: run_ranking(rank, tmp)))  # fmt: skip
        for name in config.baselines:
            base = _baseline_config(config, out, name, seed)
            keyed_base = _dump(_baseline_config(config, _PLACEHOLDER, name, seed))
            steps.append(Step("baselines", f"baselines/{name}/seed{seed}", keyed_base, ("data",),
                              lambda tmp, base=base: run_evaluation(base, tmp)))  # fmt: skip
    results = tuple(s.folder for s in steps if s.name in ("rank", "baselines", "supervise"))
    steps.append(Step("report", "report", {"references": config.references}, results,
                      lambda tmp: write_experiment_report(config, out, tmp)))  # fmt: skip
    return steps


def _dump(step_config: BaseModel) -> dict[str, Any]:
    return step_config.model_dump(mode="json")


def _encode(config: ExperimentConfig, out: Path, tmp: Path) -> None:
    dataset = Dataset.load(out / "data")
    vectors = TextEncoder(config.encoder).encode(dataset.item_text)
    save_vectors(tmp / "item_vectors.npy", vectors,
                 {"model": config.encoder.model, "rows_are": "item ids"})  # fmt: skip


def _taxonomy(config: ExperimentConfig, out: Path, tmp: Path) -> None:
    dataset = Dataset.load(out / "data")
    item_vectors, _ = load_vectors(out / "retrieve" / "item_vectors.npy")
    build_taxonomy(dataset, item_vectors, config.taxonomy).save(tmp / "taxonomy.json")


def write_experiment_report(config: ExperimentConfig, out: Path, tmp: Path) -> None:
    """``report.md``: the tables over every seed (with ``references``), the bar chart,
    the LLM accounting, wall time per step and the command."""
    dirs = [out / "rank" / f"seed{seed}" for seed in config.seeds]
    dirs += [out / "baselines" / name / f"seed{seed}"
             for name in config.baselines for seed in config.seeds]  # fmt: skip
    write_report(dirs, tmp, config.references, _notes(config, out))


def _notes(config: ExperimentConfig, out: Path) -> str:
    # The report being written is left out: its step.json, if any, is the previous one's.
    steps = [(s.folder, read_json(out / s.folder / "step.json")["seconds"])
             for s in plan(config, out)
             if s.folder != "report" and (out / s.folder / "step.json").is_file()]  # fmt: skip
    lines = ["## Wall time per step", "", "| step | seconds |", "|---|---:|",
             *(f"| {folder} | {seconds:,.1f} |" for folder, seconds in steps)]  # fmt: skip
    summary_path = out / "supervise" / "summary.json"
    if config.supervise is not None:
        summary = read_json(summary_path)
        backend = summary["backend"]
        kind = "a language model" if backend["generates_text"] else "no language model"
        lines += ["", "## LLM accounting", "",
                  f"Backend `{backend['identity']}` ({kind}), {summary['users']:,} users, "
                  f"{summary['edges']:,} edges ({summary['edges_on_cold_items']:,} on cold "
                  f"items), {summary['triplets']:,} triplets, "
                  f"{summary['seconds_per_user']:.2f} s per user.", "",
                  stages_markdown({"supervise": summary})]  # fmt: skip
    command = read_json(out / "experiment.json").get("command")
    if command:
        lines += ["", "## Command", "", f"    {command}"]
    return "\n".join(lines)


def step_key(step: Step, keys: dict[str, str]) -> str:
    """sha256 of the step's name, settings and the keys of the steps it reads."""
    payload = [step.name, step.settings, [keys[folder] for folder in step.reads]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_experiment(
    config: ExperimentConfig,
    out: Path,
    force: str | None = None,
    command: str | None = None,
    store: Path | None = None,
) -> list[dict[str, Any]]:
    """Run every step not finished with the same key; ``force`` reruns that step and all
    after it. Returns one record per step (folder, key, whether it ran, seconds).

    Steps live in ``store`` (default: ``.store`` beside ``out``) as ``<step>-<key>/``,
    and ``out/<folder>`` links to them, so experiments that share steps (E0–E3 share
    everything up to the labels) make them once. A step is made under a file lock: a
    second process asking for the same step waits for it instead of making it again.
    """
    if force is not None and force not in STEPS:
        raise ConfigError(f"force must be one of {', '.join(STEPS)}; got {force!r}")
    store = store or out.parent / ".store"
    out.mkdir(parents=True, exist_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "experiment.json", {"config": config.model_dump(mode="json"),
                                                "command": command})  # fmt: skip
    forced = set(STEPS[STEPS.index(force) :]) if force else set()
    keys: dict[str, str] = {}
    made: dict[str, str] = {}  # folder → the id of the making of the step used there
    records = []
    for step in plan(config, out):
        key = keys[step.folder] = step_key(step, keys)
        inputs = [made[folder] for folder in step.reads]
        stored = store / f"{step.name}-{key}"
        with _locked(store / f".{stored.name}.lock"):
            marker = _marker(stored)
            ran = step.name in forced or (marker.get("key"), marker.get("inputs")) != (key, inputs)
            seconds = _run_step(step, stored, key, inputs) if ran else None
            made[step.folder] = _marker(stored)["made"]
        _link(out / step.folder, stored)
        records.append({"step": step.name, "folder": step.folder, "key": key, "ran": ran,
                        "seconds": seconds})  # fmt: skip
    return records


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _link(link: Path, target: Path) -> None:
    """``link`` → ``target`` as a relative symlink (replacing an older link only)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target, link.parent)
    if link.is_symlink():
        if os.readlink(link) == relative:
            return
        link.unlink()
    elif link.exists():
        raise ConfigError(f"{link} exists and is not a step link of coldrec run: refusing to "
                          "replace it (choose another --out)")  # fmt: skip
    link.symlink_to(relative, target_is_directory=True)


def _marker(folder: Path) -> dict[str, Any]:
    """A made step's ``step.json`` (key, the ids of the steps it read, its own id), or
    ``{}``."""
    marker = folder / "step.json"
    return read_json(marker) if marker.is_file() else {}


def _run_step(step: Step, target: Path, key: str, inputs: list[str]) -> float:
    """Fill a temporary folder, mark it finished, and put it in ``target``'s place."""
    log.info("step %s (%s)", step.folder, key)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    step.work(tmp)
    seconds = round(time.perf_counter() - start, 2)
    tmp.mkdir(exist_ok=True)
    write_json_atomic(tmp / "step.json", {"step": step.name, "key": key, "seconds": seconds,
                                          "inputs": inputs, "made": uuid.uuid4().hex,
                                          "settings": step.settings})  # fmt: skip
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return seconds
