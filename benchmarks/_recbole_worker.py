"""Runs inside RecBole's own venv (started by ``peer_recbole.py`` and
``peer_lightgcn.py``; never imported by coldrec): trains RecBole's SASRec or LightGCN
(``settings["model"]``) on the atomic files in ``WORK`` and writes the top ``top_n``
unseen items of the users in ``WORK/users.npz`` to ``WORK/recbole_top.npz``, with the
seconds of every training epoch in ``WORK/recbole_timing.json``.

Usage: ``python _recbole_worker.py WORK SETTINGS.json``
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.model.general_recommender import LightGCN
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed


class TimedTrainer(Trainer):
    """RecBole's trainer, recording the wall time of each training epoch."""

    def __init__(self, config: Config, model: SASRec) -> None:
        super().__init__(config, model)
        self.epoch_seconds: list[float] = []

    def _train_epoch(self, *args, **kwargs):
        start = time.perf_counter()
        result = super()._train_epoch(*args, **kwargs)
        self.epoch_seconds.append(time.perf_counter() - start)
        return result


def top_items(model: SASRec, dataset, users: dict, max_len: int, top_n: int) -> tuple:
    """The ``top_n`` items (coldrec ids) for each user's history, history items excluded,
    and how many history items had no RecBole id."""
    indptr, history = users["indptr"], users["items"]
    # An item no training sample holds has no RecBole id: it is left out of the history.
    known = dataset.field2token_id["item_id"]
    internal = np.array([known.get(str(item), -1) for item in history], dtype=np.int64)
    rows_items, rows_scores, empty = [], [], 0
    model.eval()
    for start in range(0, len(indptr) - 1, 512):
        stop = min(start + 512, len(indptr) - 1)
        sequences = torch.zeros(stop - start, max_len, dtype=torch.long)
        lengths = torch.zeros(stop - start, dtype=torch.long)
        seen = []
        for row, user in enumerate(range(start, stop)):
            items = internal[indptr[user] : indptr[user + 1]]
            items = items[items >= 0]
            seen.append(items)
            tail = torch.as_tensor(items[-max_len:])
            sequences[row, : len(tail)] = tail  # RecBole sequences are right-padded
            # a history RecBole knows no item of is read as one padding token
            lengths[row] = max(len(tail), 1)
            empty += not len(tail)
        batch = Interaction({"item_id_list": sequences, "item_length": lengths})
        with torch.no_grad():
            scores = model.full_sort_predict(batch).reshape(stop - start, -1)
        scores[:, 0] = -torch.inf  # padding
        for row, items in enumerate(seen):
            scores[row, torch.as_tensor(items)] = -torch.inf
        best = torch.topk(scores, top_n, dim=1)
        rows_items.append(dataset.id2token("item_id", best.indices.numpy()).astype(np.int64))
        rows_scores.append(best.values.numpy())
    unknown = {"items": int((internal < 0).sum()), "users_with_no_known_item": empty}
    return np.concatenate(rows_items), np.concatenate(rows_scores), unknown


def top_items_general(model: LightGCN, dataset, users: dict, top_n: int) -> tuple:
    """The ``top_n`` items (coldrec ids) of each user by RecBole's full-catalogue scores,
    the user's history excluded."""
    indptr, history = users["indptr"], users["items"]
    user_ids = dataset.field2token_id["user_id"]
    item_ids = dataset.field2token_id["item_id"]
    rows_items, rows_scores = [], []
    model.eval()
    for start in range(0, len(users["users"]), 512):
        batch_users = users["users"][start : start + 512]
        internal = torch.as_tensor([user_ids[str(u)] for u in batch_users])
        with torch.no_grad():
            scores = model.full_sort_predict(Interaction({"user_id": internal}))
        scores = scores.reshape(len(batch_users), -1)
        scores[:, 0] = -torch.inf  # padding
        for row, user in enumerate(range(start, start + len(batch_users))):
            seen = [item_ids[str(i)] for i in history[indptr[user] : indptr[user + 1]]
                    if str(i) in item_ids]  # fmt: skip
            scores[row, torch.as_tensor(seen, dtype=torch.long)] = -torch.inf
        best = torch.topk(scores, top_n, dim=1)
        rows_items.append(dataset.id2token("item_id", best.indices.numpy()).astype(np.int64))
        rows_scores.append(best.values.numpy())
    return np.concatenate(rows_items), np.concatenate(rows_scores), {}


def train(config: Config, model: SASRec, train_data, saved: Path, settings: dict) -> dict:
    """Train ``model`` and save it with its epoch times, or load the model an earlier
    run saved with the same settings (an evaluation failure then costs no retraining).
    Returns the epoch times and ``trained_at``, when training ended (the saved file's time)."""
    state = torch.load(saved) if saved.is_file() else None
    if state is not None and state["settings"] == settings:
        model.load_state_dict(state["model"])
    else:
        trainer = TimedTrainer(config, model)
        trainer.fit(train_data, valid_data=None, verbose=False, saved=False, show_progress=False)
        state = {"settings": settings, "model": model.state_dict(),
                 "epoch_seconds": trainer.epoch_seconds}  # fmt: skip
        torch.save(state, saved)
    trained_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(saved.stat().st_mtime))
    return {"epoch_seconds": state["epoch_seconds"], "trained_at": trained_at}


def main(work: Path, settings_path: Path) -> None:
    settings = json.loads(settings_path.read_text())
    kind = settings.get("model", "SASRec")
    config = Config(model=kind, dataset=settings.get("dataset", "beauty"),
                    config_dict=settings["recbole"])  # fmt: skip
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = (LightGCN if kind == "LightGCN" else SASRec)(config, train_data.dataset)
    measured = train(config, model, train_data, work / "recbole_model.pt", settings)
    users = dict(np.load(work / "users.npz"))
    if kind == "LightGCN":
        items, scores, unknown = top_items_general(model, dataset, users, settings["top_n"])
    else:
        items, scores, unknown = top_items(
            model, dataset, users, config["MAX_ITEM_LIST_LENGTH"], settings["top_n"]
        )
    np.savez(work / "recbole_top.npz", users=users["users"], items=items, scores=scores)
    timing = {**measured, "torch_threads": torch.get_num_threads(),
              "history_items_without_recbole_id": unknown}  # fmt: skip
    (work / "recbole_timing.json").write_text(json.dumps(timing))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
