"""Peer check (issue 29): the ColdRec toolkit's DropoutNet, Heater, CLCRec and ALDI (its
code in ``../shared/peers/ColdRec``, run, never copied) on coldrec's exact split, with
coldrec's MiniLM item vectors as content, their rankings scored by coldrec's protocol.

1. The Dataset: ``--data beauty|ml100k`` takes ``runs/coldstart_<data>/data``, written by
   ``coldstart_baselines.py``'s ``coldrec run configs/<data>/coldstart_<data>.yaml``,
   when it is there, else prepares the same data (same data hash: global time split) as
   ``benchmarks/stars.py`` does (``coldrec data prepare``, skipped when its folder
   exists); or ``--dataset PATH`` names a prepared one (``coldrec data prepare`` or
   ``<run>/data`` of ``coldrec run``). Item content: ``TextEncoder(TextEncoderConfig())``
   vectors of the item text (all-MiniLM-L6-v2, coldrec's cache).
2. The toolkit's layout under ``runs/coldrec_toolkit_<name>/data/<name>/`` (what its
   ``main.py`` reads; coldrec's split replaces ``data/split.py``'s random one):
   ``warm_train.csv`` = the history (splits ``train`` and ``valid``, repeated pairs
   once); ``warm_test.csv`` / ``cold_item_test.csv`` = coldrec's test targets (each
   user's distinct test items not in the history; users without history included, so
   the toolkit knows every cold item) on warm / cold items; ``overall_test.csv`` = all
   of them (not only users with both, as ``convert.py`` keeps). The validation files
   hold the ``valid`` split, a carve-out of the history (items seen in ``train`` →
   ``warm_val.csv``, the rest → ``cold_item_val.csv``): read, never used (step 4).
   ``info_dict.pkl`` as ``convert.py`` makes it (the keys ``main.py`` reads), and
   ``<name>_item_content.npy`` = the vectors. Users and items get dense toolkit ids
   (``ids.npz`` maps them back); catalogue items with no interaction before or in test
   are left out (the toolkit ranks only the items in its files; the count is reported).
3. A venv for the toolkit at ``.venv-coldrec-toolkit`` (``torch==2.13.0`` first, then
   ``PINS``: the toolkit's ``model/__init__.py`` imports every model, so faiss (KNN,
   NCL) and scikit-learn (GoRec) are needed to import any), unless it exists.
4. Per seed, in ``runs/coldrec_toolkit_<name>/seed<S>/`` (the toolkit reads ``./data``
   and ``./emb`` from its working directory): its BPR-MF backbone (``--backbone-epochs``;
   DropoutNet, Heater and ALDI start from its saved embeddings, CLCRec trains its own),
   then each model with the toolkit's defaults for ``--epochs`` epochs, one thread, CPU,
   by ``_coldrec_toolkit_worker.py`` (``main.py``'s steps; validation off: the last
   epoch's model is tested instead of the best validation epoch's); its top ``TOP_N``
   items per test user read back and scored by ``coldrec.eval.protocol.evaluate`` (its
   segments all / warm / cold cover the users with a history; users without one get
   coldrec's popularity fallback, as every coldrec model's do). The toolkit's own test
   metrics are kept beside; its test users include those without history.

Each finished model/seed is kept in ``benchmarks/results/coldstart_toolkit_<name>/``
(rerun only when its settings change). Writes
``benchmarks/results/coldstart_toolkit_<name>.{md,json}``. Run from the project root:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peer_coldrec_toolkit.py --data ml100k``
(``--report``: rewrite the report from the kept runs, training nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from _common import RESULTS, ROOT, mean_std, peer_venv, write_results
from beauty_baselines import run_coldrec
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.eval.protocol import EvaluationPlan, evaluate
from peer_recbole import TopList
from stars import BENCHES, prepare_command

VENV = ROOT / ".venv-coldrec-toolkit"
TOOLKIT = ROOT.parent / "shared" / "peers" / "ColdRec"
WORKER = ROOT / "benchmarks" / "_coldrec_toolkit_worker.py"
PINS = ("numpy==2.4.6", "scipy==1.17.1", "scikit-learn==1.9.1", "faiss-cpu==1.15.1")
BACKBONE = "MF"
MODELS = ("DropoutNet", "Heater", "CLCRec", "ALDI")
ON_BACKBONE = ("DropoutNet", "Heater", "ALDI")


class Diagnostic(NamedTuple):
    """A variant of one of ``MODELS``, run only when named in ``--models``."""

    model: str
    label: str
    frozen: bool = False
    """The backbone's vectors held fixed (the worker's ``--frozen-backbone``)."""
    epochs: int | None = None
    """Its own epochs instead of ``--epochs``."""


DIAGNOSTICS = {
    # The toolkit's DropoutNet leaves the backbone's vectors, which are also its regression
    # targets, trainable (its Heater and ALDI freeze theirs): the gap that leaves.
    "DropoutNet-frozen": Diagnostic("DropoutNet", "DropoutNet, backbone frozen", frozen=True),
    # coldrec's ALDI trains for the epochs its validation picks (5 on Beauty's seed 0), the
    # toolkit's for --epochs: what training length does to the student's cold scores.
    "ALDI-5-epochs": Diagnostic("ALDI", "ALDI, 5 epochs", epochs=5),
    # The toolkit's CLCRec takes 279 s an epoch on ML-100K, 245 on Beauty (one core):
    # 7-8 hours a seed at 100 epochs. 5 epochs: the fewest coldrec's validation picks.
    "CLCRec-5-epochs": Diagnostic("CLCRec", "CLCRec, 5 epochs", epochs=5),
}

SEGMENTS = ("all", "warm", "cold")
TOP_N = 100
WORK = ROOT / "runs"


def install() -> str:
    """Make the venv unless it exists; the installed versions."""
    return peer_venv(VENV, PINS, ("torch", "numpy", "faiss"))


def convert(dataset: Dataset, vectors: np.ndarray, work: Path, name: str) -> dict[str, int]:
    """Write the toolkit's files for ``dataset`` (module doc, step 2) and ``ids.npz``;
    returns the counts of what was written."""
    frame = ["user_idx", "item_idx"]
    history = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
    history = history[frame].drop_duplicates()
    plan = EvaluationPlan.of(dataset)
    test = pd.DataFrame({"user_idx": np.repeat(plan.users, np.diff(plan.targets.indptr)),
                         "item_idx": plan.targets.indices})  # fmt: skip
    cold = dataset.items["cold"].to_numpy()[test["item_idx"]]
    valid = dataset.split("valid")[frame].drop_duplicates()
    seen = valid["item_idx"].isin(dataset.split("train")["item_idx"])
    users = np.unique(np.concatenate([history["user_idx"], test["user_idx"]]))
    items = np.unique(np.concatenate([history["item_idx"], test["item_idx"]]))
    files = {"warm_train": history, "warm_val": valid[seen], "cold_item_val": valid[~seen],
             "overall_val": valid, "warm_test": test[~cold], "cold_item_test": test[cold],
             "cold_item": test[cold], "overall_test": test}  # fmt: skip
    folder = work / "data" / name / "cold_item"
    folder.mkdir(parents=True, exist_ok=True)
    for file, rows in files.items():
        pd.DataFrame({"user": np.searchsorted(users, rows["user_idx"]),
                      "item": np.searchsorted(items, rows["item_idx"])}).to_csv(
            folder / f"{file}.csv", index=False)  # fmt: skip
    toolkit_ids = {key: sorted({int(i) for i in np.searchsorted(ids, rows[column])})
                   for key, ids, rows, column in (
                       ("warm_user", users, history, "user_idx"),
                       ("warm_item", items, history, "item_idx"),
                       ("cold_user", users, test[cold], "user_idx"),
                       ("cold_item", items, test[cold], "item_idx"))}  # fmt: skip
    info = {"user_num": len(users), "item_num": len(items), **toolkit_ids}
    (folder / "info_dict.pkl").write_bytes(pickle.dumps(info, protocol=4))
    np.save(work / "data" / name / f"{name}_item_content.npy", vectors[items].astype(np.float32))
    np.savez(work / "ids.npz", users=users, items=items)
    return {"history_pairs": len(history), "warm_targets": int((~cold).sum()),
            "cold_targets": int(cold.sum()), "valid_pairs": len(valid),
            "valid_pairs_on_cold_items": int((~seen).sum()), "toolkit_users": len(users),
            "toolkit_items": len(items), "cold_items": len(toolkit_ids["cold_item"]),
            "catalogue_items_left_out": dataset.n_items - len(items)}  # fmt: skip


def model_epochs(args: argparse.Namespace, model: str) -> int:
    """The epochs of ``model``: the backbone's, a ``--epochs-of`` one, or ``--epochs``."""
    if model == BACKBONE:
        return args.backbone_epochs
    own = DIAGNOSTICS[model].epochs if model in DIAGNOSTICS else None
    return own if own is not None else args.epochs_of.get(model, args.epochs)


def toolkit_model(model: str) -> str:
    """The toolkit's name of ``model`` (a diagnostic's is its model's)."""
    return DIAGNOSTICS[model].model if model in DIAGNOSTICS else model


def toolkit_arguments(name: str, model: str, seed: int, epochs: int) -> list[str]:
    """``main.py``'s arguments for one run (the toolkit's defaults otherwise)."""
    return ["--dataset", name, "--model", toolkit_model(model), "--cold_object", "item",
            "--use_gpu", "false", "--epochs", str(epochs), "--seed", str(seed), "--topN",
            f"20,{TOP_N}", "--early_stop", "0", "--save_emb",
            str(model == BACKBONE).lower()]  # fmt: skip


def worker_command(work: Path, model: str, arguments: list[str]) -> str:
    """The worker's command line, run in ``work`` (paths relative to it); it writes to
    ``work/<model>``."""
    paths = [os.path.relpath(path, work) for path in (VENV / "bin" / "python", WORKER, TOOLKIT)]
    frozen = ["--frozen-backbone"] if model in DIAGNOSTICS and DIAGNOSTICS[model].frozen else []
    return shlex.join([*paths, model, *frozen, *arguments])


def run_toolkit(work: Path, model: str, arguments: list[str]) -> dict[str, Any]:
    """Run the worker in ``work`` (one thread, bytecode not written into the toolkit's
    folder); its ``run.json``."""
    (work / "emb").mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():
        (work / "data").symlink_to("../data")
    command = worker_command(work, model, arguments)
    print(f"(in {work.relative_to(ROOT)})", command, flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(shlex.split(command), cwd=work, env=env, check=True)
    result: dict[str, Any] = json.loads((work / model / "run.json").read_text())
    return result


def scored(dataset: Dataset, work: Path, out: Path) -> tuple[dict[str, Any], float]:
    """coldrec's metrics of the toolkit's ranking in ``out/top.npz``, and coldrec's
    Recall@20 of it over the toolkit's own test users (those without history ranked by the
    lists too): the toolkit's own ``all`` Recall@20 when the lists were read back right."""
    ids, top = np.load(work / "ids.npz"), np.load(out / "top.npz")
    ranked = TopList(ids["users"][top["users"]], ids["items"][top["items"]],
                     dataset.n_items, dataset.n_users)  # fmt: skip
    own = evaluate(ranked, dataset, ks=(20,), cold_users="model")
    parts = [(own["counts"][s]["users"], own["segments"][s]["recall@20"])
             for s in ("all", "cold_users")]  # fmt: skip
    check = sum(n * value for n, value in parts if n) / sum(n for n, _ in parts)
    return evaluate(ranked, dataset), check


def run_seed(dataset: Dataset, converted: dict[str, int], seed: int, args: argparse.Namespace,
             name: str) -> None:  # fmt: skip
    """The backbone and the chosen models of one seed, each unless kept with the same
    settings."""
    work = WORK / f"coldrec_toolkit_{name}" / f"seed{seed}"
    for model in (BACKBONE, *args.models):
        epochs = model_epochs(args, model)
        settings = {"data": dataset.data_hash(), "converted": converted,
                    "backbone_epochs": args.backbone_epochs, "epochs": epochs}  # fmt: skip
        path = RESULTS / f"coldstart_toolkit_{name}" / f"{model}-seed{seed}.json"
        if path.is_file() and json.loads(path.read_text())["settings"] == settings:
            continue
        backbone = work / "emb" / f"{name}_cold_item_{BACKBONE}_item_emb.pt"
        # runs/ lost: the same seed gives the same MF
        if toolkit_model(model) in ON_BACKBONE and not backbone.is_file():
            run_toolkit(work, BACKBONE,
                        toolkit_arguments(name, BACKBONE, seed, args.backbone_epochs))  # fmt: skip
        run = run_toolkit(work, model, toolkit_arguments(name, model, seed, epochs))
        metrics, check = scored(dataset, work.parent, work / model)
        theirs = run["toolkit_metrics"]["all"]["recall@20"]
        if abs(check - theirs) > 1e-4:  # the toolkit rounds to 5 decimals
            print(f"{model} seed {seed}: read back wrong? coldrec's Recall@20 over the "
                  f"toolkit's test users {check:.5f}, the toolkit's {theirs:.5f}",
                  file=sys.stderr)  # fmt: skip
        record = {"model": model, "seed": seed, "settings": settings, **run,
                  "segments": metrics["segments"], "counts": metrics["counts"],
                  "readback_recall@20": check}  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))


def tables(records: list[dict[str, Any]]) -> tuple[str, str]:
    """coldrec's scoring per model and seed with the mean ± std, and the toolkit's own."""
    metrics = [(m, s) for m in ("recall@20", "ndcg@20") for s in SEGMENTS]
    head = " | ".join(f"{'R' if m[0] == 'r' else 'NDCG'}@20 {s}" for m, s in metrics)
    ours = [f"| model | seed | {head} | epochs | s / epoch |", "|---" * (4 + len(metrics)) + "|"]
    theirs = [f"| model | {head} |", "|---" * (1 + len(metrics)) + "|"]
    labels = {BACKBONE: f"{BACKBONE} (backbone)",
              **{m: f"{d.label} (diagnostic)" for m, d in DIAGNOSTICS.items()}}  # fmt: skip
    for model in (BACKBONE, *MODELS, *DIAGNOSTICS):
        runs = [r for r in records if r["model"] == model]
        if not runs:
            continue
        label = labels.get(model, model)
        for r in runs:
            cells = [f"{r['segments'][s][m]:.4f}" for m, s in metrics]
            epochs, seconds = r["settings"]["epochs"], np.median(r["epoch_seconds"])
            cells += [str(epochs), f"{seconds:.2f}"]
            ours.append(f"| {label} | {r['seed']} | {' | '.join(cells)} |")
        means = [mean_std([r["segments"][s][m] for r in runs]) for m, s in metrics]
        epochs = "/".join(str(e) for e in dict.fromkeys(r["settings"]["epochs"] for r in runs))
        seconds = mean_std([float(np.median(r["epoch_seconds"])) for r in runs], 2)
        ours.append(f"| {label} | mean | {' | '.join(means)} | {epochs} | {seconds} |")
        own = [mean_std([r["toolkit_metrics"][s][m] for r in runs]) for m, s in metrics]
        theirs.append(f"| {label} | {' | '.join(own)} |")
    return "\n".join(ours), "\n".join(theirs)


def prepared(args: argparse.Namespace) -> tuple[str, Path, list[str]]:
    """The toolkit's name for the data, the Dataset folder and the command that made it:
    ``--dataset``, or for ``--data`` the Dataset of ``coldstart_baselines.py``'s run when
    there is one, else ``stars.py``'s (the same data hash; prepared if missing)."""
    if args.dataset is not None:
        folder = args.dataset.resolve()
        return (folder.parent.name if folder.name == "data" else folder.name), folder, []
    run = ROOT / "runs" / f"coldstart_{args.data}"
    if (run / "data" / "meta.json").is_file():
        config = f"configs/{args.data}/coldstart_{args.data}.yaml"
        return args.data, run / "data", [f"coldrec run {config} --out runs/{run.name}"]
    command = prepare_command(BENCHES[args.data])
    run_coldrec(command, ROOT / BENCHES[args.data].data / "meta.json")
    return args.data, ROOT / BENCHES[args.data].data, ["coldrec " + shlex.join(command)]


def report(
    name: str, args: argparse.Namespace, figures: dict[str, Any], commands: list[str]
) -> None:
    """Write ``coldstart_toolkit_<name>.{md,json}`` from the kept runs of ``args.seeds``
    (those that exist: a model not yet run is left out)."""
    kept = RESULTS / f"coldstart_toolkit_{name}"
    paths = [kept / f"{model}-seed{seed}.json" for model in (BACKBONE, *MODELS, *DIAGNOSTICS)
             for seed in args.seeds]  # fmt: skip
    records = [json.loads(path.read_text()) for path in paths if path.is_file()]
    ours, theirs = tables(records)
    gap = max(abs(r["readback_recall@20"] - r["toolkit_metrics"]["all"]["recall@20"])
              for r in records)  # fmt: skip
    first, commands = WORK / f"coldrec_toolkit_{name}" / f"seed{args.seeds[0]}", [*commands]
    for model, epochs in dict.fromkeys((r["model"], r["settings"]["epochs"]) for r in records):
        arguments = toolkit_arguments(name, model, args.seeds[0], epochs)
        commands.append(f"(in {first.relative_to(ROOT)}) {worker_command(first, model, arguments)}")
    markdown = f"""# The ColdRec toolkit's cold-start models on coldrec's split ({name})

The toolkit's BPR-MF backbone and its DropoutNet, Heater, CLCRec and ALDI (the epochs of
the table, the toolkit's default settings otherwise, last epoch kept: no validation;
diagnostic rows: "backbone frozen", the same with the BPR-MF vectors held fixed; "N
epochs", the same trained for N epochs), trained by the toolkit (CPU, one thread) on
coldrec's history with the MiniLM item vectors as content; their top {TOP_N} items per test
user scored by coldrec's protocol (full catalogue, history masked) over seeds {args.seeds}
(mean ± sample std). Seconds per epoch: median wall time of a training epoch.

{ours}

The toolkit's own test metrics of the same models (its evaluator, over its test users,
those without history included: `all` ranks the whole catalogue, `warm` only warm items,
`cold` only cold items):

{theirs}

Read-back check: coldrec's Recall@20 of the read-back lists over the toolkit's own test
users differs from the toolkit's `all` Recall@20 by at most {gap:.5f} (its figures are
rounded to 5 decimals). Dataset hash {figures["data_hash"]}; converted:
{json.dumps(figures["converted"])}. Users and targets per segment (coldrec):
{json.dumps(records[0]["counts"])}. Versions (torch, numpy, faiss): {figures["versions"]}.

## Commands

{chr(10).join("    " + c for c in commands)}
"""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        runs.setdefault(r["model"], []).append(
            {**r, "seconds_per_epoch": float(np.median(r["epoch_seconds"]))})  # fmt: skip
    write_results(f"coldstart_toolkit_{name}", {**figures, "runs": runs}, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", choices=BENCHES, help="coldstart_<data>'s Dataset or stars'")
    source.add_argument("--dataset", type=Path, help="a prepared Dataset folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100, help="epochs of each model")
    parser.add_argument("--backbone-epochs", type=int, default=100, help="epochs of BPR-MF")
    parser.add_argument("--epochs-of", nargs="*", default=[], metavar="MODEL=N",
                        help="a model's own epochs, e.g. CLCRec=20 (at its defaults an epoch "
                             "costs ~100 times DropoutNet's)")  # fmt: skip
    parser.add_argument("--models", nargs="+", choices=[*MODELS, *DIAGNOSTICS],
                        default=list(MODELS),
                        help="run only these (the report shows every model kept); "
                             "the diagnostics: DropoutNet-frozen (the toolkit's DropoutNet "
                             "with the backbone's vectors frozen), ALDI-5-epochs, "
                             "CLCRec-5-epochs")  # fmt: skip
    parser.add_argument("--report", action="store_true",
                        help="train nothing: rewrite the report from the kept runs")  # fmt: skip
    args = parser.parse_args()
    args.epochs_of = {m: int(n) for m, _, n in (item.partition("=") for item in args.epochs_of)}
    if unknown := set(args.epochs_of) - set(MODELS):
        parser.error(f"--epochs-of names {sorted(unknown)}: the models are {list(MODELS)}")
    name, folder, commands = prepared(args)
    dataset = Dataset.load(folder)
    vectors = TextEncoder(TextEncoderConfig()).encode(dataset.item_text, progress=False)
    converted = convert(dataset, vectors, WORK / f"coldrec_toolkit_{name}", name)
    versions = install()
    for seed in [] if args.report else args.seeds:
        run_seed(dataset, converted, seed, args, name)
    figures = {"data_hash": dataset.data_hash(), "converted": converted, "versions": versions}
    report(name, args, figures, commands)


if __name__ == "__main__":
    main()
