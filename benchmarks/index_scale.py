"""A million-item index (issue 30): IVF-PQ and HNSW beside exact search on 2 cores — build
time, memory, recall@100 against exact search and queries per second, for each
``nprobe`` / ``efSearch``.

The catalogue is synthetic, at MiniLM's 384 dimensions: each item is a real Amazon Beauty
item's MiniLM text vector (a seeded draw of the 12,101) plus Gaussian noise with the
covariance of those vectors (scale ``--noise``), L2-normalised, so the items keep the
real vectors' clusters and spectrum without encoding a million titles (about 48 minutes
here); without the Beauty data set, the centres are random unit vectors (stated in the
result). Queries are drawn the same way with another seed. Indexes are built by
``coldrec.retrieval.index.build_index`` (the IVF kinds trained on a 100,000-item sample)
and searched through FAISS directly, all threads.

Writes ``benchmarks/results/index_scale.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/index_scale.py [--items 1000000] [--queries 2000]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import faiss
import numpy as np

from _common import BEAUTY, load_beauty, write_results
from coldrec.data import prepare
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.retrieval.index import IndexConfig, build_index

DIM, K = 384, 100
NPROBES = (4, 8, 16, 32, 64, 128, 256)
EF_SEARCHES = (100, 200, 400, 800)
CONFIGS = {
    "ivfpq_m48": IndexConfig(kind="ivfpq", nlist=4096, pq_m=48),
    "ivfpq_m64": IndexConfig(kind="ivfpq", nlist=4096, pq_m=64),
    "ivfpq_m96": IndexConfig(kind="ivfpq", nlist=4096, pq_m=96),
    "hnsw_m32": IndexConfig(kind="hnsw", hnsw_m=32),
}


def centres() -> tuple[np.ndarray, str]:
    """Beauty's MiniLM item vectors (or random unit vectors) and what they are."""
    if not BEAUTY.is_dir():
        raw = np.random.default_rng(0).normal(size=(12_000, DIM)).astype(np.float32)
        return raw / np.linalg.norm(raw, axis=1, keepdims=True), "random unit vectors"
    dataset = prepare(load_beauty())
    vectors = TextEncoder(TextEncoderConfig()).encode(dataset.item_text)
    return vectors, f"the MiniLM vectors of Beauty's {len(vectors):,} items"


def draw(real: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors: a random real vector plus noise of the real vectors' covariance."""
    rng = np.random.default_rng(seed)
    factor = np.linalg.cholesky(np.cov(real, rowvar=False) + 1e-6 * np.eye(DIM))
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        picked = real[rng.integers(len(real), size=size)]
        jitter = rng.standard_normal((size, DIM)) @ factor.T
        block = picked + noise * jitter.astype(np.float32)
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top ``K`` that ``found`` holds."""
    return float(
        np.mean([len(np.intersect1d(f, e)) / K for f, e in zip(found, exact, strict=True)])
    )


def timed_search(index: faiss.Index, queries: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    _, found = index.search(queries, K)
    return found, len(queries) / (time.perf_counter() - start)


def measure(name: str, config: IndexConfig, items: np.ndarray, queries: np.ndarray,
            exact: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """Build ``config``'s index over ``items``; its size and each setting's recall and QPS."""
    start = time.perf_counter()
    index = build_index(items, config)
    built = time.perf_counter() - start
    size = len(faiss.serialize_index(index))
    points = []
    for value in EF_SEARCHES if config.kind == "hnsw" else NPROBES:
        if config.kind == "hnsw":
            index.hnsw.efSearch = value
        else:
            index.nprobe = value
        found, qps = timed_search(index, queries)
        points.append({"setting": value, "recall@100": recall(found, exact), "qps": qps})
        print(f"{name} {value}: recall@100 {points[-1]['recall@100']:.3f}, {qps:,.0f} q/s",
              flush=True)  # fmt: skip
    return {"config": config.model_dump(), "build_s": built, "bytes": size, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--noise", type=float, default=0.5)
    args = parser.parse_args()
    real, source = centres()
    items, queries = draw(real, args.items, args.noise, 1), draw(real, args.queries, args.noise, 2)
    start = time.perf_counter()
    exact_index = build_index(items)
    exact, exact_qps = timed_search(exact_index, queries)
    figures: dict[str, Any] = {
        "items": args.items, "queries": args.queries, "noise": args.noise, "source": source,
        "threads": faiss.omp_get_max_threads(),
        "flat": {"build_s": time.perf_counter() - start, "qps": exact_qps,
                 "bytes": len(faiss.serialize_index(exact_index))},
    }  # fmt: skip
    del exact_index
    figures["indexes"] = {}
    for name, config in CONFIGS.items():  # the figures so far written after each index
        figures["indexes"][name] = measure(name, config, items, queries, exact)
        write_results("index_scale", figures, markdown(figures))


def markdown(figures: dict[str, Any]) -> str:
    flat = figures["flat"]
    rows = [f"| flat (exact) | – | 1.000 | {flat['qps']:,.0f} | {flat['bytes'] / 2**20:,.0f} | "
            f"{flat['build_s']:.1f} |"]  # fmt: skip
    for name, result in figures["indexes"].items():
        knob = "efSearch" if result["config"]["kind"] == "hnsw" else "nprobe"
        for point in result["points"]:
            rows.append(f"| {name} | {knob} {point['setting']} | {point['recall@100']:.3f} | "
                        f"{point['qps']:,.0f} | {result['bytes'] / 2**20:,.0f} | "
                        f"{result['build_s']:.1f} |")  # fmt: skip
    return f"""# A million-item index: IVF-PQ and HNSW against exact search

{figures["items"]:,} synthetic items at {DIM} dimensions ({figures["source"]} plus Gaussian
noise of their covariance, scale {figures["noise"]}, unit length); {figures["queries"]:,}
queries drawn alike. Recall@100: the share of each query's exact top 100 (flat inner
product) found. Queries per second: one batch of all queries, {figures["threads"]} FAISS
threads. Size: the serialised index (vectors or codes, ids, clusters, codebooks or links).
IVF kinds: 4,096 clusters learnt from a 100,000-item sample; `ivfpq_m48` / `_m64` / `_m96`
store 48 / 64 / 96 one-byte codes per item.

| index | setting | recall@100 | queries / s | size (MiB) | build (s) |
|---|---|---:|---:|---:|---:|
{chr(10).join(rows)}

    .venv/bin/python benchmarks/index_scale.py --items {figures["items"]} \\
        --queries {figures["queries"]}
"""


if __name__ == "__main__":
    main()
