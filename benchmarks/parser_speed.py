"""Time the LLM-answer parser on its worst inputs (was a timed assertion in the tests;
speed belongs here): 80,000 characters of padding around a JSON array, 300 answers of
42,000 characters each projected onto 50 titles by their numbers, and 300 long answers
matched fuzzily against the titles (none matches). Target: under 0.1 s for the three
together on this machine; the median of 7 repeats is reported.

Run ``.venv/bin/python benchmarks/parser_speed.py``; figures go to
``benchmarks/results/parser_speed.{json,md}``.
"""

from __future__ import annotations

import statistics
import time

from _common import write_results
from coldrec.llm.parse import extract_json, project

REPEATS = 7
TARGET_S = 0.1


def worst_inputs() -> None:
    titles = [f"Moisturising cream number {i} with a rather long name for testing"
              for i in range(50)]  # fmt: skip
    answers = [f"{' ' * 40_000}[{i}] " + "x" * 2_000 for i in range(300)]
    extract_json(" " * 40_000 + "[3]" + " " * 40_000)
    project(answers, titles)
    project([t[::-1] * 20 for t in titles * 6], titles)


def main() -> None:
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        worst_inputs()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    verdict = "met" if median < TARGET_S else "not met"
    repeats = ", ".join(f"{s * 1000:.1f}" for s in seconds)
    markdown = f"""# The LLM-answer parser on its worst inputs

Median of {REPEATS} repeats: {median * 1000:.1f} ms (target under {TARGET_S * 1000:.0f} ms:
{verdict}); every repeat: {repeats} ms.
"""
    write_results("parser_speed", {"seconds": seconds, "median_s": median,
                                   "target_s": TARGET_S}, markdown)  # fmt: skip


if __name__ == "__main__":
    main()
