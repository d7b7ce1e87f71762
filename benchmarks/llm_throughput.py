"""LLM calls per second against a local llama.cpp server (SmolLM2-135M, OpenAI API) with
1, 2 and 4 calls in flight, and the speed of a fully cached rerun.

Each setting answers the same 24 structured requests (pick 2 of 6 categories) from an
empty cache; the cached rerun repeats the last setting's requests against its cache.
Measured one after the other in one run. Writes
``benchmarks/results/llm_throughput.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/llm_throughput.py`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import write_results
from coldrec.llm import LLM, LLMConfig, Request
from coldrec.llm.backends import OpenAIConfig
from coldrec.llm.schemas import choice_schema
from coldrec.llm.server import local_server

CATEGORIES = ["Makeup", "Skin Care", "Hair Care", "Fragrance", "Nail Care", "Tools"]
SCHEMA = choice_schema(CATEGORIES, 2)
N_REQUESTS = 24
ASK = "Choose 2 categories for this shopper."
CONCURRENCY = (1, 2, 4)


def requests() -> list[Request]:
    texts = [f"<context>Shopper {i} bought item {i}.</context> {ASK}" for i in range(N_REQUESTS)]
    return [
        Request([{"role": "user", "content": text}], SCHEMA, max_tokens=48, stage="benchmark")
        for text in texts
    ]


def timed(llm: LLM, concurrency: int) -> dict[str, float]:
    start = time.perf_counter()
    answers = llm.batch(requests(), concurrency=concurrency, progress=False)
    seconds = time.perf_counter() - start
    totals = llm.totals()["benchmark"]
    return {
        "seconds": seconds,
        "calls_per_s": N_REQUESTS / seconds,
        "ok": sum(a.ok for a in answers),
        "completion_tokens": totals["completion_tokens"],
    }


def main() -> None:
    rows: dict[str, dict[str, float]] = {}
    with local_server() as base, tempfile.TemporaryDirectory() as scratch:
        backend = OpenAIConfig(base_url=base, model="smollm2", structured="json_object")
        with LLM(LLMConfig(backend=backend, cache=False)) as warm_up:  # load, compile grammar
            warm_up.run(requests()[0])
        for concurrency in CONCURRENCY:
            cache = Path(scratch) / f"c{concurrency}"
            with LLM(LLMConfig(backend=backend, cache_dir=cache)) as llm:
                rows[f"concurrency {concurrency}"] = timed(llm, concurrency)
        with LLM(LLMConfig(backend=backend, cache_dir=cache)) as llm:
            rows["cached rerun"] = timed(llm, CONCURRENCY[-1])
    base_rate = rows["concurrency 1"]["calls_per_s"]
    lines = [
        f"| {name} | {row['seconds']:.1f} | {row['calls_per_s']:.2f} | "
        f"{row['calls_per_s'] / base_rate:.1f}× | {row['ok']:.0f}/{N_REQUESTS} |"
        for name, row in rows.items()
    ]
    markdown = f"""# LLM throughput: local llama.cpp server, SmolLM2-135M-Instruct (Q4_1)

{N_REQUESTS} structured requests (pick 2 of 6 categories, at most 48 new tokens), the
`openai` backend with the `json_object` dialect, from an empty cache for each setting,
one after the other in one run, after one warm-up request.

| setting | seconds | calls / s | vs concurrency 1 | answers in schema |
|---|---:|---:|---:|---:|
{chr(10).join(lines)}

The cached rerun never reaches the server: its time is SQLite reads and JSON parsing.
"""
    write_results("llm_throughput", {"rows": rows, "requests": N_REQUESTS}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
