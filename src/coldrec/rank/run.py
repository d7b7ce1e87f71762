"""``coldrec rank``: train a sequential ranker (SASRec by default; with pseudo labels when
given), fuse it with the Two-Tower scores over the retrieved candidates, evaluate, and
keep the fused ranker (``model/``, :class:`~coldrec.rank.fusion.FusedRanker`).

In ``hybrid`` mode without a fixed ``alpha``, α and the evidence blend's κ
(:mod:`coldrec.rank.fusion`) are chosen on the validation view: the ranker trained there
scores the retriever's validation candidates (``valid_candidates.parquet`` of the
retrieve run) for each point of the ``alphas × kappas`` sweep, judged by ``selection``.
The run folder gets ``config.json`` and ``metrics-seed<N>.json`` with the fusion settings
and the sweep's warm/cold curve, and the fused ranking's first :data:`RANKED` items per
test user (``ranked.parquet``; with α chosen, the validation twin's ranking of the view
too, ``valid_ranked.parquet``), in the candidates' format: what ``coldrec llm-rank``
re-ranks.

With pseudo labels, ``label_weights`` (λ) and ``edge_caps`` (most edges per item) are
chosen on the validation view as well: for each pair a model is trained there, and the
pair whose fused validation ranking scores best (at its best α and κ) is kept; the final
model is then fitted with it on all history (the validation training is reused).

With ``model.transfer``, the transfer's K and τ are chosen after the fit from
``transfer_grid``: the validation model's residuals are moved with each pair and the one
whose ranking scores best is kept (the transfer has no trained parameters; nothing is
retrained). The fusion is then chosen with the chosen transfer.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldrec.config import default_kind
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.errors import ConfigError
from coldrec.eval.protocol import CANDIDATE_MS, Selection, ranked_candidates, selection_score
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.fusion import (
    EvidenceBlend,
    FusedRanker,
    FusionChoice,
    FusionMode,
    choose_fusion,
)
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.rank.stars import StarsConfig, StarsRecommender
from coldrec.retrieval.two_tower import TwoTower
from coldrec.supervision.labels import LabelFiles
from coldrec.supervision.tags import read_tags
from coldrec.training import distributed
from coldrec.training.runs import RunConfig, run_record, seed_everything, write_run

__all__ = ["RankConfig", "RankerConfig", "TransferGrid", "run_ranking"]

RankerConfig = Annotated[
    SASRecConfig | GRU4RecConfig | BERT4RecConfig | StarsConfig, Field(discriminator="kind")
]
"""Any sequential ranker's config; ``kind`` selects it."""

log = logging.getLogger(__name__)

ALPHAS = tuple(round(0.1 * step, 1) for step in range(11))
KAPPAS = (0.0, 1.0, 3.0, 10.0, 30.0)
RANKED = 100
"""Items per user kept in ``ranked.parquet``."""


class TransferGrid(BaseModel):
    """The transfer settings tried on validation after the fit (every ``k`` with every
    ``tau``; the rest of the model's ``transfer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: tuple[Annotated[int, Field(gt=0)], ...] = (5, 10, 25, 50)
    tau: tuple[float, ...] = (0.25, 0.4, 0.55, 0.7)


class RankConfig(RunConfig):
    """What ``coldrec rank`` runs."""

    model: RankerConfig = Field(default_factory=SASRecConfig)
    mode: FusionMode = "hybrid"
    alpha: float | None = Field(None, ge=0, le=1)
    """Weight of the ranker in ``hybrid`` mode; ``None`` chooses it on validation."""
    alphas: tuple[Annotated[float, Field(ge=0, le=1)], ...] = ALPHAS
    kappas: tuple[Annotated[float, Field(ge=0)], ...] = KAPPAS
    """The evidence blend's κ values, chosen on validation with α (0: binary fusion)."""
    label_share: float = Field(EvidenceBlend.label_share, ge=0)
    """What a pseudo-label row counts for in the evidence blend, in real interactions."""
    selection: Selection = Field(default_factory=Selection)
    """What the validation sweeps maximise (fusion, label settings)."""
    label_weights: tuple[Annotated[float, Field(gt=0)], ...] = ()
    """λ values to choose from on validation (each sets λ_sim and λ_pair of the label
    losses in use); empty keeps the model's λs."""
    edge_caps: tuple[Annotated[int, Field(gt=0)] | None, ...] = ()
    """Most pseudo edges per item to choose from on validation (the highest-weighted
    kept; ``null``: no cap); empty: no cap."""
    label_guard: float | None = Field(0.02, ge=0, lt=1)
    """With label settings to choose: a ranker without labels is trained on validation
    too, and a setting is chosen only if its warm and cold validation Recall@20 are each
    at least that ranker's less this share (else no labels); ``null``: no guard."""
    transfer_grid: TransferGrid | None = Field(default_factory=TransferGrid)
    """Transfer K and τ chosen on validation after the fit (with ``model.transfer``);
    ``null`` keeps the model's."""
    candidate_ms: tuple[Annotated[int, Field(gt=0)], ...] = CANDIDATE_MS

    @model_validator(mode="before")
    @classmethod
    def _sasrec_by_default(cls, data: Any) -> Any:
        """A ``model`` node without ``kind`` configures SASRec."""
        return default_kind(data, "model", "sasrec")

    @model_validator(mode="after")
    def _label_settings_on_the_fusion(self) -> Self:
        if (self.label_weights or self.edge_caps) and self.mode != "hybrid":
            raise ValueError("label_weights and edge_caps are chosen on the fused ranking: "
                             "use mode hybrid")  # fmt: skip
        return self

    def default_name(self) -> str:
        return f"{self.model.kind}_{self.mode}"

    def label_settings(self) -> list[dict[str, Any]]:
        """Every (λ, edge cap) pair to try on validation; empty when nothing is chosen."""
        if not self.label_weights and not self.edge_caps:
            return []
        weights = self.label_weights or (None,)
        caps = self.edge_caps or (None,)
        return [{"weight": w, "edge_cap": c} for w, c in itertools.product(weights, caps)]


def run_ranking(
    config: RankConfig,
    dataset_path: Path,
    retrieval: Path,
    out: Path,
    labels: LabelFiles | None = None,
    tags: Path | None = None,
) -> dict[str, Any]:
    """Fit the ranker on the Dataset in ``dataset_path`` (with ``labels``; STARS with the
    items' ``tags``, ``coldrec tag``'s ``tags.parquet``), fuse it with the Two-Tower model
    of the ``coldrec retrieve`` run in ``retrieval`` over that run's candidates, evaluate;
    write the run folder (the fused ranker in ``out/model``) and return the metrics."""
    labels = labels or LabelFiles()
    if tags is not None and not isinstance(config.model, StarsConfig):
        raise ConfigError(f"tags are read by the stars ranker only, not {config.model.kind}")
    if labels and isinstance(config.model, StarsConfig):
        raise ConfigError("stars trains without pseudo labels (L_sim and L_pair are not built "
                          "for it): drop the losses")  # fmt: skip
    if config.label_settings() and not labels:
        raise ConfigError("label_weights and edge_caps choose how labels train: give edges "
                          "or triplets")  # fmt: skip
    seed_everything(config.seed)
    dataset = Dataset.load(dataset_path)
    retriever = TwoTower.load(retrieval / "model", dataset)
    candidates = Candidates.load(retrieval / "candidates.parquet")
    choose = config.mode == "hybrid" and config.alpha is None
    retune = config.transfer_grid is not None and config.model.transfer is not None
    if choose or config.label_settings() or retune:  # fail before training, not after
        valid_candidates = _validation_candidates(config, retrieval, retriever)
        view = validation_view(dataset, config.model.valid_share)
    negatives = candidates if config.model.hard_negatives else None
    start = time.perf_counter()
    chosen_labels = None
    if config.label_settings():
        model, chosen_labels = _choose_labels(config, dataset, view, labels, negatives,
                                              valid_candidates)  # fmt: skip
        model.fit(dataset)  # goes on with the chosen model's generator
    else:
        model = _ranker(config.model, labels, negatives, dataset, tags)
        model.fit(dataset, generator=config.generator())
    fitted = time.perf_counter()
    if not distributed.is_main():  # data-parallel: the other processes only train
        return {}
    transfer = None
    if retune:
        assert config.transfer_grid is not None
        model, transfer = _choose_transfer(model, dataset, view, config.transfer_grid)
    fusion = FusionChoice(0.5 if config.alpha is None else config.alpha, EvidenceBlend(), [])
    if choose:
        assert model.validation_model is not None  # early stopping is checked above
        fusion = choose_fusion(model.validation_model, view, valid_candidates, config.alphas,
                               config.kappas, config.label_share, config.selection)  # fmt: skip
    fused = FusedRanker(model, retriever, config.mode, fusion.alpha, fusion.blend)
    metrics = config.evaluate(fused, dataset, candidates, config.candidate_ms)
    fused.save(out / "model")
    ranked_candidates(candidates, fused, RANKED).save(out / "ranked.parquet")
    if choose:  # the validation twin's ranking, for later stages' choices (llm-rank's α)
        assert model.validation_model is not None
        twin = FusedRanker(model.validation_model, valid_candidates, config.mode, fusion.alpha,
                           fusion.blend)  # fmt: skip
        ranked_candidates(valid_candidates, twin, RANKED).save(out / "valid_ranked.parquet")
    inputs = {"dataset": dataset_path, "retrieval": retrieval, **labels.paths(),
              **({"tags": tags} if tags is not None else {})}  # fmt: skip
    result = run_record(config, dataset, inputs, metrics, model, fit_s=fitted - start,
                        total_s=time.perf_counter() - start)  # fmt: skip
    result["fusion"] = {"mode": config.mode, "alpha": fusion.alpha if choose else config.alpha,
                        "blend": asdict(fusion.blend),
                        "validation_curve": fusion.curve}  # fmt: skip
    if chosen_labels is not None:
        result["label_settings"] = chosen_labels
    if transfer is not None:
        result["transfer_choice"] = transfer
    write_run(out, config, result)
    return result


def _ranker(
    settings: RankerConfig,
    labels: LabelFiles,
    negatives: Candidates | None,
    dataset: Dataset,
    tags: Path | None,
) -> SequentialRecommender:
    """A fresh ranker of ``settings`` (STARS with the items' tags, if given)."""
    if not isinstance(settings, StarsConfig):
        return SequentialRecommender(settings, labels, negatives)
    model = StarsRecommender(settings)
    if tags is not None:
        model.tags, model.vocabulary = read_tags(tags, dataset)
    return model


def _choose_labels(
    config: RankConfig,
    dataset: Dataset,
    view: Dataset,
    labels: LabelFiles,
    negatives: Candidates | None,
    candidates: Candidates,
) -> tuple[SequentialRecommender, dict[str, Any]]:
    """The model (trained on the validation ``view``) of the label setting (λ, edge
    cap) whose fused validation ranking scores best at its best α and κ, among those
    the guard admits; the chosen setting with every setting's figures. With
    ``config.label_guard`` the ranker without labels (weight 0) is a setting too and sets
    the guard's floors. Every setting's model starts from the run's seed, so they differ
    by the setting only."""
    settings = config.label_settings()
    if config.label_guard is not None:
        settings = [NO_LABELS, *settings]
    trained = [_validated(config, setting, dataset, view, labels, negatives, candidates)
               for setting in settings]  # fmt: skip
    points = [point for _, point in trained]
    best, guard = pick_label_setting(points, config.label_guard, config.selection)
    result: dict[str, Any] = {"chosen": settings[best], "validation": points}
    if guard:
        result["guard"] = guard
    return trained[best][0], result


NO_LABELS: dict[str, Any] = {"weight": 0.0, "edge_cap": None}
"""The label setting of the guard's ranker: trained without labels."""


def pick_label_setting(
    points: list[dict[str, Any]], guard: float | None, selection: Selection
) -> tuple[int, dict[str, float]]:
    """The index of the label setting chosen from its validation ``points`` (each with
    ``warm`` and ``cold``; marked ``admitted`` here), and the guard's record. With a
    ``guard``, ``points[0]`` is the ranker without labels, and a point is admitted only if
    its warm and cold are each at least that one's less ``guard`` of it; the best
    admitted point by ``selection`` wins (the first is always admitted)."""
    floors = {}
    if guard is not None:
        floors = {segment: points[0][segment] * (1 - guard) for segment in ("warm", "cold")}
    for point in points:  # a missing segment (NaN) bars nothing
        point["admitted"] = all(not point[segment] < floor for segment, floor in floors.items())
    best = max(range(len(points)), key=lambda i: (
        points[i]["admitted"], selection.key(points[i]["warm"], points[i]["cold"])))  # fmt: skip
    return best, ({"tolerance": guard, **floors} if guard is not None else {})


def _validated(
    config: RankConfig,
    setting: dict[str, Any],
    dataset: Dataset,
    view: Dataset,
    labels: LabelFiles,
    negatives: Candidates | None,
    candidates: Candidates,
) -> tuple[SequentialRecommender, dict[str, Any]]:
    """A ranker trained on the validation ``view`` with the label ``setting``, and its
    validation figures at its best α and κ."""
    weight = setting["weight"]
    model_settings = config.model if weight is None else config.model.model_copy(
        update={"lambda_sim": weight, "lambda_pair": weight})  # fmt: skip
    setting_labels = LabelFiles() if setting == NO_LABELS else labels.capped(setting["edge_cap"])
    model = SequentialRecommender(model_settings, setting_labels, negatives)
    model.validate(dataset, view, generator=config.generator())
    assert model.validation_model is not None and model.training_log.validation is not None
    alphas = config.alphas if config.alpha is None else (config.alpha,)
    sweep = choose_fusion(model.validation_model, view, candidates, alphas, config.kappas,
                          config.label_share, config.selection)  # fmt: skip
    top = max(sweep.curve, key=lambda p: config.selection.key(p["warm"], p["cold"]))
    log.info("labels %s: validation score %.4f (alpha %g, kappa %g)", setting,
             top["score"], sweep.alpha, sweep.blend.kappa)  # fmt: skip
    return model, {**setting, "alpha": sweep.alpha, "kappa": sweep.blend.kappa,
                   "warm": top["warm"], "cold": top["cold"], "score": top["score"],
                   "epochs": model.training_log.validation.best_epoch}  # fmt: skip


def _choose_transfer(
    model: SequentialRecommender, dataset: Dataset, view: Dataset, grid: TransferGrid
) -> tuple[SequentialRecommender, dict[str, Any]]:
    """The fitted ``model`` with its transfer's K and τ replaced by the grid's pair whose
    transferred validation model scores best (its own ranking, by
    :func:`~coldrec.eval.protocol.selection_score`), and the grid's figures. The transfer
    has no trained parameters, so nothing is retrained."""
    assert model.validation_model is not None and model.config.transfer is not None
    points = []
    for k, tau in itertools.product(grid.k, grid.tau):
        settings = model.config.transfer.model_copy(update={"k": k, "tau": tau})
        twin = model.validation_model.transferred(view, settings)
        points.append({"k": k, "tau": tau, "score": selection_score(twin, view),
                       **(twin.transfer.summary() if twin.transfer else {})})  # fmt: skip
    best = max(points, key=lambda point: point["score"])
    chosen = model.config.transfer.model_copy(update={"k": best["k"], "tau": best["tau"]})
    log.info("transfer chosen on validation: k %d, tau %g (score %.4f)", best["k"],
             best["tau"], best["score"])  # fmt: skip
    tuned = model.transferred(dataset, chosen)
    tuned.validation_model = model.validation_model.transferred(view, chosen)
    return tuned, {"chosen": {"k": best["k"], "tau": best["tau"]}, "grid": points}


def _validation_candidates(config: RankConfig, retrieval: Path, retriever: TwoTower) -> Candidates:
    """The retriever's validation-view candidates, after checking that α can be chosen."""
    valid_path = retrieval / "valid_candidates.parquet"
    if not config.model.early_stopping or not valid_path.is_file():
        raise ConfigError(
            "choosing alpha or label weights on validation needs early stopping and the "
            f"retrieve run's valid_candidates.parquet ({valid_path}); or set alpha"
        )
    share = retriever.config.valid_share
    if share != config.model.valid_share:
        raise ConfigError(
            f"the retriever's validation view holds out {share} of the history, the ranker's "
            f"{config.model.valid_share}: set model.valid_share={share}"
        )
    return Candidates.load(valid_path)
