"""The two local backends side by side on the same 50 structured calls: SmolLM2-135M run by
llama.cpp (``llamacpp``, a compiled extension) and by Hugging Face ``transformers`` with
lm-format-enforcer (``transformers``, pure pip), the latter also with compact answers
(``transformers_compact``, no whitespace-only tokens: the demo's setting). Per schema:
the share of answers that are valid (JSON that satisfies the schema: required keys,
types, enums, integer bounds, item counts) and the seconds per call.

The 50 calls are 10 of each kind coldrec asks: pick 2 of 6 categories (Stage 2), score 4
of 8 items 0–5 (Stages 3–5), a shopper profile (Stage 1), rank 10 numbered candidates
(the LLM ranker) and grade 6 items 0–3 (the judge), over the histories of 10 synthetic
users. The backends alternate call by call (one thread each, no cache), so both see the
same machine load; the load time of each (model and schema tooling) is reported apart.
Writes ``benchmarks/results/llm_backends.{md,json}``. Run from the project root:
``.venv/bin/python benchmarks/llm_backends.py`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import write_results
from coldrec.data import prepare
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.data.sources import SyntheticSource
from coldrec.llm import LLM, LLMConfig, Request
from coldrec.llm.backends import LlamaCppConfig, TransformersConfig
from coldrec.llm.schemas import choice_schema, profile_schema, scored_schema
from coldrec.supervision.llm_rank import ranking_request

USERS = 10
BACKENDS = {"llamacpp": LlamaCppConfig(n_threads=1),
            "transformers": TransformersConfig(n_threads=1),
            "transformers_compact": TransformersConfig(n_threads=1, compact=True)}  # fmt: skip


def calls() -> list[tuple[str, Request]]:
    """The 50 (kind, request) pairs."""
    dataset = prepare(SyntheticSource(n_users=200, n_items=150, seed=1).load())
    texts = dataset.item_text
    categories = sorted({t.split(" | ")[1].split(" > ")[1] for t in texts})[:6]
    history = dataset.sequences(*HISTORY_SPLITS)
    users = [u for u, h in enumerate(history) if len(h) >= 3][:USERS]
    rng = np.random.default_rng(0)
    out = []
    for user in users:
        seen = "\n".join(f"- {texts[i]}" for i in history[user][-10:])
        items = [texts[i] for i in rng.choice(len(texts), 10, replace=False)]
        names = [t.split(" | ")[0] for t in items[:8]]

        def ask(question: str, seen: str = seen) -> list[dict[str, str]]:
            return [{"role": "system", "content": "You are a shopping assistant."},
                    {"role": "user", "content": f"History:\n<context>\n{seen}\n</context>\n"
                                                f"{question} Answer as JSON."}]  # fmt: skip

        grades = {"type": "object", "required": ["grades"], "properties": {"grades": {
            "type": "array", "items": {"type": "integer", "enum": [0, 1, 2, 3]},
            "minItems": 6, "maxItems": 6}}}  # fmt: skip
        listing = "\n".join(f"{k + 1}. {t}" for k, t in enumerate(items[:6]))
        out += [
            ("choose 2 categories", Request(ask(f"Choose 2 of: {', '.join(categories)}."),
                                            choice_schema(categories, 2), max_tokens=60)),
            ("score 4 items 0-5", Request(ask("Pick the 4 best items, scored 0-5:\n"
                                              + "\n".join(names)),
                                          scored_schema(names, 4), max_tokens=200)),
            ("profile", Request(ask("Describe this shopper."), profile_schema(categories),
                                max_tokens=200)),
            ("rank 10 candidates", ranking_request("sequential", [texts[i] for i in
                                                                  history[user][-10:]], items)),
            ("grade 6 items 0-3", Request(ask(f"Grade each product 0-3:\n{listing}"), grades,
                                          max_tokens=40)),
        ]  # fmt: skip
    return out


def valid(value: Any, schema: dict[str, Any]) -> bool:
    """Whether ``value`` satisfies ``schema`` (the keywords coldrec's schemas use)."""
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "object":
        return (isinstance(value, dict) and all(k in value for k in schema.get("required", []))
                and all(valid(value[k], s) for k, s in schema.get("properties", {}).items()
                        if k in value))  # fmt: skip
    if kind == "array":
        return (isinstance(value, list)
                and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
                and all(valid(v, schema.get("items", {})) for v in value))  # fmt: skip
    if kind == "integer":
        low, high = schema.get("minimum", value), schema.get("maximum", value)
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind == "string":
        return isinstance(value, str)
    return True


def main() -> None:
    requests = calls()
    results: dict[str, dict[str, list[tuple[bool, float]]]] = {b: {} for b in BACKENDS}
    load: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        llms = {}
        for name, backend in BACKENDS.items():
            start = time.perf_counter()
            if isinstance(backend, TransformersConfig):  # from the GGUF, not a cached copy
                backend = backend.model_copy(update={"cache_dir": Path(scratch)})
            llms[name] = LLM(LLMConfig(backend=backend, cache=False))
            load[name] = time.perf_counter() - start
        for kind, request in requests:
            for name, llm in llms.items():
                start = time.perf_counter()
                answer = llm.run(request)
                seconds = time.perf_counter() - start
                ok = answer.ok and valid(answer.parsed, request.schema or {})
                results[name].setdefault(kind, []).append((ok, seconds))
        for llm in llms.values():
            llm.close()
    report(results, load)


def report(results: dict[str, dict[str, list[tuple[bool, float]]]], load: dict[str, float]) -> None:
    kinds = list(next(iter(results.values())))
    rows, figures = [], {}
    for kind in [*kinds, "all"]:
        cells = []
        for name, by_kind in results.items():
            runs = [r for k in kinds for r in by_kind[k]] if kind == "all" else by_kind[kind]
            share = float(np.mean([ok for ok, _ in runs]))
            seconds = float(np.mean([s for _, s in runs]))
            figures.setdefault(kind, {})[name] = {"valid": share, "seconds_per_call": seconds,
                                                  "calls": len(runs)}  # fmt: skip
            cells += [f"{share:.0%}", f"{seconds:.2f}"]
        rows.append(f"| {kind} | {' | '.join(cells)} |")
    names = list(results)
    ratios = {name: figures["all"][name]["seconds_per_call"]
              / figures["all"]["llamacpp"]["seconds_per_call"] for name in names[1:]}  # fmt: skip
    markdown = f"""# The local backends side by side: llama.cpp and transformers (SmolLM2-135M)

The same 50 structured calls (10 per kind), alternating between the backends call by
call, one thread each, no cache. Valid: JSON satisfying the schema. Seconds per call
against llama.cpp's: {", ".join(f"{n} {r:.2f}×" for n, r in ratios.items())}. Load: {
        ", ".join(f"{n} {load[n]:.1f} s" for n in names)
    } (transformers from the GGUF, with its conversion; later loads read the
converted copy).

| call | {" | ".join(f"{n} valid | {n} s/call" for n in names)} |
|---|{"---|---|" * len(names)}
{chr(10).join(rows)}

    .venv/bin/python benchmarks/llm_backends.py
"""
    write_results("llm_backends", {"calls": figures, "load_s": load, "ratios": ratios}, markdown)


if __name__ == "__main__":
    main()
