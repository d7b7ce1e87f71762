"""The ``coldrec`` command line. Thin: each command parses options and calls one library
function. Errors a user can act on print as one line and exit with status 2."""

from __future__ import annotations

import functools
import json
import logging
import shlex
import subprocess
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from coldrec._util.io import require_file
from coldrec.config import merge, parse_overrides, read_yaml, validate
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import SPLITS, DataConfig, build_dataset
from coldrec.data.sources import SOURCE_KINDS
from coldrec.errors import ColdrecError, ConfigError, brief
from coldrec.eval.report import write_report
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.evaluate import MODEL_KINDS, EvaluateConfig, run_evaluation
from coldrec.experiment.llm_rank import LLMRankConfig, figure, run_llm_rank
from coldrec.experiment.run import STEPS, run_experiment
from coldrec.llm import BACKEND_KINDS, LLMConfig
from coldrec.llm.check import check
from coldrec.rank.run import RankConfig, run_ranking
from coldrec.retrieval.retrieve import RetrieveConfig, run_retrieval
from coldrec.serve.app import serve
from coldrec.serve.engine import ServeConfig
from coldrec.supervision.augment import AugmentConfig, run_augmentation
from coldrec.supervision.judge import JudgeConfig, run_judge
from coldrec.supervision.labels import LabelFiles
from coldrec.supervision.quality import quality_line
from coldrec.supervision.run import SuperviseConfig, run_supervision, stage_seconds
from coldrec.supervision.tags import TagConfig, run_tagging
from coldrec.training import distributed

app = typer.Typer(
    help="coldrec: strict item cold-start recommendation with LLM weak supervision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Prepare and inspect data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
llm_app = typer.Typer(help="LLM backends.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")

console = Console()
error_console = Console(stderr=True)
Command = TypeVar("Command", bound=Callable[..., Any])


# Choices for Typer, taken from the configs so that there is one list of each (mypy cannot
# see the members of an enum built at run time, hence the ignores).
SourceKind = StrEnum("SourceKind", [(kind, kind) for kind in SOURCE_KINDS])  # type: ignore[misc]
ModelKind = StrEnum("ModelKind", [(kind, kind) for kind in MODEL_KINDS])  # type: ignore[misc]
SplitName = StrEnum("SplitName", [(split, split) for split in SPLITS])  # type: ignore[misc]
BackendKind = StrEnum("BackendKind", [(k, k) for k in BACKEND_KINDS])  # type: ignore[misc]


EXIT_USAGE = 2
"""Bad options or settings (a :class:`ConfigError`, or Typer's own usage errors)."""
EXIT_FAILED = 3
"""Data, an LLM backend or the file system made the command fail (:class:`DataError`,
:class:`LLMError`, ``OSError``). Status 1 is left to crashes: a bug in coldrec."""


def user_errors(command: Command) -> Command:
    """Print a :class:`ColdrecError` (or an ``OSError`` such as an unwritable output
    folder) as one line on stderr and exit with :data:`EXIT_USAGE` or
    :data:`EXIT_FAILED`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ColdrecError, OSError) as exc:
            fail(exc, EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


def fail(problem: Exception | str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``problem`` as one ``error:`` line on stderr and exit with ``code``."""
    if isinstance(problem, OSError) and problem.filename is not None:
        where = " → ".join(str(f) for f in (problem.filename, problem.filename2) if f)
        problem = f"{where}: {problem.strerror or problem}"
    # One line, whatever the message holds (YAML errors span several).
    message = " ".join(str(problem).split())
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only."),
) -> None:
    """Configure logging for every command."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # Rich wraps long lines to the terminal; logs that go to a file or pipe stay one line each.
    handler: logging.Handler = (
        RichHandler(console=error_console, show_path=False)
        if error_console.is_terminal
        else logging.StreamHandler(sys.stderr)
    )
    if not error_console.is_terminal:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # bm25s sets its own logger to DEBUG on import; keep it at ours, no chattier than INFO.
    logging.getLogger("bm25s").setLevel(max(level, logging.INFO))


@data_app.command("prepare")
@user_errors
def data_prepare(
    out: Path = typer.Option(..., "--out", help="Folder to write the prepared Dataset to."),
    source: SourceKind | None = typer.Option(
        None, "--source", help="Raw format (default: synthetic)."
    ),
    interactions: Path | None = typer.Option(
        None,
        "--interactions",
        "--reviews",
        help="Interactions file: reviews_X_5.json.gz, X.inter.json, X.inter, or a CSV/Parquet.",
    ),
    items: Path | None = typer.Option(
        None, "--items", "--meta", help="Item file: meta_X.json.gz, X.item.json, X.item, CSV."
    ),
    users: Path | None = typer.Option(
        None, "--users", help="Static user features: X.user (recbole source only)."
    ),
    split: SplitName | None = typer.Option(
        None, "--split", help="Default: global-time, or loo for order-only data."
    ),
    valid_share: float | None = typer.Option(
        None, "--valid-share", help="Validation carved from the end of train (0 = none)."
    ),
    kcore: int | None = typer.Option(None, "--kcore", help="Keep users/items with >= k rows."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic data and splits."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with 'source' and 'prepare' sections."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override any setting: --set source.n_users=5000."
    ),
) -> None:
    """Read raw data, filter, weight, split and index it, and save a Dataset folder."""
    flags: dict[str, Any] = {"source": {}, "prepare": {}}
    if source is not None:
        flags["source"]["kind"] = source.value
    for key, path in (("interactions", interactions), ("items", items), ("users", users)):
        if path is not None:
            flags["source"][key] = str(path)
    for key, value in (("split", split and split.value), ("valid_share", valid_share)):
        if value is not None:
            flags["prepare"][key] = value
    if kcore is not None:
        flags["prepare"]["kcore"] = kcore
    layers = merge({"source": {"kind": "synthetic"}}, read_yaml(config) if config else {}, flags)
    if seed is not None:
        layers = merge(layers, {"prepare": {"seed": seed}})
        if layers["source"]["kind"] == "synthetic":
            layers = merge(layers, {"source": {"seed": seed}})
    layers = merge(layers, parse_overrides(overrides))
    dataset = build_dataset(validate(DataConfig, layers))
    dataset.save(out)
    console.print(f"Dataset written to [bold]{out}[/]")
    _print_stats(dataset.stats())


@data_app.command("stats")
@user_errors
def data_stats(
    path: Path = typer.Argument(..., help="A prepared Dataset folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the counts of a prepared Dataset."""
    stats = Dataset.load(path).stats()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)


@app.command("evaluate")
@user_errors
def evaluate_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Run folder for config.json and metrics."),
    model: ModelKind | None = typer.Option(None, "--model", help="Default: popularity."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the run (default 0)."),
    name: str | None = typer.Option(None, "--name", help="Method name in reports."),
    tags: Path | None = typer.Option(
        None, "--tags", help="stars: the items' tags (coldrec tag's tags.parquet)."
    ),
    augmented: Path | None = typer.Option(
        None, "--augmented", help="lightgcn, xsimgcl: a coldrec augment folder."
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML with the run's settings."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override any setting: --set model.alpha=0.7."
    ),
) -> None:
    """Fit a model on a Dataset's history and evaluate it on the test split (full ranking)."""
    kind = {"kind": model.value} if model is not None else None
    layers = _layers(config, overrides, model=kind, seed=seed, name=name)
    result = run_evaluation(validate(EvaluateConfig, layers), dataset, out, tags, augmented)
    _print_metrics(result)


NPROC_HELP = "Train data-parallel in this many processes (torchrun; gloo on CPUs)."
ENGINE_HELP = "Where the LLM calls run: local (default) or ray."
ADDRESS_HELP = "ray: 'auto' joins the running cluster; default a local runtime."
ENDPOINT_HELP = "ray: an OpenAI-compatible base URL, one actor each (repeatable)."


@app.command("retrieve")
@user_errors
def retrieve_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Run folder: candidates, vectors, metrics."),
    top_m: int | None = typer.Option(None, "--top-m", help="Candidates per user (default 2000)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the run (default 0)."),
    name: str | None = typer.Option(None, "--name", help="Method name in reports."),
    nproc: int = typer.Option(1, "--nproc", min=1, help=NPROC_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the run's settings."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override any setting: --set model.training.epochs=20."
    ),
) -> None:
    """Train the Two-Tower retriever and write each test user's top-M candidates."""
    if _relaunched(nproc):
        return
    layers = _layers(config, overrides, top_m=top_m, seed=seed, name=name)
    result = run_retrieval(validate(RetrieveConfig, layers), dataset, out)
    if distributed.is_main():
        _print_metrics(result)


@app.command("rank")
@user_errors
def rank_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    candidates: Path = typer.Option(..., "--candidates", help="A 'coldrec retrieve' run folder."),
    out: Path = typer.Option(..., "--out", help="Run folder for config.json and metrics."),
    edges: Path | None = typer.Option(None, "--edges", help="Pseudo edges (L_sim)."),
    triplets: Path | None = typer.Option(None, "--triplets", help="Pseudo triplets (L_pair)."),
    valid_edges: Path | None = typer.Option(
        None, "--valid-edges", help="Edges made from the validation view (supervise's valid/)."
    ),
    valid_triplets: Path | None = typer.Option(
        None, "--valid-triplets", help="Triplets made from the validation view."
    ),
    tags: Path | None = typer.Option(
        None, "--tags", help="stars: the items' tags (coldrec tag's tags.parquet)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the run (default 0)."),
    name: str | None = typer.Option(None, "--name", help="Method name in reports."),
    nproc: int = typer.Option(1, "--nproc", min=1, help=NPROC_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the run's settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override any setting: --set mode=sas."),
) -> None:
    """Train SASRec, fuse it with the Two-Tower scores over the candidates, evaluate, and
    keep the fused ranker in OUT/model."""
    if _relaunched(nproc):
        return
    layers = _layers(config, overrides, seed=seed, name=name)
    view = LabelFiles(valid_edges, valid_triplets)
    labels = LabelFiles(edges, triplets, view if view else None)
    result = run_ranking(validate(RankConfig, layers), dataset, candidates, out, labels, tags)
    if distributed.is_main():
        _print_metrics(result)


def _relaunched(nproc: int) -> bool:
    """Join torchrun's process group when started by it; else, with ``nproc`` > 1, run
    this command again in ``nproc`` processes under torchrun and return True (done)."""
    if distributed.start() or nproc == 1:
        return False
    _relaunch_with_torchrun(nproc)
    return True


def _relaunch_with_torchrun(nproc: int) -> None:
    """This command again, without ``--nproc``, in ``nproc`` processes under torchrun
    (one machine; on several, run torchrun yourself: docs/scaling.md)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        skip = arg == "--nproc"
        if not skip:
            args.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "coldrec.cli", *args]  # fmt: skip
    if subprocess.run(command).returncode:
        raise ColdrecError(f"the {nproc} training processes failed (their output is above)")


@app.command("supervise")
@user_errors
def supervise_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    candidates: Path = typer.Option(..., "--candidates", help="A 'coldrec retrieve' run folder."),
    out: Path = typer.Option(..., "--out", help="Run folder: labels, taxonomy, trace, summary."),
    backend: BackendKind | None = typer.Option(None, "--backend", help="Default: transformers."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server's URL."),
    model: str | None = typer.Option(None, "--model", help="openai: the model name."),
    method: str | None = typer.Option(None, "--method", help="tree (default) or flat."),
    users: int | None = typer.Option(None, "--users", help="Label at most this many users."),
    taxonomy: Path | None = typer.Option(
        None, "--taxonomy", help="A taxonomy.json to use instead of building one."
    ),
    engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    endpoints: list[str] = typer.Option([], "--endpoint", help=ENDPOINT_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the run's settings."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override any setting: --set stages.subcategories=4."
    ),
) -> None:
    """Run the LLM stages over the candidates and write pseudo edges and triplets."""
    chosen_backend = _chosen_backend(backend, base_url, model)
    layers = _layers(
        config,
        overrides,
        llm={"backend": chosen_backend} if chosen_backend else None,
        stages={"method": method} if method else None,
        n_users=users,
        **_engine_flags(engine, address, endpoints),
    )
    settings = validate(SuperviseConfig, layers)
    summary = run_supervision(settings, dataset, candidates, out, taxonomy)
    _print_supervision(summary)


@app.command("tag")
@user_errors
def tag_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Folder: vocabulary, tags.parquet, summary."),
    backend: BackendKind | None = typer.Option(None, "--backend", help="Default: transformers."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server's URL."),
    model: str | None = typer.Option(None, "--model", help="openai: the model name."),
    items: int | None = typer.Option(None, "--items", help="Tag a sample of this many items."),
    vocabulary: Path | None = typer.Option(
        None, "--vocabulary", help="A vocabulary.json to tag with instead of proposing one."
    ),
    engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    endpoints: list[str] = typer.Option([], "--endpoint", help=ENDPOINT_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set max_tags=3."),
) -> None:
    """Propose an attribute-tag vocabulary with the LLM and tag the items from it (STARS)."""
    chosen_backend = _chosen_backend(backend, base_url, model)
    layers = _layers(config, overrides, llm={"backend": chosen_backend} if chosen_backend else None,
                     items=items, **_engine_flags(engine, address, endpoints))  # fmt: skip
    summary = run_tagging(validate(TagConfig, layers), dataset, out, vocabulary)
    _print_tagging(summary)


@app.command("augment")
@user_errors
def augment_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Folder: profiles, augmented.parquet, summary."),
    backend: BackendKind | None = typer.Option(None, "--backend", help="Default: transformers."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server's URL."),
    model: str | None = typer.Option(None, "--model", help="openai: the model name."),
    users: int | None = typer.Option(None, "--users", help="Augment a sample of sparse users."),
    engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    endpoints: list[str] = typer.Option([], "--endpoint", help=ENDPOINT_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set candidates=256."),
) -> None:
    """Profile sparse users and add LLM-judged positive and negative interactions
    (LAGCL4Rec's data level)."""
    chosen_backend = _chosen_backend(backend, base_url, model)
    layers = _layers(config, overrides, llm={"backend": chosen_backend} if chosen_backend else None,
                     users=users, **_engine_flags(engine, address, endpoints))  # fmt: skip
    summary = run_augmentation(validate(AugmentConfig, layers), dataset, out)
    backend_note = summary["backend"]
    console.print(f"augment ({backend_note['identity']}, {backend_note['note']}): "
                  f"{summary['sparse_users']:,} sparse users, {summary['positives']:,} "
                  f"positives and {summary['negatives']:,} negatives; real-pair rate "
                  f"{summary['real_pair_rate']:.2%} (random candidates "
                  f"{summary['random_real_pair_rate']:.2%})")  # fmt: skip


@app.command("judge")
@user_errors
def judge_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    out: Path = typer.Option(..., "--out", help="Folder: judged.parquet, pairs.parquet, summary."),
    backend: BackendKind | None = typer.Option(None, "--backend", help="Default: transformers."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server's URL."),
    model: str | None = typer.Option(None, "--model", help="openai: the model name."),
    users: int | None = typer.Option(None, "--users", help="Test users judged (default 200)."),
    against: Path | None = typer.Option(
        None, "--against", help="Another judge's run over the same pairs: κ and confusion."
    ),
    engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    endpoints: list[str] = typer.Option([], "--endpoint", help=ENDPOINT_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set repeats=3."),
) -> None:
    """Judge held-out and random (user, item) pairs pointwise, pairwise and listwise, and
    measure the judge against the held-out interactions (and another judge)."""
    chosen_backend = _chosen_backend(backend, base_url, model)
    layers = _layers(config, overrides, llm={"backend": chosen_backend} if chosen_backend else None,
                     users=users, **_engine_flags(engine, address, endpoints))  # fmt: skip
    summary = run_judge(validate(JudgeConfig, layers), dataset, out, against)
    note = summary["backend"]
    console.print(f"judge ({note['identity']}, {note['note']}): {summary['users']:,} users, "
                  f"{summary['pairs']:,} pairs; grade AUC {summary['grade_auc']:.3f}, pairwise "
                  f"accuracy {summary['pairwise_accuracy']:.3f}, listwise AUC "
                  f"{summary['listwise_auc']:.3f}")  # fmt: skip
    if "against" in summary:
        console.print(f"κ against {summary['against']['run']}: {summary['against']['kappa']:.3f}")


@app.command("llm-rank")
@user_errors
def llm_rank_command(
    dataset: Path = typer.Option(..., "--dataset", help="A prepared Dataset folder."),
    run: Path = typer.Option(
        ..., "--run", help="A 'coldrec rank' or 'coldrec retrieve' run: whose top C are ranked."
    ),
    out: Path = typer.Option(..., "--out", help="Folder: summary.json, rankings.parquet, calls."),
    backend: BackendKind | None = typer.Option(None, "--backend", help="Default: transformers."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server's URL."),
    model: str | None = typer.Option(None, "--model", help="openai: the model name."),
    users: int | None = typer.Option(None, "--users", help="Test users ranked (default 200)."),
    engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    endpoints: list[str] = typer.Option([], "--endpoint", help=ENDPOINT_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML with the settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set bootstrap=3."),
) -> None:
    """Let the LLM rank a run's top candidates of sampled test users; compare with the
    run's order, their fusion (α chosen on validation) and a random order."""
    chosen_backend = _chosen_backend(backend, base_url, model)
    layers = _layers(config, overrides, llm={"backend": chosen_backend} if chosen_backend else None,
                     users=users, **_engine_flags(engine, address, endpoints))  # fmt: skip
    summary = run_llm_rank(validate(LLMRankConfig, layers), dataset, run, out)
    note, k = summary["backend"], f"ndcg@{summary['ks'][0]}"
    table = Table(title=f"llm-rank ({note['identity']}, {note['note']}): "
                  f"{summary['users']['test']:,} users, α {summary['alpha']:g}")  # fmt: skip
    for column in ("order", f"all {k}", f"warm {k}", f"cold {k}"):
        table.add_column(column)
    for name, segments in summary["metrics"].items():
        table.add_row(name, *(figure(segments[s][k]) for s in ("all", "warm", "cold")))
    console.print(table)
    faults = summary["answer_faults"]["test"]
    if faults["answers"]:
        console.print(f"invalid answers {faults['invalid_rate']:.1%} of {faults['answers']:,}")


@llm_app.command("check")
@user_errors
def llm_check_command(
    backend: BackendKind | None = typer.Option(None, "--backend", help="Default: transformers."),
    base_url: str | None = typer.Option(None, "--base-url", help="openai: the server's URL."),
    model: str | None = typer.Option(None, "--model", help="openai: the model name."),
    config: Path | None = typer.Option(None, "--config", help="YAML with the LLM settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set backend.timeout_s=30."),
) -> None:
    """Send one small structured request; report the dialect that works and the latency."""
    layers = _layers(config, overrides, backend=_chosen_backend(backend, base_url, model) or None)
    result = check(validate(LLMConfig, layers))
    console.print_json(json.dumps(result))
    if not result["valid"]:
        fail(result["error"] or f"the answer is not a valid one: {brief(result['answer'])}")


StepName = StrEnum("StepName", [(step, step) for step in STEPS])  # type: ignore[misc]


@app.command("run")
@user_errors
def run_command(
    config: Path = typer.Argument(..., help="An experiment YAML (see configs/)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: runs/<name>)."),
    force: StepName | None = typer.Option(
        None, "--force", help="Rerun this step and every step after it."
    ),
    store: Path | None = typer.Option(
        None, "--store", help="Step store shared by experiments (default: .store beside --out)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set seeds=[0,1,2]."),
) -> None:
    """Run an experiment: prepare → retrieve → supervise → rank → baselines → report,
    each step cached and resumable; print the cold/warm table."""
    experiment = validate(ExperimentConfig, merge(read_yaml(config), parse_overrides(overrides)))
    folder = out or Path("runs") / experiment.name
    command = shlex.join(["coldrec", *sys.argv[1:]]) if sys.argv else None
    records = run_experiment(experiment, folder, force.value if force else None, command, store)
    for record in records:
        state = f"{record['seconds']:.1f} s" if record["ran"] else "cached"
        console.print(f"  {record['folder']:<32} {state}", highlight=False)
    report = (folder / "report" / "report.md").read_text(encoding="utf-8")
    console.print(report, markup=False, highlight=False, soft_wrap=True)


@app.command("serve")
@user_errors
def serve_command(
    run_dir: Path = typer.Argument(
        ..., help="A finished 'coldrec run' (or 'coldrec rank') folder."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: loopback)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    api_key_file: Path | None = typer.Option(
        None, "--api-key-file", help="A file holding the key the write endpoints require."
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML with the serve settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override: --set index.kind=hnsw."),
) -> None:
    """Serve a finished run over HTTP: recommendations, new items at once, events."""
    settings = validate(ServeConfig, _layers(config, overrides))
    key = require_file(api_key_file, "API key").read_text().strip() if api_key_file else None
    serve(run_dir, settings, host, port, workers, key)


@app.command("report")
@user_errors
def report_command(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders written by 'evaluate'."),
    out: Path = typer.Option(..., "--out", help="Folder for report.md and the bar chart."),
) -> None:
    """Render Markdown tables (mean ± std over seeds) and a cold/warm bar chart."""
    path = write_report(run_dirs, out)
    console.print(path.read_text(encoding="utf-8"), markup=False, highlight=False, soft_wrap=True)


def _layers(config: Path | None, overrides: list[str], **flags: Any) -> dict[str, Any]:
    """Settings by precedence: the YAML file, then the flags given (not None), then --set."""
    given = {key: value for key, value in flags.items() if value is not None}
    return merge(read_yaml(config) if config else {}, given, parse_overrides(overrides))


def _print_metrics(result: dict[str, Any]) -> None:
    ks = sorted(
        {
            int(name.split("@")[1])
            for name in result["segments"]["all"]
            if name.startswith("recall@")
        }
    )
    metrics = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks[-2:]]
    table = Table(title=f"{result['method']} (seed {result['seed']})")
    for column in ("segment", "users", "targets", *metrics):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for segment, values in result["segments"].items():
        counts = result["counts"][segment]
        cells = (
            "–" if values[m] is None or values[m] != values[m] else f"{values[m]:.4f}"
            for m in metrics
        )
        table.add_row(segment, f"{counts['users']:,}", f"{counts['targets']:,}", *cells)
    console.print(table)
    _print_warnings(result.get("warnings", []))


def _print_supervision(summary: dict[str, Any], title: str = "supervise") -> None:
    backend = summary["backend"]
    kind = "LLM" if backend["generates_text"] else "no LLM: embedding similarity"
    table = Table(title=f"{title} ({summary['method']}, {backend['identity']}, {kind})")
    for column in ("stage", "requests", "fallbacks", "cached", "tokens in", "tokens out", "s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, stage in summary["stages"].items():
        table.add_row(
            name, f"{stage['requests']:,}", f"{stage['fallbacks']:,}", f"{stage['cached']:,}",
            f"{stage['answer_prompt_tokens']:,}", f"{stage['answer_completion_tokens']:,}",
            f"{stage_seconds(stage):.1f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{summary['users']:,} users, {summary['edges']:,} edges "
        f"({summary['edges_on_cold_items']:,} on cold items), {summary['triplets']:,} triplets, "
        f"{summary['seconds_per_user']:.2f} s per user"
    )
    console.print(quality_line(summary["quality"]))
    if "validation_view" in summary:
        _print_supervision(summary["validation_view"], "validation view, its history only")


def _chosen_backend(backend: Any, base_url: str | None, model: str | None) -> dict[str, Any]:
    """The LLM backend settings given as flags (empty: none given)."""
    chosen = {"kind": backend.value if backend else None, "base_url": base_url, "model": model}
    return {key: value for key, value in chosen.items() if value}


def _engine_flags(engine: str | None, address: str | None, endpoints: list[str]) -> dict[str, Any]:
    """``engine`` and ``ray`` settings given as flags (none when no flag is given)."""
    ray = {key: value for key, value in (("address", address), ("endpoints", endpoints)) if value}
    return {"engine": engine, "ray": ray or None}


def _print_tagging(summary: dict[str, Any]) -> None:
    backend = summary["backend"]
    table = Table(title=f"tag ({backend['identity']}, {backend['note']})")
    for column in ("tag", "items"):
        table.add_column(column, justify="left" if column == "tag" else "right")
    for tag, count in list(summary["frequency"].items())[:15]:
        table.add_row(tag, f"{count:,}")
    console.print(table)
    console.print(f"{summary['items']:,} items, {summary['items_with_tags']:,} with tags, "
                  f"{summary['tags_per_item']:.2f} tags per item, vocabulary of "
                  f"{summary['vocabulary']} ({len(summary['unused_tags'])} unused)")  # fmt: skip


def _print_stats(stats: dict[str, Any]) -> None:
    table = Table(title="Dataset", show_header=False)
    for key, value in stats.items():
        is_count = isinstance(value, int) and not isinstance(value, bool) and key != "cut_ts"
        if key != "warnings":
            table.add_row(key, f"{value:,}" if is_count else str(value))
    console.print(table)
    _print_warnings(stats.get("warnings", []))


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        error_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


if __name__ == "__main__":  # torchrun starts the processes of ``rank --nproc`` this way
    app()
