"""Peer check (issue 27): RecBole 1.2.1's LightGCN beside coldrec's on MovieLens-100K (the
global time split of ``benchmarks/stars.py``), the same users and targets, run one after
the other. Target: coldrec's Recall@20 within 0.005 of RecBole's.

1. RecBole's venv ``.venv-recbole`` as ``peer_recbole.py`` makes it.
2. The training history (train and valid rows, repeated pairs once) exported as
   ``ml100k.train.inter``; RecBole never sees the test split (its valid/test files repeat
   a training row and it is never asked to evaluate).
3. coldrec's LightGCN and RecBole's with the same settings: dimension 64, 3 layers, L2
   weight 1e-4, Adam at 1e-3, batch 2048, one uniform negative per pair, ``EPOCHS``
   epochs, no early stopping; then RecBole's top 100 unseen items of every test user
   with history, scored by coldrec's protocol.

Writes ``benchmarks/results/peer_lightgcn.{md,json}``. If RecBole cannot be installed or
run, the result says which step failed. Run from the project root:
``.venv/bin/python benchmarks/peer_lightgcn.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import numpy as np

from _common import ROOT, write_results
from beauty_baselines import COLDREC, run_coldrec
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.eval.protocol import evaluate
from peer_recbole import TopList, run_worker
from stars import BENCHES, prepare_command

BENCH = BENCHES["ml100k"]
WORK = ROOT / "runs" / "peer_lightgcn"
EPOCHS, TOP_N, SEED = 50, 100, 0
SETTINGS = {"dim": 64, "n_layers": 3, "reg": 1e-4, "lr": 1e-3, "batch_size": 2048}
SEGMENTS = ("all", "warm", "cold")


def export(dataset: Dataset) -> None:
    """The training pairs as an atomic file, and the test users' histories."""
    folder = WORK / "ml100k"
    folder.mkdir(parents=True, exist_ok=True)
    history = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
    pairs = history[["user_idx", "item_idx"]].drop_duplicates()
    header = "user_id:token\titem_id:token\n"
    lines = [f"{u}\t{i}\n" for u, i in zip(pairs["user_idx"], pairs["item_idx"], strict=True)]
    (folder / "ml100k.train.inter").write_text(header + "".join(lines))
    for split in ("valid", "test"):
        (folder / f"ml100k.{split}.inter").write_text(header + lines[0])
    sequences = dataset.sequences(*HISTORY_SPLITS)
    users = np.unique(dataset.split("test")["user_idx"])
    users = np.array([u for u in users if len(sequences[u])], dtype=np.int64)
    np.savez(WORK / "users.npz", users=users,
             indptr=np.concatenate([[0], np.cumsum([len(sequences[u]) for u in users])]),
             items=np.concatenate([sequences[u] for u in users]))  # fmt: skip


def recbole_settings() -> dict:
    return {
        "model": "LightGCN", "dataset": "ml100k", "top_n": TOP_N,
        "recbole": {
            "data_path": str(WORK), "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "embedding_size": SETTINGS["dim"], "n_layers": SETTINGS["n_layers"],
            "reg_weight": SETTINGS["reg"], "learning_rate": SETTINGS["lr"],
            "train_batch_size": SETTINGS["batch_size"], "epochs": EPOCHS, "eval_step": 0,
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
            "seed": SEED, "reproducibility": True, "use_gpu": False, "device": "cpu",
            "checkpoint_dir": str(WORK / "saved"), "show_progress": False, "worker": 0,
        },
    }  # fmt: skip


def coldrec_command() -> list[str]:
    keys = {"dim": "model.dim", "n_layers": "model.n_layers", "reg": "model.reg",
            "lr": "model.training.lr", "batch_size": "model.training.batch_size"}  # fmt: skip
    sets = [part for key, path in keys.items() for part in ("--set", f"{path}={SETTINGS[key]}")]
    return ["evaluate", "--dataset", str(BENCH.data), "--model", "lightgcn", *sets,
            "--set", "model.early_stopping=false", "--set", f"model.training.epochs={EPOCHS}",
            "--name", "coldrec_lightgcn", "--seed", str(SEED),
            "--out", str(WORK.relative_to(ROOT) / "coldrec")]  # fmt: skip


def main() -> None:
    run_coldrec(prepare_command(BENCH), ROOT / BENCH.data / "meta.json")
    dataset = Dataset.load(ROOT / BENCH.data)
    subprocess.run([COLDREC, "-q", *coldrec_command()], cwd=ROOT, check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    ours = json.loads((WORK / "coldrec" / f"metrics-seed{SEED}.json").read_text())
    per_epoch = ours["training"]["final"]["seconds_per_epoch"]
    rows = {"coldrec LightGCN": {"segments": ours["segments"], "seconds_per_epoch": per_epoch}}
    figures: dict = {"epochs": EPOCHS, "settings": SETTINGS}
    export(dataset)
    timing = run_worker(WORK, recbole_settings(), figures)
    if timing is not None:
        top = np.load(WORK / "recbole_top.npz")
        ranked = TopList(top["users"], top["items"], dataset.n_items, dataset.n_users)
        rows["RecBole 1.2.1 LightGCN"] = {"segments": evaluate(ranked, dataset)["segments"],
                                          "seconds_per_epoch": float(np.median(
                                              timing["epoch_seconds"]))}  # fmt: skip
    figures["rows"] = rows
    lines = ["| method | s / epoch | " + " | ".join(f"Recall@20 {s}" for s in SEGMENTS) + " |",
             "|---|---|" + "---|" * len(SEGMENTS)]  # fmt: skip
    for name, row in rows.items():
        cells = [f"{row['segments'][s]['recall@20']:.4f}" for s in SEGMENTS]
        lines.append(f"| {name} | {row['seconds_per_epoch']:.2f} | " + " | ".join(cells) + " |")
    gap = ""
    if len(rows) == 2:
        a, b = (row["segments"]["all"]["recall@20"] for row in rows.values())
        gap = f"Recall@20 (all) gap: {abs(a - b):.4f} (target: within 0.005)."
    markdown = f"""# Peer check: RecBole's LightGCN beside coldrec's (MovieLens-100K, global split)

Both trained {EPOCHS} epochs with {SETTINGS}, seed {SEED}, one uniform negative per pair,
evaluated by coldrec's protocol on the same users and targets (RecBole's lists: its top
{TOP_N} unseen items). Seconds per epoch: medians, one after the other on this machine.

{chr(10).join(lines)}

{gap}
{"RecBole failed: " + figures["recbole_failed"] if "recbole_failed" in figures else ""}
Versions (RecBole, torch, numpy): {figures.get("versions", "not installed")}.

    coldrec {shlex.join(coldrec_command())}
"""
    write_results("peer_lightgcn", figures, markdown)


if __name__ == "__main__":
    main()
