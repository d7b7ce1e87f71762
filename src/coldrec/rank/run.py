"""``coldrec rank``: train a sequential ranker (SASRec by default; with pseudo labels when
given), fuse it with the Two-Tower scores over the retrieved candidates, evaluate, and
keep the fused ranker (``model/``, :class:`~coldrec.rank.fusion.FusedRanker`).

In ``hybrid`` mode without a fixed ``alpha``, α is chosen on the validation view: the
ranker trained there scores the retriever's validation candidates
(``valid_candidates.parquet`` of the retrieve run) for each α of the sweep. The run
folder gets ``config.json`` and ``metrics-seed<N>.json`` with the fusion settings and
the sweep's warm/cold curve.

With pseudo labels, ``label_weights`` chooses λ on the validation view as well: for each
value a model is trained there with λ_sim and λ_pair (those of the losses in use) set to
it, and the value whose fused validation ranking scores best (at its best α) is kept; the
final model is then fitted with it on all history (the validation training is reused).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, Self

import numpy as np
from pydantic import Field, model_validator

from coldrec.config import default_kind
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.errors import ConfigError
from coldrec.eval.protocol import CANDIDATE_MS, evaluate
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.fusion import FusedRanker, FusionMode, choose_alpha
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.retrieval.two_tower import TwoTower
from coldrec.supervision.labels import LabelFiles
from coldrec.training.runs import RunConfig, run_record, seed_everything, write_run

__all__ = ["RankConfig", "RankerConfig", "run_ranking"]

RankerConfig = Annotated[SASRecConfig | GRU4RecConfig | BERT4RecConfig, Field(discriminator="kind")]
"""Any sequential ranker's config; ``kind`` selects it."""

log = logging.getLogger(__name__)

ALPHAS = tuple(round(0.1 * step, 1) for step in range(11))


class RankConfig(RunConfig):
    """What ``coldrec rank`` runs."""

    model: RankerConfig = Field(default_factory=SASRecConfig)
    mode: FusionMode = "hybrid"
    alpha: float | None = Field(None, ge=0, le=1)
    """Weight of the ranker in ``hybrid`` mode; ``None`` chooses it on validation."""
    alphas: tuple[Annotated[float, Field(ge=0, le=1)], ...] = ALPHAS
    label_weights: tuple[Annotated[float, Field(gt=0)], ...] = ()
    """λ values to choose from on validation (each sets λ_sim and λ_pair of the label
    losses in use); empty keeps the model's λs."""
    candidate_ms: tuple[Annotated[int, Field(gt=0)], ...] = CANDIDATE_MS

    @model_validator(mode="before")
    @classmethod
    def _sasrec_by_default(cls, data: Any) -> Any:
        """A ``model`` node without ``kind`` configures SASRec."""
        return default_kind(data, "model", "sasrec")

    @model_validator(mode="after")
    def _label_weights_on_the_fusion(self) -> Self:
        if self.label_weights and self.mode != "hybrid":
            raise ValueError("label_weights are chosen on the fused ranking: use mode hybrid")
        return self

    def default_name(self) -> str:
        return f"{self.model.kind}_{self.mode}"


def run_ranking(
    config: RankConfig,
    dataset_path: Path,
    retrieval: Path,
    out: Path,
    labels: LabelFiles | None = None,
) -> dict[str, Any]:
    """Fit the ranker on the Dataset in ``dataset_path`` (with ``labels``), fuse it with
    the Two-Tower model of the ``coldrec retrieve`` run in ``retrieval`` over that run's
    candidates, evaluate; write the run folder (the fused ranker in ``out/model``) and
    return the metrics."""
    labels = labels or LabelFiles()
    if config.label_weights and not labels:
        raise ConfigError("label_weights choose the label losses' λ: give edges or triplets")
    seed_everything(config.seed)
    dataset = Dataset.load(dataset_path)
    retriever = TwoTower.load(retrieval / "model", dataset)
    candidates = Candidates.load(retrieval / "candidates.parquet")
    choose = config.mode == "hybrid" and config.alpha is None
    if choose or config.label_weights:  # fail before training, not after
        valid_candidates = _validation_candidates(config, retrieval, retriever)
    negatives = candidates if config.model.hard_negatives else None
    start = time.perf_counter()
    label_weight, sweep = None, None
    if config.label_weights:
        model, label_weight, sweep = _choose_label_weight(config, dataset, labels, negatives,
                                                          valid_candidates)  # fmt: skip
        model.fit(dataset)  # goes on with the chosen model's generator
    else:
        model = SequentialRecommender(config.model, labels, negatives)
        model.fit(dataset, generator=config.generator())
    fitted = time.perf_counter()
    alpha = config.alpha
    curve: list[dict[str, float]] = []
    if choose:
        if sweep is None:
            assert model.validation_model is not None  # early stopping is checked above
            view = validation_view(dataset, config.model.valid_share)
            sweep = choose_alpha(model.validation_model, view, valid_candidates, config.alphas)
        alpha, curve = sweep
    fused = FusedRanker(model, retriever, config.mode, 0.5 if alpha is None else alpha)
    metrics = evaluate(
        fused, dataset, config.ks, candidates, config.candidate_ms, config.batch_size
    )
    fused.save(out / "model")
    files = {name: path for name, path in vars(labels).items() if path is not None}
    inputs = {"dataset": dataset_path, "retrieval": retrieval, **files}
    result = run_record(config, dataset, inputs, metrics, model, fit_s=fitted - start,
                        total_s=time.perf_counter() - start)  # fmt: skip
    result["fusion"] = {"mode": config.mode, "alpha": alpha, "validation_curve": curve}
    if label_weight is not None:
        result["label_weight"] = label_weight
    write_run(out, config, result)
    return result


def _choose_label_weight(
    config: RankConfig,
    dataset: Dataset,
    labels: LabelFiles,
    negatives: Candidates | None,
    candidates: Candidates,
) -> tuple[SequentialRecommender, dict[str, Any], tuple[float, list[dict[str, float]]]]:
    """The model (trained on the validation view) of the ``label_weights`` value whose
    fused validation ranking scores best at its best α; the chosen value with every
    value's figures; and the chosen model's α sweep (so it is not run again). Every
    value's model starts from the run's seed, so they differ by λ only."""
    view = validation_view(dataset, config.model.valid_share)
    alphas = config.alphas if config.alpha is None else (config.alpha,)
    best, best_score, points = None, -np.inf, []
    for weight in config.label_weights:
        settings = config.model.model_copy(update={"lambda_sim": weight, "lambda_pair": weight})
        model = SequentialRecommender(settings, labels, negatives)
        model.validate(dataset, view, generator=config.generator())
        assert model.validation_model is not None and model.training_log.validation is not None
        sweep = choose_alpha(model.validation_model, view, candidates, alphas)
        score = max(point["score"] for point in sweep[1])
        epochs = model.training_log.validation.best_epoch
        points.append({"weight": weight, "alpha": sweep[0], "score": score, "epochs": epochs})
        log.info("label weight %g: validation score %.4f (alpha %g)", weight, score, sweep[0])
        if score > best_score:
            best, best_score = (model, weight, sweep), score
    assert best is not None
    model, chosen, sweep = best
    return model, {"chosen": chosen, "validation": points}, sweep


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
