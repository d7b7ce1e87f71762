"""``coldrec supervise``: the taxonomy, the LLM stages for the chosen users, and the
pseudo labels they become.

The run folder gets:

- ``config.json``: the resolved settings;
- ``taxonomy.json``: :class:`~coldrec.data.taxonomy.Taxonomy` (leaves split on the
  retrieve run's Two-Tower item vectors, ``model/item_vectors.npy``; or the one given);
- ``edges.parquet``, ``triplets.parquet``: the labels (:mod:`coldrec.supervision.labels`);
- ``trace.jsonl``: one line per user: profile, chosen categories and subcategories, the
  stage-4 picks, the final ranking (item, score, keywords, subcategory, source) and the
  fallbacks used;
- ``llm_calls.jsonl``: one line per LLM call (stage, cache status, tokens, latency);
- ``summary.json``: users, label counts, per-stage requests, calls, cached calls,
  fallbacks and their rate, tokens and seconds, seconds per user, and the labels'
  quality (:func:`~coldrec.supervision.quality.label_quality`: precision and recall of
  the edges against the users' held-out interactions, beside a random control);
- ``valid/`` (with ``validation_view``, the default): the same for the retrieve run's
  validation view, made from the view's history only (its candidates
  ``valid_candidates.parquet`` and Two-Tower ``valid_model``), so that the ranker trained
  on the view learns from labels whose prompts never saw what the view holds out. Its
  quality is measured against those held-out (validation) interactions; the main
  labels' against the test interactions, a diagnostic that no choice reads. Its LLM
  cost is its own summary's (``validation_view`` in ``summary.json``).

Eligible users are the retrieve run's users with at least ``min_history`` history
interactions (the labels' own filter). ``users`` picks among them: ``all``; ``sample``
(``n_users`` drawn with ``seed``); ``cold`` (users whose candidates hold a cold item);
``n_users`` also caps ``all`` and ``cold`` (the first ones by user id). The run is
resumable through the LLM answer cache: a rerun after a kill asks only the missing
questions. ``engine``: ``local`` labels the users here, a chunk at a time; ``ray`` runs
the same chunks as a Ray Data job over one or more LLM endpoints
(:mod:`coldrec.supervision.on_ray`); both write their outputs in user order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from coldrec._util.io import atomic_write, read_json, write_json_atomic
from coldrec._util.progress import progress_bar
from coldrec.config import validate as validate_config
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.data.prepare import validation_view
from coldrec.data.taxonomy import Taxonomy, TaxonomyConfig, build_taxonomy
from coldrec.encode import TextEncoder, TextEncoderConfig, load_vectors
from coldrec.errors import ConfigError, DataError, LLMError, brief
from coldrec.llm import LLM, CallLog, LLMConfig
from coldrec.llm.client import backend_of
from coldrec.llm.engines import LLMJobConfig, require_ray
from coldrec.retrieval.retrieve import RetrieveConfig
from coldrec.supervision.catalogue import Catalogue, Pick, StagesConfig, UserRun
from coldrec.supervision.labels import LabelRules, labels_from_rankings, write_labels
from coldrec.supervision.quality import label_quality
from coldrec.supervision.stages import Stage, keywords_in, run_stages, stages_for

if TYPE_CHECKING:
    from coldrec.supervision.on_ray import RayEngine

__all__ = [
    "SuperviseConfig",
    "eligible_users",
    "run_supervision",
    "stage_seconds",
    "stages_markdown",
]

logger = logging.getLogger(__name__)


class SuperviseConfig(LLMJobConfig):
    """What ``coldrec supervise`` runs (``llm``, ``engine`` and ``ray``:
    :class:`~coldrec.llm.engines.LLMJobConfig`)."""

    stages: StagesConfig = Field(default_factory=StagesConfig)
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)
    """How the taxonomy is built (on the retriever's item vectors), unless one is given."""
    labels: LabelRules = Field(default_factory=LabelRules)
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """Item text vectors for the stage-4 evidence."""
    users: Literal["all", "sample", "cold"] = "all"
    n_users: int | None = Field(None, gt=0)
    seed: int = 0
    min_history: int = Field(2, gt=0)
    chunk_size: int = Field(32, gt=0)
    """Users whose stages run together (one LLM batch per stage)."""
    max_fallback_rate: float = Field(0.2, ge=0, le=1)
    """A stage that falls back for more of its requests than this is warned about (log,
    ``summary.json``, the experiment report's first lines)."""
    validation_view: bool = True
    """Also label the retrieve run's validation view, from its history only (``valid/``,
    for the ranker trained there); needs a retrieve run with early stopping."""


def eligible_users(config: SuperviseConfig, dataset: Dataset, candidates: Candidates) -> np.ndarray:
    """The users the run labels, ascending (see the module doc)."""
    counts = np.bincount(
        dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS), "user_idx"],
        minlength=dataset.n_users,
    )
    users = np.sort(candidates.users[counts[candidates.users] >= config.min_history])
    if config.users == "cold":
        cold = dataset.items["cold"].to_numpy()
        items = candidates.for_users(users)
        users = users[(cold[np.maximum(items, 0)] & (items >= 0)).any(axis=1)]
    if config.users == "sample":
        if config.n_users is None:
            raise DataError("users=sample needs n_users")
        rng = np.random.default_rng(config.seed)
        return np.sort(rng.choice(users, min(config.n_users, len(users)), replace=False))
    return users[: config.n_users]


def run_supervision(
    config: SuperviseConfig,
    dataset_path: Path,
    retrieval: Path,
    out: Path,
    taxonomy: Path | None = None,
) -> dict[str, Any]:
    """Build the taxonomy (or read the ``taxonomy.json`` given), run the stages for the
    candidates of the ``coldrec retrieve`` run in ``retrieval``, write labels, trace and
    summary into ``out``; then the same for the validation view into ``out/valid``
    (``validation_view``; it builds its own taxonomy)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    dataset = Dataset.load(dataset_path)
    view_inputs = _validation_inputs(retrieval) if config.validation_view else None
    summary = _label_pass(config, dataset, retrieval / "candidates.parquet",
                          retrieval / "model", taxonomy, out)  # fmt: skip
    if view_inputs is not None:
        share, candidates, vectors = view_inputs
        view = validation_view(dataset, share)
        (out / "valid").mkdir(exist_ok=True)
        logger.info("labelling the validation view (its history only)")
        summary["validation_view"] = _label_pass(config, view, candidates, vectors, None,
                                                 out / "valid")  # fmt: skip
        write_json_atomic(out / "valid" / "summary.json", summary["validation_view"])
    write_json_atomic(out / "summary.json", summary)
    return summary


def _validation_inputs(retrieval: Path) -> tuple[float, Path, Path]:
    """The validation view's share, candidates and Two-Tower folder of a retrieve run."""
    candidates, vectors = retrieval / "valid_candidates.parquet", retrieval / "valid_model"
    if not candidates.is_file() or not (vectors / "item_vectors.npy").is_file():
        raise ConfigError(
            f"{retrieval}: no validation view to label (valid_candidates.parquet and "
            "valid_model/ come from a retrieve run with early stopping); rerun retrieve "
            "or set validation_view=false (the validation ranker then trains on labels "
            "made from the whole history)"
        )
    settings = validate_config(RetrieveConfig, read_json(retrieval / "config.json"))
    return settings.model.valid_share, candidates, vectors


def _label_pass(
    config: SuperviseConfig,
    dataset: Dataset,
    candidates_path: Path,
    vectors: Path,
    taxonomy: Path | None,
    out: Path,
) -> dict[str, Any]:
    """One labelling of ``dataset``'s users over the candidates and Two-Tower vectors
    given: taxonomy, stages, labels, trace; returns the summary (not yet written)."""
    start = time.perf_counter()
    catalogue = _catalogue(config, dataset, candidates_path, vectors, taxonomy, out)
    users = eligible_users(config, dataset, catalogue.candidates)
    log = out / "llm_calls.jsonl"
    log.unlink(missing_ok=True)
    done: dict[int, Labelled] = {}
    setup_s = time.perf_counter() - start
    with (
        _engine(config, log) as engine,
        progress_bar() as bar,
        atomic_write(out / "trace.jsonl") as trace_path,
    ):
        name = f"supervise ({config.stages.method}, {config.engine})"
        task = bar.add_task(name, total=len(users))
        with trace_path.open("w", encoding="utf-8") as trace:
            for chunk in engine.chunks(catalogue, users):
                done.update((d.user, d) for d in chunk)
                trace.writelines(_line(d.trace) for d in chunk)
                trace.flush()
                _stop_if_a_stage_got_nothing(engine.calls)
                bar.advance(task, len(chunk))
        totals, backend = engine.calls.totals(), engine.backend
        done = dict(sorted(done.items()))  # the engines finish chunks in any order
        trace_path.write_text("".join(_line(d.trace) for d in done.values()), encoding="utf-8")
    rankings: dict[int, list] = {user: d.final for user, d in done.items()}
    edges, triplets = labels_from_rankings(rankings, config.labels)
    write_labels(out, edges, triplets)
    cold = dataset.items["cold"].to_numpy()
    summary = _summary(config, users, rankings, edges, triplets, totals, out, cold)
    stages_s = time.perf_counter() - start - setup_s
    summary.update(backend=backend, setup_s=round(setup_s, 2), stages_s=round(stages_s, 2),
                   seconds_per_user=round(stages_s / max(len(users), 1), 4),
                   quality=label_quality(edges, dataset, config.seed),
                   warnings=_fallback_warnings(summary, config.max_fallback_rate))  # fmt: skip
    for warning in summary["warnings"]:
        logger.warning("%s", warning)
    return summary


@dataclass(frozen=True)
class Labelled:
    """A user through the stages: the final ranking and the trace line."""

    user: int
    final: list[Pick]
    trace: dict[str, Any]


def label_chunk(
    catalogue: Catalogue, stages: list[Stage], llm: LLM, users: Sequence[int]
) -> list[Labelled]:
    """Run the stages for ``users`` together (one LLM batch per stage): what either
    engine does with a chunk of users."""
    runs = [catalogue.user_run(int(user)) for user in users]
    run_stages(runs, stages, llm)
    return [Labelled(run.user, run.final, _trace_line(run, catalogue)) for run in runs]


class LocalEngine:
    """Labels users in this process, ``chunk_size`` at a time, with one :class:`LLM`."""

    def __init__(self, llm: LLMConfig, chunk_size: int, log: Path) -> None:
        self.llm = LLM(llm, log=log)
        self.chunk_size = chunk_size
        self.calls = self.llm.calls
        self.backend = backend_of(self.llm)

    def __enter__(self) -> LocalEngine:
        try:
            self.llm.preflight()
        except BaseException:
            self.llm.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.llm.close()

    def chunks(self, catalogue: Catalogue, users: np.ndarray) -> Iterator[list[Labelled]]:
        stages = stages_for(catalogue)
        for begin in range(0, len(users), self.chunk_size):
            yield label_chunk(
                catalogue, stages, self.llm, users[begin : begin + self.chunk_size].tolist()
            )


def _engine(config: SuperviseConfig, log: Path) -> LocalEngine | RayEngine:
    if config.engine == "local":
        return LocalEngine(config.llm, config.chunk_size, log)
    require_ray()
    from coldrec.supervision.on_ray import RayEngine

    return RayEngine(config.ray, config.llm, config.chunk_size, log)


def _stop_if_a_stage_got_nothing(calls: CallLog) -> None:
    """Raise :class:`LLMError` when the backend answered none of a stage's requests so
    far: it is down or failing, and labels of fallbacks only would pass for LLM labels
    (answers that are there but unusable are warned about instead, see
    ``max_fallback_rate``). The answers already made stay in the cache."""
    for stage, counts in calls.totals().items():
        if counts["requests"] and counts["unanswered"] == counts["requests"]:
            raise LLMError(
                f"{stage}: the backend answered none of its {counts['requests']:,} requests "
                f"(first error: {brief(calls.first_error(stage), 300)}); nothing is labelled "
                "from fallbacks alone"
            )


def _fallback_warnings(summary: dict[str, Any], threshold: float) -> list[str]:
    """A warning for each stage that fell back for more than ``threshold`` of its requests."""
    return [
        f"{stage} fell back for {counts['fallback_rate']:.0%} of its {counts['requests']:,} "
        f"requests (more than max_fallback_rate {threshold:.0%}): its labels are mostly "
        "the fallbacks', not the LLM's"
        for stage, counts in summary["stages"].items()
        if counts["fallback_rate"] is not None and counts["fallback_rate"] > threshold
    ]


def _catalogue(
    config: SuperviseConfig,
    dataset: Dataset,
    candidates_path: Path,
    vectors: Path,
    taxonomy: Path | None,
    out: Path,
) -> Catalogue:
    """Candidates, Two-Tower vectors (of the saved model in ``vectors``), the taxonomy
    (written to ``out``) and text vectors."""
    candidates = Candidates.load(candidates_path)
    candidates.check(dataset.n_items)
    tw_users, _ = load_vectors(vectors / "user_vectors.npy")
    tw_items, _ = load_vectors(vectors / "item_vectors.npy")
    if tw_users.shape[0] != dataset.n_users or tw_items.shape[0] != dataset.n_items:
        raise DataError(
            f"{vectors}: Two-Tower vectors have {tw_users.shape[0]} users and "
            f"{tw_items.shape[0]} items, the dataset {dataset.n_users} and {dataset.n_items}"
        )
    if taxonomy is not None:
        tree = Taxonomy.load(taxonomy, dataset.n_items)
    else:
        tree = build_taxonomy(dataset, tw_items, config.taxonomy)
    tree.save(out / "taxonomy.json")
    content = TextEncoder(config.encoder).encode(dataset.item_text)
    return Catalogue(dataset, tree, candidates, tw_users, tw_items, content, config.stages)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _trace_line(run: UserRun, catalogue: Catalogue) -> dict[str, Any]:
    keywords = (run.trace.get("profile") or {}).get("keywords", [])
    names = catalogue.taxonomy.subcategories
    final = [
        {"item": p.item, "score": p.score, "source": p.source, "subcategory": names[p.subcategory],
         "keywords": keywords_in(catalogue.texts[p.item], keywords)}
        for p in run.final
    ]  # fmt: skip
    return {"user": run.user, **run.trace, "final": final}


def _summary(
    config: SuperviseConfig,
    users: np.ndarray,
    rankings: dict[int, list],
    edges: Any,
    triplets: Any,
    totals: dict[str, dict[str, float]],
    out: Path,
    cold: np.ndarray,
) -> dict[str, Any]:
    """Counts of the run; ``cold``: the dataset's cold-item mask."""
    fallbacks: dict[str, int] = {}
    for line in (out / "trace.jsonl").read_text(encoding="utf-8").splitlines():
        for stage in json.loads(line).get("fallbacks", []):
            fallbacks[stage] = fallbacks.get(stage, 0) + 1
    stages = {
        name: {**counts, "fallbacks": fallbacks.get(name, 0),
               "fallback_rate": fallbacks.get(name, 0) / counts["requests"]
               if counts["requests"] else None}
        for name, counts in totals.items()
    }  # fmt: skip
    return {
        "method": config.stages.method,
        "users": len(users),
        "users_with_labels": sum(bool(r) for r in rankings.values()),
        "edges": len(edges),
        "edges_on_cold_items": int(cold[edges["item"].to_numpy(np.int64)].sum()),
        "triplets": len(triplets),
        "edge_sources": edges["source"].value_counts().to_dict(),
        "stages": stages,
    }


def stages_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the stages of one or more runs (name → ``summary.json``):
    requests, fallback rate, calls, cached calls, tokens of every answer used, the wall
    seconds of the calls (calls in flight together counted once), and those seconds per
    call that reached the backend (what a run with an empty cache pays per call)."""
    rows = [
        "| run | stage | requests | fallback rate | calls | cached | prompt tokens "
        "| completion tokens | LLM seconds | s / fresh call |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, summary in summaries.items():
        for stage, c in summary["stages"].items():
            rate = "–" if c["fallback_rate"] is None else f"{c['fallback_rate']:.1%}"
            rows.append(
                f"| {name} | {stage} | {c['requests']:,} | {rate} | {c['calls']:,} | "
                f"{c['cached']:,} | {c['answer_prompt_tokens']:,} | "
                f"{c['answer_completion_tokens']:,} | {stage_seconds(c):,.1f} | "
                f"{_per_fresh_call(c)} |"
            )
    return "\n".join(rows)


def _per_fresh_call(counts: dict[str, Any]) -> str:
    fresh = counts["calls"] - counts["cached"]
    return f"{stage_seconds(counts) / fresh:.3f}" if fresh else "–"


def stage_seconds(counts: dict[str, Any]) -> float:
    """The wall seconds of a stage's calls (summaries of older versions: the calls' own
    seconds added, the same with one call in flight)."""
    return float(counts.get("busy_s", counts["latency_s"]))
