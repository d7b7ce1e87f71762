"""Delta item vectors with and without KNN + gate residual transfer on Amazon Beauty.

For each protocol and seed (42–46) one SASRec with delta item vectors is trained
(full softmax, lr 1e-3, epochs chosen on the validation view), then evaluated as
trained (the baseline) and after the transfer for each K. The transfer adds no
parameters and happens after training, so one training serves every K: each variant's
run folder gets exactly the metrics ``coldrec evaluate`` writes for its config (the
config switch ``model.transfer.k=K`` on the same seed; tests/test_transfer.py checks the
two paths agree).

Protocols:
- ``global``: the global 70/30 time split (strict cold items: never seen before test);
- ``loo``: leave-one-out with full ranking, the paper's protocol, where a 5-core has no
  strict cold items, so items with at most ``COLD_MAX_COUNT`` training interactions are
  cold (the paper's frequency definition).

Writes ``benchmarks/results/delta_transfer_beauty.{md,json}``; run folders under
``runs/beauty/delta/``; a finished seed is not repeated. Run from the project root:
``.venv/bin/python benchmarks/delta_transfer_beauty.py [--protocol global|loo]``.
"""

from __future__ import annotations

import argparse
import subprocess

import torch

from _common import BEAUTY, ROOT, write_results
from beauty_baselines import COLDREC, RUNS, _relative
from coldrec.data.dataset import Dataset
from coldrec.eval.protocol import evaluate
from coldrec.eval.report import write_report
from coldrec.experiment.evaluate import EvaluateConfig
from coldrec.rank.items import DeltaConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.transfer import TransferConfig
from coldrec.training.runs import run_record, seed_everything, write_run

SEEDS = (42, 43, 44, 45, 46)
KS = (10, 25, 50, 100)
COLD_MAX_COUNT = 5
DATA = {"global": RUNS / "data", "loo": RUNS / "data_loo"}
MODEL = SASRecConfig.model_validate(
    {"loss": "full", "training": {"lr": 1e-3}, "delta": DeltaConfig().model_dump()}
)
# "Geometric Residual Transfer with Similarity Gating" on Beauty, K = 10, NDCG@10 / Recall@10
PAPER = {"baseline": {"cold": (0.00572, 0.01200)}, "knn10": {"cold": (0.00710, 0.01536)}}


def prepare_loo() -> list[str]:
    return [
        "data", "prepare", "--source", "amazon2014",
        "--reviews", str(_relative(BEAUTY / "reviews_Beauty_5.json.gz")),
        "--meta", str(_relative(BEAUTY / "meta_Beauty.json.gz")), "--split", "loo",
        "--set", f"prepare.cold_max_count={COLD_MAX_COUNT}", "--out", str(DATA["loo"]),
    ]  # fmt: skip


def variants() -> dict[str, SASRecConfig]:
    configs = {"baseline": MODEL}
    for k in KS:
        configs[f"knn{k}"] = MODEL.model_copy(update={"transfer": TransferConfig(k=k)})
    return configs


def run_seed(protocol: str, dataset: Dataset, seed: int) -> None:
    """Train once, write the baseline and every transfer variant's metrics for ``seed``."""
    out = ROOT / RUNS / "delta" / protocol
    if all((out / name / f"metrics-seed{seed}.json").is_file() for name in variants()):
        return
    seed_everything(seed)
    model = MODEL.build().fit(dataset, generator=torch.Generator().manual_seed(seed))
    for name, config in variants().items():
        ranked = model if config.transfer is None else model.transferred(dataset, config.transfer)
        run = EvaluateConfig(model=config, seed=seed, name=f"delta_{name}", ks=(10, 20))
        metrics = evaluate(ranked, dataset, ks=run.ks)
        result = run_record(run, dataset, {"dataset": DATA[protocol]}, metrics, ranked)
        if ranked.transfer is not None:
            result["transfer"] = ranked.transfer.summary()
        write_run(out / name, run, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(DATA), nargs="+", default=sorted(DATA))
    protocols = parser.parse_args().protocol
    if "loo" in protocols and not (ROOT / DATA["loo"] / "meta.json").is_file():
        subprocess.run([COLDREC, *prepare_loo()], cwd=ROOT, check=True)
    sections = []
    for protocol in protocols:
        dataset = Dataset.load(ROOT / DATA[protocol])
        for seed in SEEDS:
            run_seed(protocol, dataset, seed)
        dirs = [ROOT / RUNS / "delta" / protocol / name for name in variants()]
        report = write_report(dirs, ROOT / RUNS / "delta" / protocol / "report")
        sections.append(f"## {protocol}\n\n{_tables(report.read_text())}")
    paper = "; ".join(
        f"{name} cold NDCG@10 {v['cold'][0]}, Recall@10 {v['cold'][1]}" for name, v in PAPER.items()
    )
    markdown = f"""# Delta item vectors and KNN + gate residual transfer on Amazon Beauty

SASRec with delta item vectors ({MODEL.delta}), full softmax, lr 1e-3, epochs chosen on
the validation view; seeds {SEEDS}, mean ± std. Transfer: T 0.07, τ 0.25, β 20,
m_hard 0.05, K in {KS}. Leave-one-out counts items with at most {COLD_MAX_COUNT}
training interactions as cold. Paper (loo): {paper}.

{chr(10).join(sections)}

    coldrec {" ".join(prepare_loo())}
"""
    write_results("delta_transfer_beauty", {"protocols": protocols, "seeds": SEEDS}, markdown)


def _tables(report: str) -> str:
    """The report's tables without its chart line."""
    return "\n".join(line for line in report.splitlines() if not line.startswith("!["))


if __name__ == "__main__":
    main()
