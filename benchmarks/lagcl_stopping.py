"""Why LAGCL4Rec's graph models stop early on MovieLens-100K (issue 27): the validation
curves behind the epochs early stopping chose.

``lagcl.py --data ml100k --split random`` chose 190–245 epochs for LightGCN without the
data level but 5–10 with it, and 5 for every XSimGCL. This trains each model on the
seed's validation view (the run's prepared data, its augmentation) for a fixed number of
epochs, and every ``--every`` epochs records the warm and cold Recall@20 on the view (the
selection score is their mean) and the popularity ranker's for reference. LightGCN:
base, the augmented positives alone, the augmented negatives alone, both (the data
level), and the base without the real low-rating negatives (``disliked_share 0``).
XSimGCL: base, without its contrastive term (``lambda_cl 0``), without the noise
(``eps 0``), a tenth of the contrastive weight (``lambda_cl 0.02``), and batches of 256
pairs instead of 2,048 (fewer of the users in each batch's contrastive term).

A rerun with ``--variants`` adds its curves to those the results file already holds
for the same split (a long variant can be run on its own, with its own ``--epochs``).

``--run``: a run of ``configs/ml100k/lagcl_ml100k.yaml`` (its ``data`` and ``augment``
steps; default ``runs/lagcl_ml100k_random``, from ``lagcl.py --data ml100k --split
random``). Writes ``benchmarks/results/lagcl_stopping_<split>.{md,json}``. Run from the
project root: ``.venv/bin/python benchmarks/lagcl_stopping.py [--run DIR]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from _common import RESULTS, ROOT, write_results
from coldrec.baselines.popularity import PopularityConfig
from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.data.prepare import validation_view
from coldrec.eval.protocol import evaluate
from coldrec.graph import GraphRecommender
from coldrec.graph.lightgcn import GraphConfig, LightGCNConfig, XSimGCLConfig
from coldrec.supervision.augment import read_augmentation

SMALL_BATCHES = XSimGCLConfig().training.model_copy(update={"batch_size": 256})
VARIANTS: dict[str, tuple[type[GraphConfig], dict[str, Any], str | None]] = {
    "lightgcn base": (LightGCNConfig, {}, None),
    "lightgcn + augmented positives": (LightGCNConfig, {"data_level": True}, "positive"),
    "lightgcn + augmented negatives": (LightGCNConfig, {"data_level": True}, "negative"),
    "lightgcn + both (data level)": (LightGCNConfig, {"data_level": True}, "both"),
    "lightgcn base, no real negatives": (LightGCNConfig, {"disliked_share": 0.0}, None),
    "xsimgcl base": (XSimGCLConfig, {}, None),
    "xsimgcl lambda_cl 0": (XSimGCLConfig, {"lambda_cl": 0.0}, None),
    "xsimgcl eps 0": (XSimGCLConfig, {"eps": 0.0}, None),
    "xsimgcl lambda_cl 0.02": (XSimGCLConfig, {"lambda_cl": 0.02}, None),
    "xsimgcl batch 256": (XSimGCLConfig, {"training": SMALL_BATCHES}, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "lagcl_ml100k_random")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--report", action="store_true", help="only rewrite the reports")
    args = parser.parse_args()
    if args.report:
        for path in sorted(RESULTS.glob("lagcl_stopping_*.json")):
            figures = read_figures(path)
            write_results(path.stem, figures, report(figures))
        return
    dataset = Dataset.load(args.run / "data")
    augmentation = read_augmentation(args.run / "augment", dataset)
    view = validation_view(dataset, LightGCNConfig().valid_share)
    split = dataset.meta["prepare"]["split"]
    popularity = validate(PopularityConfig, {}).build().fit(view)
    curves = {**earlier_curves(split), "popularity": {0: warm_cold(popularity, view)}}
    for name in args.variants:
        config, settings, kept = VARIANTS[name]
        curves[name] = curve(config, settings, chosen(augmentation, kept), view, args)
        print(name, curves[name], flush=True)
    epochs = max(epoch for points in curves.values() for epoch in points)
    figures = {"run": str(args.run), "split": split, "seed": args.seed, "epochs": epochs,
               "every": args.every, "view": view_counts(view), "curves": curves}  # fmt: skip
    write_results(f"lagcl_stopping_{split}", figures, report(figures))


def earlier_curves(split: str) -> dict[str, dict[int, dict[str, float]]]:
    """The curves an earlier run of this benchmark wrote for ``split`` (none: {})."""
    path = RESULTS / f"lagcl_stopping_{split}.json"
    return read_figures(path)["curves"] if path.is_file() else {}


def read_figures(path: Path) -> dict[str, Any]:
    """A results file's figures, the curves' epochs as numbers again."""
    figures = json.loads(path.read_text())
    figures.pop("machine", None)
    figures["curves"] = {name: {int(epoch): point for epoch, point in points.items()}
                         for name, points in figures["curves"].items()}  # fmt: skip
    return figures


def chosen(augmentation: pd.DataFrame, kept: str | None) -> pd.DataFrame | None:
    if kept is None:
        return None
    return augmentation if kept == "both" else augmentation.loc[augmentation["kind"] == kept]


def curve(
    config: type[GraphConfig],
    settings: dict[str, Any],
    augmentation: pd.DataFrame | None,
    view: Dataset,
    args: argparse.Namespace,
) -> dict[int, dict[str, float]]:
    """Warm and cold Recall@20 on the view every ``args.every`` epochs of one training."""
    model = GraphRecommender(validate(config, {**settings, "early_stopping": False}))
    model.augmentation = augmentation
    generator = torch.Generator().manual_seed(args.seed)
    trainer = model._start(view, generator)  # the trainer the fit uses, stepped by hand
    points = {}
    for epoch in range(1, args.epochs + 1):
        trainer.net.train()
        trainer.train_epoch(epoch)
        if epoch % args.every == 0:
            trainer.net.eval()
            with torch.no_grad():
                model.export()
                points[epoch] = warm_cold(model, view)
    return points


def warm_cold(model: Any, view: Dataset) -> dict[str, float]:
    segments = evaluate(model, view, ks=(20,))["segments"]
    return {s: segments[s]["recall@20"] for s in ("warm", "cold")}


def view_counts(view: Dataset) -> dict[str, int]:
    test = view.split("test")
    cold = view.items["cold"].to_numpy()
    return {"test": len(test), "cold_items": int(cold.sum()),
            "cold_test": int(cold[test["item_idx"].to_numpy()].sum())}  # fmt: skip


def report(figures: dict[str, Any]) -> str:
    counts = figures["view"]
    epochs = sorted({e for c in figures["curves"].values() for e in c if e})
    head = "| model | " + " | ".join(f"ep {e}" for e in epochs) + " |"
    rows = [head, "|---|" + "---:|" * len(epochs)]
    for name, points in figures["curves"].items():
        for segment in ("warm", "cold"):
            cells = [points.get(e, points.get(0, {})).get(segment, np.nan) for e in epochs]
            rows.append(f"| {name}: {segment} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return "\n".join(
        [
            f"# The graph models' validation curves on ML-100K's {figures['split']} split "
            "(issue 27)",
            "",
            f"Seed {figures['seed']}'s validation view of `{Path(figures['run']).name}` "
            f"({counts['test']:,} held-out interactions, {counts['cold_test']} of them on its "
            f"{counts['cold_items']} cold items); each model trained up to {figures['epochs']} "
            f"epochs without early stopping, Recall@20 on the view every {figures['every']} epochs "
            "(the selection score is the mean of warm and cold). Popularity: the same at every "
            "epoch.",
            "",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
