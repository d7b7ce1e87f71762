"""Per-row item lists on Amazon Beauty: scipy's ``csr_array`` (what coldrec uses) against
the hand-made ``Csr`` class it replaced, side by side in one run.

Times, as median of 5 repeats, the operations the protocol, the retriever and the hard
negatives run on users' histories and targets: building the lists from the history
rows, selecting every evaluated user's list in batches of 1,024 (as ``rank`` and
``search`` do), keeping the cold items only (the protocol's segments), and the hard
negative pools from 2,000 random candidates per user (``PoolSampler.from_candidates``,
whose cost is a row selection plus ``hit_matrix``). Both must give the same lists.

Run ``.venv/bin/python benchmarks/item_lists.py``; figures go to
``benchmarks/results/item_lists.{json,md}``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from _common import load_beauty, write_results
from coldrec._util.sparse import hit_matrix, item_lists, keep_items
from coldrec.data import prepare
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.eval.protocol import EvaluationPlan

REPEATS = 5
BATCH = 1024
CANDIDATES = 2000


@dataclass(frozen=True)
class HandMade:
    """The class coldrec used until this change (commit f932ebd, ``eval/protocol.py``)."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, items: np.ndarray, n_rows: int) -> HandMade:
        pairs = np.unique(np.stack([rows, items]).astype(np.int64).reshape(2, -1), axis=1)
        return cls(np.searchsorted(pairs[0], np.arange(n_rows + 1)), pairs[1])

    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))

    def select(self, rows: np.ndarray) -> HandMade:
        position = np.full(len(self.indptr) - 1, -1)
        position[rows] = np.arange(len(rows))
        new_rows = position[self.rows()]
        keep = new_rows >= 0
        return HandMade.of(new_rows[keep], self.items[keep], len(rows))

    def where(self, item_mask: np.ndarray) -> HandMade:
        keep = item_mask[self.items]
        return HandMade.of(self.rows()[keep], self.items[keep], len(self.indptr) - 1)


def hand_made_hit_matrix(ranked: np.ndarray, indptr: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``hit_matrix`` as it was, over the hand-made lists' arrays."""
    width = int(max(ranked.max(initial=0), items.max(initial=0))) + 1
    rows = np.repeat(np.arange(len(ranked), dtype=np.int64), np.diff(indptr))
    keys = np.sort(rows * width + items)
    ranked_keys = np.arange(len(ranked), dtype=np.int64)[:, None] * width + ranked
    found = np.searchsorted(keys, ranked_keys).clip(max=len(keys) - 1)
    return (keys[found] == ranked_keys) & (ranked >= 0)


def median_seconds(work: Callable[[], Any]) -> tuple[float, Any]:
    seconds, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def batches(n: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + BATCH, n)) for s in range(0, n, BATCH)]


def main() -> None:
    dataset = prepare(load_beauty())
    rows = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
    users, items = rows["user_idx"].to_numpy(), rows["item_idx"].to_numpy()
    n_users, n_items = dataset.n_users, dataset.n_items
    plan = EvaluationPlan.of(dataset)
    cold = dataset.items["cold"].to_numpy()
    block = np.random.default_rng(0).integers(0, n_items, (len(plan.users), CANDIDATES))
    old_history = HandMade.of(users, items, n_users)
    new_history = item_lists(users, items, n_users, n_items)
    old_targets = HandMade(plan.targets.indptr, plan.targets.indices.astype(np.int64))

    def old_pools() -> np.ndarray:
        seen = old_history.select(plan.users)
        return hand_made_hit_matrix(block, seen.indptr, seen.items)

    operations: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "build the history lists": (
            lambda: HandMade.of(users, items, n_users),
            lambda: item_lists(users, items, n_users, n_items),
        ),
        "select every evaluated user, 1,024 at a time": (
            lambda: [old_history.select(plan.users[b]) for b in batches(len(plan.users))],
            lambda: [new_history[plan.users[b]] for b in batches(len(plan.users))],
        ),
        "keep the cold targets": (
            lambda: old_targets.where(cold),
            lambda: keep_items(plan.targets, cold),
        ),
        "hard-negative pools (select + hit matrix)": (
            old_pools,
            lambda: hit_matrix(block, new_history[plan.users]),
        ),
    }
    figures = {}
    for name, (old, new) in operations.items():
        old_s, old_result = median_seconds(old)
        new_s, new_result = median_seconds(new)
        figures[name] = {"hand_made_s": old_s, "csr_array_s": new_s, "ratio": new_s / old_s}
        check_same(name, old_result, new_result)
    table = "\n".join(
        f"| {name} | {f['hand_made_s'] * 1000:,.1f} | {f['csr_array_s'] * 1000:,.1f} | "
        f"{f['ratio']:.2f} |"
        for name, f in figures.items()
    )
    write_results(
        "item_lists",
        {"benchmark": "per-row item lists, Amazon Beauty", "figures": figures},
        "# Per-row item lists: scipy csr_array against the hand-made class\n\n"
        f"Amazon Beauty global split ({len(users):,} history rows, {n_users:,} users, "
        f"{len(plan.users):,} evaluated users), median of {REPEATS} repeats, both in the "
        "same run; the results are checked equal.\n\n"
        "| operation | hand-made (ms) | csr_array (ms) | csr_array / hand-made |\n"
        f"|---|---:|---:|---:|\n{table}\n",
    )
    print(table)


def check_same(name: str, old: Any, new: Any) -> None:
    """Both formulations found the same lists (or hit matrices)."""
    pairs = zip(old, new, strict=True) if isinstance(old, list) else [(old, new)]
    for a, b in pairs:
        same = (
            np.array_equal(a, b)
            if isinstance(a, np.ndarray)
            else np.array_equal(a.indptr, b.indptr) and np.array_equal(a.items, b.indices)
        )
        if not same:
            raise SystemExit(f"{name}: the two formulations disagree")


if __name__ == "__main__":
    main()
