"""Runs inside the ColdRec toolkit's venv (started by ``peer_coldrec_toolkit.py``; never
imported by coldrec): trains one of the toolkit's models as its ``main.py`` would, from
the toolkit's folder ``TOOLKIT`` on the converted data under the working directory
(``./data/NAME/…``; backbone embeddings in ``./emb/``), and writes

- ``OUT/top.npz``: ``users`` (toolkit user ids) and ``items`` (each user's top items,
  toolkit item ids, best first), the toolkit's own ranking of its overall test users
  (history masked, the whole catalogue, as its ``test("all")`` makes it);
- ``OUT/run.json``: the toolkit's own test metrics (all / cold / warm, its evaluator),
  the wall seconds of every training epoch, the toolkit's seconds per epoch and how far
  training moved the model's ``embedding_dict`` (``embedding_drift``: ‖after − before‖ /
  ‖before‖ of its user and of its item vectors; for DropoutNet, Heater and ALDI these
  start as the backbone's vectors).

Validation is switched off: the toolkit keeps the model of its best validation epoch,
here every epoch's model is kept, so training runs exactly ``--epochs`` epochs and the
last one is tested (its validation files are read, never used).

With ``--frozen-backbone`` the model's backbone vectors (its ``embedding_dict``, loaded
from ``./emb/``) are held fixed, as the toolkit's Heater and ALDI hold theirs (a diagnostic
for its DropoutNet, which trains them).

Usage: ``python _coldrec_toolkit_worker.py TOOLKIT OUT [--frozen-backbone] MAIN_PY_ARGUMENTS…``
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def main(toolkit: Path, out: Path, arguments: list[str], frozen: bool = False) -> None:
    sys.path.insert(0, str(toolkit))
    sys.argv = ["main.py", *arguments]
    import main as toolkit_main  # the toolkit's main.py: Config, model_factory, parse_args
    from model.BaseRecommender import BaseColdStartTrainer
    from util.utils import set_seed

    ends: list[float] = []

    def keep_every_epoch(self: Any, epoch: int, valid_type: str = "all") -> list[str]:
        """Stands for the toolkit's per-epoch validation: keep this epoch's model."""
        self.save()
        ends.append(time.time())
        return []

    BaseColdStartTrainer.fast_evaluation = keep_every_epoch
    args = toolkit_main.parse_args()
    config = toolkit_main.Config(args)
    set_seed(args.seed, args.use_gpu)
    model = toolkit_main.model_factory(config)
    backbone = model.model.embedding_dict  # every model's user and item vectors
    if frozen:  # the optimiser, built in train(), skips parameters that get no gradient
        backbone.requires_grad_(False)
    before = {key: vectors.detach().clone() for key, vectors in backbone.items()}
    model.run()  # trains, then tests all / cold / warm with the toolkit's evaluator
    drift = {key: float((backbone[key].detach() - vectors).norm() / vectors.norm())
             for key, vectors in before.items()}  # fmt: skip
    starts = [model.train_start_time, *ends[:-1]]
    top_ns = [int(n) for n in args.topN.split(",")]
    toolkit_metrics = {
        setting: {
            f"{metric}@{n}": float(values[i][column])
            for i, n in enumerate(top_ns)
            for column, metric in enumerate(("hit", "precision", "recall", "ndcg"))
        }
        for setting, values in (("all", model.overall_test_results),
                                ("cold", model.cold_test_results),
                                ("warm", model.warm_test_results))
    }  # fmt: skip
    ranked = model.test("all")
    users = np.array(list(ranked), dtype=np.int64)
    items = np.array([[item for item, _ in ranked[user]] for user in ranked], dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "top.npz", users=users, items=items)
    elapsed = model.train_end_time - model.train_start_time
    run = {
        "toolkit_metrics": toolkit_metrics,
        "epoch_seconds": [end - start for start, end in zip(starts, ends, strict=True)],
        "toolkit_seconds_per_epoch": elapsed / max(model.epochs_ran, 1),
        "epochs_ran": model.epochs_ran,
        "embedding_drift": drift,
        "arguments": arguments,
    }
    (out / "run.json").write_text(json.dumps(run, indent=1))


if __name__ == "__main__":
    frozen = sys.argv[3:4] == ["--frozen-backbone"]
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3 + frozen :], frozen)
