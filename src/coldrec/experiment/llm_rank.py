"""``coldrec llm-rank``: the LLM as ranker of a run's top candidates, measured against the
run's own order, a fusion of the two, and chance.

The run is a ``coldrec rank`` run (its fused ranking: ``ranked.parquet``, and the
validation twin's ``valid_ranked.parquet``) or a ``coldrec retrieve`` run
(``candidates.parquet``, ``valid_candidates.parquet``). For a seeded sample of ``users``
test users with a history and at least ``top_c`` candidates, their first ``top_c`` go
to the LLM with the user's recent history (the prompts, bootstrapping and answer
completion of :mod:`coldrec.supervision.llm_rank`; ``answer: scores`` asks for 0–10
scores instead). Reported per segment (all / warm / cold), Recall and NDCG at ``ks``:

- ``model``: the run's own order of the top C;
- ``llm``: the LLM's order (its mean Borda points; ties, and users whose every answer
  was unusable, in the model's order);
- ``fused``: ``α·softmax(s_model) + (1 − α)·softmax(s_llm / τ)``
  (:func:`~coldrec.supervision.rerank.fused_scores`), α chosen on as many sampled users
  of the validation view, ranked by the run's validation twin (never on test);
- ``random``: the expectation over uniformly random orders of the same C, the chance
  line. Recall and NDCG are linear in the hits and a random order puts each of a user's
  ``h`` hits among the C at every position with probability ``1 / C``, so the expected
  metric is the metric of a hit row filled with ``h / C``.

A sample's hits are few (200 Beauty users' top 20 hold about 20), so orders differ by
little against the noise: ``differences`` gives, per segment and metric, the mean over
the same users of the LLM's order minus the model's, of the LLM's minus chance and of the
fused minus the model's, with its standard error.

Writes ``summary.json`` (the table, the differences, α and its validation curve, the
answers' faults, the calls' tokens, seconds and cost), ``rankings.parquet`` (per shown
candidate: split, user, the model's position and score, the LLM's points) and
``calls.jsonl``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from coldrec._util.io import atomic_write, read_json, write_json_atomic
from coldrec._util.sparse import hit_matrix, list_lengths
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.errors import ConfigError
from coldrec.eval.metrics import METRICS as METRIC_FUNCTIONS
from coldrec.eval.metrics import mean_metrics
from coldrec.eval.protocol import EvaluationPlan
from coldrec.llm.client import LLM
from coldrec.llm.engines import open_llm
from coldrec.supervision.rerank import (
    CandidateRelevance,
    RerankConfig,
    best_alpha,
    fused_scores,
)
from coldrec.training.runs import json_safe

__all__ = [
    "LLMRankConfig",
    "expected_random_hits",
    "figure",
    "run_llm_rank",
    "run_rankings",
    "summary_markdown",
]

log = logging.getLogger(__name__)

METRICS = ("recall", "ndcg")
_RUN_FILES = (("ranked.parquet", "valid_ranked.parquet"),  # coldrec rank
              ("candidates.parquet", "valid_candidates.parquet"))  # coldrec retrieve  # fmt: skip


class LLMRankConfig(RerankConfig):
    """What ``coldrec llm-rank`` asks and of whom (the re-ranking settings, answering a
    ranking by default)."""

    answer: Literal["scores", "ranking"] = "ranking"
    users: int = Field(200, gt=0)
    """Test users ranked, and validation users α is chosen on (seeded samples)."""
    ks: tuple[Annotated[int, Field(gt=0)], ...] = Field((10, 20), min_length=1)
    """Cut-offs of the reported Recall and NDCG (α is chosen by NDCG at the first), at
    most ``top_c`` (by default 10 and 20, those of them inside ``top_c``, else ``top_c``)."""

    @model_validator(mode="before")
    @classmethod
    def _default_cut_offs_inside_the_ranked(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ks" not in data:
            c = data.get("top_c", cls.model_fields["top_c"].default)
            if isinstance(c, int):
                return {**data, "ks": tuple(k for k in (10, 20) if k <= c) or (c,)}
        return data

    @model_validator(mode="after")
    def _cut_offs_inside_the_ranked(self) -> Self:
        if max(self.ks) > self.top_c:
            raise ValueError(f"ks {list(self.ks)} reach past the {self.top_c} ranked candidates")
        return self


def run_rankings(run: Path) -> tuple[Candidates, Candidates]:
    """The test and validation rankings of a ``coldrec rank`` or ``coldrec retrieve`` run."""
    for test, valid in _RUN_FILES:
        if (run / test).is_file():
            if not (run / valid).is_file():
                raise ConfigError(f"{run / valid} is missing: α is chosen on the validation "
                                  "view's ranking, which a rank run writes when it chooses its "
                                  "own α (hybrid mode, no alpha set)")  # fmt: skip
            return Candidates.load(run / test), Candidates.load(run / valid)
    raise ConfigError(f"{run} holds no ranking: give a 'coldrec rank' run (ranked.parquet) "
                      "or a 'coldrec retrieve' run (candidates.parquet)")  # fmt: skip


def run_llm_rank(config: LLMRankConfig, dataset_path: Path, run: Path, out: Path) -> dict[str, Any]:
    """Rank the sampled users' top candidates of ``run`` with the LLM; write the run folder
    ``out`` and return the summary (see the module doc)."""
    dataset = Dataset.load(dataset_path)
    test_ranked, valid_ranked = run_rankings(run)
    _check_same_data(run, dataset)
    share = read_json(run / "config.json")["model"]["valid_share"]
    view = validation_view(dataset, share)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    with open_llm(config, log=out / "calls.jsonl") as llm:
        if llm.backend.generates_text:
            llm.preflight()
        valid = _Ranked(view, valid_ranked, config, llm)
        test = _Ranked(dataset, test_ranked, config, llm)
        alpha, curve = _choose_alpha(valid, config)
        orders = {"model": test.top, "llm": test.fused_order(0.0),
                  "fused": test.fused_order(alpha)}  # fmt: skip
        table = {name: test.metrics(order) for name, order in orders.items()}
        table["random"] = test.metrics(None)
        model, llm_order, fused = orders["model"], orders["llm"], orders["fused"]
        differences = {"llm_vs_model": test.difference(llm_order, model),
                       "llm_vs_random": test.difference(llm_order, None),
                       "fused_vs_model": test.difference(fused, model)}  # fmt: skip
        parts = (("test", test), ("valid", valid))
        summary = {
            "users": {"test": len(test.users), "valid": len(valid.users)},
            "top_c": config.top_c, "ks": list(config.ks), "prompt": config.prompt,
            "answer": config.answer, "bootstrap": config.bootstrap,
            "metrics": table, "differences": differences, "alpha": alpha,
            "validation_curve": curve,
            "invalid_users": {name: part.relevance.invalid_users() for name, part in parts},
            "answer_faults": {name: part.relevance.faults.as_dict() for name, part in parts},
            "backend": llm.described(), "calls": llm.totals(),
        }  # fmt: skip
    with atomic_write(out / "rankings.parquet") as path:
        pd.concat([valid.frame("valid"), test.frame("test")]).to_parquet(path, index=False)
    write_json_atomic(out / "summary.json", json_safe(summary))  # an empty segment: null
    log.info("llm-rank: %d test users ranked, written to %s", len(test.users), out)
    return summary


def _check_same_data(run: Path, dataset: Dataset) -> None:
    """Refuse a Dataset other than the one ``run`` was made from (its metrics files record
    the data's hash): its user and item ids would mean other users and items."""
    for metrics in sorted(run.glob("metrics-seed*.json")):
        made_from = read_json(metrics).get("data_hash")
        if made_from is not None and made_from != dataset.data_hash():
            raise ConfigError(f"{run} was made from other data than the Dataset given "
                              f"({metrics.name}: data_hash {made_from}): give the run's "
                              "own Dataset")  # fmt: skip


class _Ranked:
    """One split's sampled users, their top C in the run's order and the LLM's points."""

    def __init__(self, dataset: Dataset, ranked: Candidates, config: LLMRankConfig, llm: LLM):
        self.dataset, self.config = dataset, config
        self.plan = EvaluationPlan.of(dataset)
        self.rows = _sampled_rows(self.plan, ranked, config)
        self.users = self.plan.users[self.rows]
        self.top = ranked.for_users(self.users)[:, : config.top_c]
        self.model_scores = ranked.score(self.users, self.top).astype(np.float64)
        self.relevance = CandidateRelevance(dataset, config, llm)
        self.points = self.relevance.of(self.users, self.top)

    def fused_order(self, alpha: float) -> np.ndarray:
        """The top C ordered by the fusion at ``alpha`` (ties in the model's order)."""
        fused = fused_scores(self.model_scores, self.points, alpha, self.config.temperature)
        return np.take_along_axis(self.top, np.argsort(-fused, axis=1, kind="stable"), axis=1)

    def metrics(self, order: np.ndarray | None) -> dict[str, dict[str, float]]:
        """Recall and NDCG at ``ks`` per segment of ``order`` (None: a random order's
        expectation), with the segment's user count."""
        return {name: {**mean_metrics(hits, n_targets, self.config.ks, METRICS),
                       "users": len(n_targets)}
                for name, hits, n_targets in self._segment_hits(order)}  # fmt: skip

    def difference(
        self, order: np.ndarray | None, other: np.ndarray | None
    ) -> dict[str, dict[str, dict[str, float]]]:
        """Per segment and metric, the mean over the segment's users of ``order``'s metric
        minus ``other``'s (the same users: a paired difference) and its standard error."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for (name, hits, n_targets), (_, other_hits, _) in zip(
            self._segment_hits(order), self._segment_hits(other), strict=True
        ):
            table[name] = {}
            for k in self.config.ks:
                for metric in METRICS:
                    score = METRIC_FUNCTIONS[metric]
                    paired = score(hits, n_targets, k) - score(other_hits, n_targets, k)
                    table[name][f"{metric}@{k}"] = _mean_and_error(paired)
        return table

    def _segment_hits(
        self, order: np.ndarray | None
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(segment, hit rows, target counts)`` of the sampled users of each segment
        under ``order`` (None: a random order's expected hits)."""
        cold = self.dataset.items["cold"].to_numpy()
        position = pd.Index(self.rows)
        for name, rows, targets in self.plan.segments(cold):
            if name == "cold_users":
                continue
            picked = np.flatnonzero(np.isin(rows, self.rows))
            at = position.get_indexer(rows[picked])
            hits = hit_matrix(self.top[at] if order is None else order[at], targets[picked])
            if order is None:
                hits = expected_random_hits(hits)
            yield name, hits, list_lengths(targets[picked])

    def frame(self, split: str) -> pd.DataFrame:
        c = self.top.shape[1]
        return pd.DataFrame({
            "split": split, "user_idx": np.repeat(self.users, c),
            "model_position": np.tile(np.arange(1, c + 1), len(self.users)),
            "item_idx": self.top.ravel(), "model_score": self.model_scores.ravel(),
            "llm_points": self.points.ravel()})  # fmt: skip


def _sampled_rows(plan: EvaluationPlan, ranked: Candidates, config: LLMRankConfig) -> np.ndarray:
    """Rows of ``plan`` (users with a history and ``top_c`` ranked items), a seeded sample
    of ``users`` of them (the first of a seeded shuffle), in plan order."""
    widths = (ranked.for_users(plan.users[: plan.n_with_history]) >= 0).sum(axis=1)
    eligible = np.flatnonzero(widths >= config.top_c)
    if not len(eligible):
        raise ConfigError(f"no evaluated user has {config.top_c} ranked candidates: lower top_c")
    # a prefix of one seeded order: a larger sample holds a smaller one (and its cached answers)
    order = np.random.default_rng(config.seed).permutation(eligible)
    return np.sort(order[: config.users])


def _mean_and_error(values: np.ndarray) -> dict[str, float]:
    """The mean of ``values`` and its standard error (NaN for fewer than two values)."""
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    error = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "se": error}


def expected_random_hits(hits: np.ndarray) -> np.ndarray:
    """The expected hit row of a uniformly random order of each row's items: each of the
    row's hits is at every position with probability ``1 / width``."""
    share = hits.sum(axis=1, keepdims=True) / hits.shape[1]
    return np.broadcast_to(share, hits.shape).astype(np.float64)


def _choose_alpha(valid: _Ranked, config: LLMRankConfig) -> tuple[float, list[dict[str, Any]]]:
    """The α of ``config.alphas`` whose fused order scores best on the validation users
    (warm and cold NDCG at the first cut-off, by the default selection), the larger α
    among equals; and the curve."""
    k = f"ndcg@{config.ks[0]}"
    curve = []
    for alpha in config.alphas:
        table = valid.metrics(valid.fused_order(alpha))
        curve.append({"alpha": alpha, "warm": table["warm"][k], "cold": table["cold"][k]})
    return best_alpha(curve), curve


def figure(value: float | None) -> str:
    """A metric as printed: four decimals, or "–" where it is undefined (no users)."""
    return "–" if value is None or value != value else f"{value:.4f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (each order's Recall and NDCG per segment) and a
    line on α, the answers and what the calls cost."""
    ks, segments = summary["ks"], ("all", "warm", "cold")
    names = [f"{s} {m}@{k}" for s in segments for k in ks for m in METRICS]
    lines = [f"| order | {' | '.join(names)} |", f"|---|{'---:|' * len(names)}"]
    for order, table in summary["metrics"].items():
        values = [table[s][f"{m}@{k}"] for s in segments for k in ks for m in METRICS]
        lines.append(f"| {order} | {' | '.join(figure(v) for v in values)} |")
    faults = summary["answer_faults"]["test"]
    answers = list(summary["calls"].values())
    tokens = sum(p["answer_prompt_tokens"] + p["answer_completion_tokens"] for p in answers)
    users = summary["users"]
    lines += ["", f"{users['test']:,} test users (α chosen on {users['valid']:,} validation "
              f"users: {summary['alpha']:g}); prompt `{summary['prompt']}`, bootstrap "
              f"{summary['bootstrap']}; backend `{summary['backend']['identity']}` "
              f"({summary['backend']['note']}); invalid answers {faults['invalid_rate']:.1%} "
              f"of {faults['answers']:,}; {tokens:,} tokens, "
              f"{sum(p['answer_cost'] for p in answers):.4f} at the configured price."]  # fmt: skip
    return "\n".join(lines)
