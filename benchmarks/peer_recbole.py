"""Peer check: RecBole 1.2.1's SASRec (CE loss) beside coldrec's full-softmax SASRec on
the same Beauty split, the same users and the same targets, run one after the other.

1. A venv for RecBole at ``.venv-recbole`` (``torch==2.13.0`` first, then
   ``recbole==1.2.1`` with ``numpy<2``, ``pandas<2.3`` and ``scipy<1.12``: RecBole 1.2.1
   still uses ``np.float_``, removed in NumPy 2, and its LightGCN ``dok_matrix._update``,
   removed in SciPy 1.12), unless it exists.
2. The training history exported as RecBole's pre-augmented sequential atomic files
   (``beauty.train.inter``: every prefix of at most 50 items → next item, i.e. exactly
   the targets coldrec trains on). RecBole never sees the test split: its valid/test
   files repeat each user's last training sample, and it is never asked to evaluate.
3. coldrec's SASRec, full softmax, lr 1e-3, for ``E`` epochs, where ``E`` is what early
   stopping chose on the validation view for seed 0 in ``sequential_beauty.py``.
4. RecBole's SASRec with the same width, depth, heads, feed-forward size, dropout,
   learning rate and max length, for the same ``E`` epochs (one epoch = every training
   target once in both), default batch 2048; then its top 100 unseen items for every
   test user with history, scored by coldrec's protocol.

Writes ``benchmarks/results/peer_recbole.{md,json}``. If RecBole cannot be installed or
run, the result says which step failed and why. Run from the project root:
``.venv/bin/python benchmarks/peer_recbole.py`` (needs the runs of
``sequential_beauty.py``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT, peer_venv, write_results
from beauty_baselines import COLDREC, RUNS
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.eval.protocol import evaluate

VENV = ROOT / ".venv-recbole"
WORK = ROOT / RUNS / "recbole"
MAX_LEN, TOP_N, SEED = 50, 100, 0
ARCHITECTURE = {"dim": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.2, "lr": 0.001}
SEGMENTS = ("all", "warm", "cold")
RECBOLE_PINS = ("recbole==1.2.1", "numpy<2", "pandas<2.3", "scipy<1.12")


class TopList:
    """A fixed ranking as a Recommender: the listed items score by rank, the rest NaN."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int, n_users: int):
        self.rows = np.full(n_users, -1)
        self.rows[users] = np.arange(len(users))
        self.items, self.n_items = items, n_items

    def fit(self, dataset: Dataset) -> TopList:
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        scores = np.full((len(users), self.n_items), np.nan, dtype=np.float32)
        for row, user in enumerate(users):
            if self.rows[user] >= 0:
                listed = self.items[self.rows[user]]
                scores[row, listed] = -np.arange(len(listed), dtype=np.float32)
        return scores


def install() -> str:
    """Make the venv unless it exists; the installed versions."""
    return peer_venv(VENV, RECBOLE_PINS, ("recbole", "torch", "numpy"))


def export(dataset: Dataset) -> None:
    """Pre-augmented atomic files of the training history, and the test users' histories."""
    folder = WORK / "beauty"
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    sequences = dataset.sequences(*HISTORY_SPLITS)
    lines = [
        f"{user}\t{' '.join(map(str, items[max(0, t - MAX_LEN) : t]))}\t{items[t]}\n"
        for user, items in enumerate(sequences)
        for t in range(1, len(items))
    ]
    last = {line.split("\t")[0]: line for line in lines}  # each user's last training sample
    (folder / "beauty.train.inter").write_text(header + "".join(lines))
    for split in ("valid", "test"):
        (folder / f"beauty.{split}.inter").write_text(header + "".join(last.values()))
    users = np.unique(dataset.interactions.loc[dataset.interactions["split"] == "test", "user_idx"])
    users = np.array([u for u in users if len(sequences[u])], dtype=np.int64)
    lengths = [len(sequences[u]) for u in users]
    np.savez(
        WORK / "users.npz",
        users=users,
        indptr=np.concatenate([[0], np.cumsum(lengths)]),
        items=np.concatenate([sequences[u] for u in users]),
    )


def run_worker(work: Path, settings: dict, figures: dict) -> dict | None:
    """Make RecBole's venv and run ``_recbole_worker.py`` (one thread) on ``settings`` in
    ``work``; its timing, or None when RecBole could not run (the failed command is
    recorded in ``figures``)."""
    try:
        figures["versions"] = install()
        (work / "settings.json").write_text(json.dumps(settings))
        worker = [str(VENV / "bin" / "python"), str(ROOT / "benchmarks" / "_recbole_worker.py")]
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        subprocess.run([*worker, str(work), str(work / "settings.json")], check=True, env=env,
                       cwd=work)  # fmt: skip
        figures["recbole_wall_s"] = time.perf_counter() - start
    except subprocess.CalledProcessError as error:
        figures["recbole_failed"] = f"{shlex.join(map(str, error.cmd))} exited {error.returncode}"
        print(f"RecBole could not run: {figures['recbole_failed']}", file=sys.stderr)
        return None
    timing: dict = json.loads((work / "recbole_timing.json").read_text())
    return timing


def recbole_settings(epochs: int) -> dict:
    return {
        "top_n": TOP_N,
        "recbole": {
            "data_path": str(WORK),
            "benchmark_filename": ["train", "valid", "test"],
            "alias_of_item_id": ["item_id_list"],
            "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
            "MAX_ITEM_LIST_LENGTH": MAX_LEN,
            "loss_type": "CE",
            "train_neg_sample_args": None,
            "hidden_size": ARCHITECTURE["dim"],
            "inner_size": ARCHITECTURE["dim"],
            "n_layers": ARCHITECTURE["n_layers"],
            "n_heads": ARCHITECTURE["n_heads"],
            "hidden_dropout_prob": ARCHITECTURE["dropout"],
            "attn_dropout_prob": ARCHITECTURE["dropout"],
            "learning_rate": ARCHITECTURE["lr"],
            "epochs": epochs,
            "eval_step": 0,
            "seed": SEED,
            "reproducibility": True,
            "use_gpu": False,
            "device": "cpu",
            "checkpoint_dir": str(WORK / "saved"),
            "show_progress": False,
            "worker": 0,
        },
    }


def coldrec_command(epochs: int) -> list[str]:
    return [
        "evaluate", "--dataset", str(RUNS / "data"), "--model", "sasrec",
        "--set", "model.loss=full", "--set", f"model.training.lr={ARCHITECTURE['lr']}",
        "--set", "model.early_stopping=false", "--set", f"model.training.epochs={epochs}",
        "--name", "coldrec_sasrec_full", "--out", str(RUNS / "peer_coldrec"), "--seed", str(SEED),
    ]  # fmt: skip


def table(rows: dict[str, dict]) -> str:
    head = "| method | s / epoch | " + " | ".join(
        f"{m}@{k} {s}" for m in ("Recall", "NDCG") for k in (10, 20) for s in SEGMENTS
    )
    lines = [head + " |", "|---" * (2 + 12) + "|"]
    for name, row in rows.items():
        cells = [
            f"{row['segments'][s][f'{m}@{k}']:.4f}"
            for m in ("recall", "ndcg")
            for k in (10, 20)
            for s in SEGMENTS
        ]
        lines.append(f"| {name} | {row['seconds_per_epoch']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    chosen = json.loads((ROOT / RUNS / "sasrec_full" / "metrics-seed0.json").read_text())
    epochs = chosen["training"]["final"]["epochs_run"]
    dataset = Dataset.load(ROOT / RUNS / "data")
    figures: dict = {"epochs": epochs, "threads": os.cpu_count()}
    subprocess.run([COLDREC, *coldrec_command(epochs)], cwd=ROOT, check=True)
    ours = json.loads((ROOT / RUNS / "peer_coldrec" / "metrics-seed0.json").read_text())
    rows = {"coldrec SASRec (full softmax)": {
        "segments": ours["segments"],
        "seconds_per_epoch": ours["training"]["final"]["seconds_per_epoch"],
    }}  # fmt: skip
    export(dataset)
    timing = run_worker(WORK, recbole_settings(epochs), figures)
    if timing is not None:
        top = np.load(WORK / "recbole_top.npz")
        ranked = TopList(top["users"], top["items"], dataset.n_items, dataset.n_users)
        rows["RecBole 1.2.1 SASRec (CE)"] = {
            "segments": evaluate(ranked, dataset)["segments"],
            "seconds_per_epoch": float(np.median(timing["epoch_seconds"])),
        }
        figures["history_items_without_recbole_id"] = timing["history_items_without_recbole_id"]
        figures["recbole_trained_at"] = timing["trained_at"]
    figures["rows"] = rows
    markdown = f"""# Peer check: RecBole's SASRec beside coldrec's (Amazon Beauty, global split)

Both trained for {epochs} epochs (coldrec's choice on the validation view), seed {SEED},
same architecture ({ARCHITECTURE}), evaluated by coldrec's protocol on the same users and
targets; RecBole's lists are its top {TOP_N} unseen items. Seconds per epoch are medians,
measured one after the other on this machine (RecBole's training ended
{figures.get("recbole_trained_at", "–")}; a saved model with the same settings is reused).

{table(rows)}

{_ratio(rows)}
{"RecBole failed: " + figures["recbole_failed"] if "recbole_failed" in figures else ""}
History items RecBole has no id for (in no training sample; left out of its input, and
a user with none left is read as one padding token):
{figures.get("history_items_without_recbole_id", "–")}.
Versions (RecBole, torch, numpy): {figures.get("versions", "not installed")}.

    coldrec {shlex.join(coldrec_command(epochs))}
"""
    write_results("peer_recbole", figures, markdown)


def _ratio(rows: dict[str, dict]) -> str:
    if len(rows) < 2:
        return ""
    ours, theirs = (row["seconds_per_epoch"] for row in rows.values())
    return f"RecBole / coldrec seconds per epoch: {theirs / ours:.1f}×."


if __name__ == "__main__":
    main()
