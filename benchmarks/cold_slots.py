"""Where a model's cold Recall@20 comes from (issue 29): how many of its top-20 places
go to cold items, and how often a cold place is a hit, beside the same for warm places.

A list's cold Recall grows with both: more cold places, or better cold items in them.
CLCRec beats E0 on cold items in the one list; this says which of the two it does, and so
what E0 would need to match it.

For every coldrec cold-start model saved by ``coldstart_baselines.py --data beauty``
(``runs/coldstart_beauty/baselines/<model>/seed<S>/model``) and by the diagnostic runs
into ``runs/coldstart_beauty_diag`` (``docs/results.md`` gives their commands), the top 20
of each test user with a history is ranked again by ``coldrec.eval.protocol.rank`` (full
catalogue, history masked, as its metrics were); the ColdRec toolkit's from the top-100
lists its runs left (``peer_coldrec_toolkit.py --data beauty``:
``runs/coldrec_toolkit_beauty/seed<S>/<model>``); E0's from its rank run's
``ranked.parquet`` (default: ``llm_rank.py``'s E0, seed 0, the same Dataset by data hash).
Per model and seed: Recall@20 per segment (``evaluate``), the share of top-20 places
holding a cold item (mean over users), hits per 1,000 cold places and per 1,000 warm ones.

Then what E0 would gain from more cold places: its top 100 re-ordered by its score plus
``prior`` for a cold item, ``prior`` chosen on the validation view (E0's validation twin's
ranking, coldrec's selection objective: the mean of warm and cold Recall@20) and the
chosen one applied to test. Writes ``benchmarks/results/cold_slots_beauty.{md,json}``.
Run from the project root: ``.venv/bin/python benchmarks/cold_slots.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import sparse

from _common import ROOT, mean_std, write_results
from coldrec._util.sparse import hit_matrix
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.eval.protocol import EvaluationPlan, Scorer, Selection, evaluate, rank
from coldrec.training.saving import SIDECAR, import_class
from peer_recbole import TopList

# coldstart_baselines.py's run, and the diagnostics' (results.md names their commands)
RUNS = (ROOT / "runs" / "coldstart_beauty", ROOT / "runs" / "coldstart_beauty_diag")
TOOLKIT = ROOT / "runs" / "coldrec_toolkit_beauty"
E0 = ROOT / "runs" / "llm_rank_beauty" / "e0" / "rank" / "seed0" / "ranked.parquet"
K = 20
PRIORS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 1.0)


class ColdPrior:
    """A ranking's own scores of its candidates, plus ``prior`` for a cold item."""

    def __init__(self, ranked: Candidates, cold: np.ndarray, prior: float) -> None:
        self.ranked, self.cold, self.prior = ranked, cold, prior

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if items is None:
            raise ValueError("ColdPrior scores a ranking's candidates only")
        return self.ranked.score(users, items) + self.prior * self.cold[np.maximum(items, 0)]


def prior_curve(dataset: Dataset, run: Path) -> tuple[list[dict[str, float]], float]:
    """Warm and cold Recall@20 on validation and test of ``run``'s ranking (a ``coldrec
    rank`` run folder) re-ordered with each of ``PRIORS``, and the spread of its scores
    (a larger prior puts every cold candidate first)."""
    share = json.loads((run / "config.json").read_text())["model"]["valid_share"]
    views = {name: (view, Candidates.load(run / file)) for name, view, file in (
        ("valid", validation_view(dataset, share), "valid_ranked.parquet"),
        ("test", dataset, "ranked.parquet"))}  # fmt: skip
    spread = max(float(np.ptp(ranked.scores[ranked.items >= 0])) for _, ranked in views.values())
    curve = []
    for prior in PRIORS:
        point = {"prior": prior}
        for name, (view, ranked) in views.items():
            cold = view.items["cold"].to_numpy()
            found = evaluate(ColdPrior(ranked, cold, prior), view, ks=(K,), candidates=ranked)
            for segment in ("all", "warm", "cold"):
                point[f"{name}_{segment}"] = found["segments"][segment][f"recall@{K}"]
        point["valid_mean"] = Selection().score(point["valid_warm"], point["valid_cold"])
        curve.append(point)
    return curve, spread


def places(top: np.ndarray, targets: sparse.csr_array, cold: np.ndarray) -> dict[str, float]:
    """The cold share of the places of ``top`` (users × places, ``-1``: empty) and hits
    per 1,000 cold and warm places (``targets``: the users' test items, as rows)."""
    filled = top >= 0
    is_cold = filled & cold[np.maximum(top, 0)]
    hits = hit_matrix(top, targets) & filled
    warm = filled & ~is_cold
    return {"cold_share": float((is_cold.sum(1) / top.shape[1]).mean()),
            "cold_hits_per_1000": 1000 * float(hits[is_cold].sum() / max(is_cold.sum(), 1)),
            "warm_hits_per_1000": 1000 * float(hits[warm].sum() / max(warm.sum(), 1))}  # fmt: skip


def saved_model(folder: Path, dataset: Dataset) -> Scorer:
    """The coldrec model saved in ``folder``."""
    cls = import_class(json.loads((folder / SIDECAR).read_text())["class"], folder)
    model: Scorer = cls.load(folder, dataset)
    return model


def toolkit_lists(folder: Path, dataset: Dataset) -> TopList:
    """A toolkit run's ``top.npz`` as a scorer (ids mapped back by ``ids.npz``)."""
    ids, top = np.load(folder.parent.parent / "ids.npz"), np.load(folder / "top.npz")
    return TopList(ids["users"][top["users"]], ids["items"][top["items"]], dataset.n_items,
                   dataset.n_users)  # fmt: skip


def figures(
    scorer: Scorer, dataset: Dataset, plan: EvaluationPlan, candidates: Candidates | None = None
) -> dict[str, float]:
    """Recall@20 per segment (coldrec's protocol) and :func:`places` of ``scorer``'s top
    20 for the users with a history (over ``candidates`` only when given)."""
    n = plan.n_with_history
    block = None if candidates is None else candidates.for_users(plan.users[:n])
    top = rank(scorer, plan.users[:n], plan.history[:n], K, block)
    segments = evaluate(scorer, dataset, ks=(K,), candidates=candidates)["segments"]
    recall = {f"{s}_recall": segments[s][f"recall@{K}"] for s in ("all", "warm", "cold")}
    return {**recall, **places(top, plan.targets[:n], dataset.items["cold"].to_numpy())}


def seed_of(folder: Path) -> int:
    return int(folder.name.removeprefix("seed"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e0", type=Path, default=E0, help="E0's ranked.parquet")
    args = parser.parse_args()
    dataset = Dataset.load(RUNS[0] / "data")
    plan = EvaluationPlan.of(dataset)
    runs: dict[str, list[dict[str, float]]] = {}
    for folder in sorted(f for run in RUNS for f in (run / "baselines").glob("*/seed*/model")):
        found = figures(saved_model(folder, dataset), dataset, plan)
        runs.setdefault(folder.parent.parent.name, []).append(
            {"seed": seed_of(folder.parent), **found})  # fmt: skip
    for folder in sorted(TOOLKIT.glob("seed*/*/top.npz")):
        found = figures(toolkit_lists(folder.parent, dataset), dataset, plan)
        runs.setdefault(f"toolkit {folder.parent.name}", []).append(
            {"seed": seed_of(folder.parent.parent), **found})  # fmt: skip
    curve: list[dict[str, float]] = []
    spread = 0.0
    if args.e0.is_file():
        ranked = Candidates.load(args.e0)
        runs["E0"] = [{"seed": 0, **figures(ranked, dataset, plan, ranked)}]
        curve, spread = prior_curve(dataset, args.e0.parent)
    best = max(curve, key=lambda point: point["valid_mean"]) if curve else None
    columns = (("all_recall", 4), ("warm_recall", 4), ("cold_recall", 4), ("cold_share", 3),
               ("cold_hits_per_1000", 1), ("warm_hits_per_1000", 1))  # fmt: skip
    rows = [f"| {name} | {len(seeds)} | "
            + " | ".join(mean_std([s[key] for s in seeds], digits) for key, digits in columns)
            + " |" for name, seeds in runs.items()]  # fmt: skip
    cold = dataset.items["cold"].to_numpy()
    markdown = f"""# Cold and warm places in the top 20 (Amazon Beauty, global split)

Test users with a history ({plan.n_with_history:,}); {int(cold.sum()):,} of
{dataset.n_items:,} items cold. Per model, mean ± std over the seeds kept: Recall@20 per
segment, the share of top-20 places holding a cold item, and hits per 1,000 places of
each kind (‰: per 1,000; a place is a hit when its item is one of the user's test items).

| model | seeds | all R@20 | warm R@20 | cold R@20 | cold share | hits ‰ cold places | hits ‰ warm |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
{prior_table(curve, best, spread)}
    .venv/bin/python benchmarks/cold_slots.py --e0 {args.e0.relative_to(ROOT)}
"""
    write_results("cold_slots_beauty", {"runs": runs, "prior_curve": curve, "chosen_prior": best,
                                        "e0_score_spread": spread}, markdown)  # fmt: skip


def prior_table(curve: list[dict[str, float]], best: dict[str, float] | None,
                spread: float) -> str:  # fmt: skip
    """The Markdown of E0's prior curve (empty without one)."""
    if best is None:
        return ""
    keys = ("valid_warm", "valid_cold", "valid_mean", "test_all", "test_warm", "test_cold")
    rows = [f"| {p['prior']:g}{' (chosen)' if p is best else ''} | "
            + " | ".join(f"{p[key]:.4f}" for key in keys) + " |" for p in curve]  # fmt: skip
    return f"""
E0's top 100 re-ordered by its score plus a prior for cold items (Recall@20; the prior
chosen on validation by the mean of warm and cold, then applied to test). E0's scores span
{spread:.2f} (validation and test): a larger prior puts every cold candidate of the
top 100 first.

| prior | valid warm | valid cold | valid mean | test all | test warm | test cold |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
"""


if __name__ == "__main__":
    main()
