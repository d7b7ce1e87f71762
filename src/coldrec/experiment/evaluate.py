"""``coldrec evaluate``: fit any model on a Dataset's history and evaluate it on the test
split (full ranking), writing the run folder of :mod:`coldrec.training.runs`.

Each model has a typed config beside it whose ``kind`` names it and whose ``build()``
makes the model; :data:`ModelConfig` is their union, so a YAML ``model:`` node picks one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from coldrec.baselines.bm25 import BM25Config
from coldrec.baselines.bm25_dense import BM25DenseConfig
from coldrec.baselines.content import ItemKNNContentConfig
from coldrec.baselines.popularity import PopularityConfig
from coldrec.coldstart import (
    ALDIConfig,
    BPRMFConfig,
    CLCRecConfig,
    ContentModel,
    DeepMusicConfig,
    DropoutNetConfig,
    HeaterConfig,
)
from coldrec.config import kinds
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.errors import ConfigError
from coldrec.graph import GraphRecommender, LightGCNConfig, XSimGCLConfig
from coldrec.llm.engines import open_llm
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.rank.stars import StarsConfig, StarsRecommender
from coldrec.retrieval.two_tower import TwoTowerConfig
from coldrec.supervision.augment import read_augmentation
from coldrec.supervision.rerank import LLMReranked, RerankConfig, choose_alpha
from coldrec.supervision.tags import read_tags
from coldrec.training.model import Trainable
from coldrec.training.runs import RunConfig, run_record, seed_everything, write_run

__all__ = ["MODEL_KINDS", "EvaluateConfig", "ModelConfig", "run_evaluation"]

log = logging.getLogger(__name__)

ModelConfig = Annotated[
    PopularityConfig
    | ItemKNNContentConfig
    | BM25Config
    | BM25DenseConfig
    | TwoTowerConfig
    | SASRecConfig
    | GRU4RecConfig
    | BERT4RecConfig
    | StarsConfig
    | LightGCNConfig
    | XSimGCLConfig
    | BPRMFConfig
    | DeepMusicConfig
    | DropoutNetConfig
    | HeaterConfig
    | CLCRecConfig
    | ALDIConfig,
    Field(discriminator="kind"),
]
"""Any model config; ``kind`` selects the model."""

MODEL_KINDS = kinds(ModelConfig)


class EvaluateConfig(RunConfig):
    """What ``coldrec evaluate`` runs."""

    model: ModelConfig = Field(default_factory=PopularityConfig)
    rerank: RerankConfig | None = None
    """The LLM re-ranking of the model's top candidates, α chosen on validation (trained
    models with early stopping; LAGCL4Rec's rerank level)."""

    def default_name(self) -> str:
        return self.model.kind


def run_evaluation(
    config: EvaluateConfig,
    dataset_path: Path,
    out: Path,
    tags: Path | None = None,
    augmented: Path | None = None,
) -> dict[str, Any]:
    """Fit ``config.model`` on the Dataset in ``dataset_path`` and evaluate it; write the
    run folder (a trained model kept in ``out/model``) and return the metrics. ``tags``:
    the items' attribute tags (``coldrec tag``'s ``tags.parquet``; ``stars`` only)."""
    seed_everything(config.seed)
    dataset = Dataset.load(dataset_path)
    start = time.perf_counter()
    model = config.model.build()
    inputs: dict[str, Path] = {"dataset": dataset_path}
    if tags is not None:
        if not isinstance(model, StarsRecommender):
            raise ConfigError(f"tags are read by the stars model only, not {config.model.kind}")
        model.tags, model.vocabulary = read_tags(tags, dataset)
        inputs["tags"] = tags
    wants = isinstance(model, GraphRecommender) and model.config.data_level
    if wants != (augmented is not None):
        raise ConfigError("model.data_level (graph models) and the augmented interactions "
                          "go together: set both or neither")  # fmt: skip
    if isinstance(model, GraphRecommender) and augmented is not None:
        model.augmentation = read_augmentation(augmented, dataset)
        inputs["augmented"] = augmented
    if isinstance(model, Trainable):
        model.fit(dataset, generator=config.generator())
    else:
        model.fit(dataset)
    fitted = time.perf_counter()
    reranked: dict[str, Any] = {}
    if config.rerank is None:
        metrics = config.evaluate(model, dataset)
    else:
        metrics, reranked = _reranked(config, config.rerank, model, dataset, out)
    done = time.perf_counter()
    if isinstance(model, Trainable):
        model.save(out / "model")
    result = run_record(config, dataset, inputs, metrics, model,
                        fit_s=fitted - start, evaluate_s=done - fitted)  # fmt: skip
    if isinstance(model, SequentialRecommender) and model.transfer is not None:
        result["transfer"] = model.transfer.summary()
    if isinstance(model, ContentModel) and model.teacher is not None:
        result["teacher"] = model.teacher.training_log.summary()
    if reranked:
        result["rerank"] = reranked
    write_run(out, config, result)
    log.info("%s: metrics written to %s", config.method, out)
    return result


def _reranked(
    config: EvaluateConfig, rerank: RerankConfig, model: Any, dataset: Dataset, out: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics of ``model`` re-ranked by the LLM at the α its validation model chose,
    and what the re-ranking did (α, the validation curve, invalid answers, cost)."""
    validation = getattr(model, "validation_model", None)
    if validation is None:
        raise ConfigError("rerank chooses α on validation: use a trained model with "
                          "early_stopping")  # fmt: skip
    view = validation_view(dataset, model.config.valid_share)
    out.mkdir(parents=True, exist_ok=True)
    with open_llm(rerank, log=out / "rerank_calls.jsonl") as llm:
        if llm.backend.generates_text:
            llm.preflight()
        alpha, curve = choose_alpha(validation, view, rerank, llm)
        reranked = LLMReranked(model, dataset, rerank, llm, alpha)
        metrics = config.evaluate(reranked, dataset)
        summary = {"alpha": alpha, "validation_curve": curve,
                   "invalid_users": reranked.relevance.invalid_users(),
                   "users": len(reranked.relevance.scores),
                   "answer_faults": reranked.relevance.faults.as_dict(),
                   "backend": llm.described(), "calls": llm.totals()}  # fmt: skip
    return metrics, summary
