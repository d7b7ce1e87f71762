"""The two costs of a LAGCL4Rec (XSimGCL, rank level) training batch, each beside the
formulation it replaced, on Amazon Beauty's history graph, one thread, side by side in one
run (alternating, median of the repeats):

1. three propagation layers forward and back: ``adjacency.spread`` over the CSR
   adjacency (its gradient the same product, ``Â`` being symmetric) against torch's own
   sparse autograd over the COO adjacency (``Â @ x``, which transposes ``Â`` each call),
   on the history graph and on it with as many extra random edges as the full model's
   augmented positives (386,340: the graph it trains on, in size);
2. the in-batch adaptive-temperature InfoNCE of 2,048 rows forward and back:
   ``in_batch_adaptive_info_nce`` (one matrix of logits) against the off-diagonal
   negatives gathered apart and passed to ``adaptive_info_nce``.

Each pair must give the same values and gradients. Run ``.venv/bin/python
benchmarks/graph_speed.py``; figures go to ``benchmarks/results/graph_speed.{json,md}``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from _common import load_beauty, write_results
from coldrec.data import prepare
from coldrec.graph.adjacency import normalised_adjacency, spread
from coldrec.graph.losses import adaptive_info_nce, in_batch_adaptive_info_nce, same_group
from coldrec.training.pairs import history_edges

REPEATS = 11
AUGMENTED = 386_340
DIM, BATCH, LAYERS = 64, 2048, 3
TAUS = (0.2, 0.1, 0.15, 2.0)  # τ_p, τ_h, τ_e, w_h


def gathered_info_nce(a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The replaced formulation: the off-diagonal negatives gathered apart."""
    similarity = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    n = len(a)
    off = ~torch.eye(n, dtype=torch.bool)
    others = groups[None, :].expand(n, n)[off].view(n, n - 1)
    return adaptive_info_nce(similarity.diagonal(), similarity[off].view(n, n - 1),
                             same_group(groups, others), *TAUS)  # fmt: skip


def timed(step: Callable[[], list[torch.Tensor]]) -> tuple[float, list[torch.Tensor]]:
    start = time.perf_counter()
    out = step()
    return time.perf_counter() - start, out


def side_by_side(steps: dict[str, Callable[[], list[torch.Tensor]]]) -> dict[str, float]:
    """Median seconds of each step, run in turn ``REPEATS`` times; their outputs must agree."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    outputs = {name: step() for name, step in steps.items()}  # warm-up, untimed
    for _ in range(REPEATS):
        for name, step in steps.items():
            took, outputs[name] = timed(step)
            seconds[name].append(took)
    first, *others = outputs.values()
    for other in others:
        for x, y in zip(first, other, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    return {name: statistics.median(values) for name, values in seconds.items()}


def propagation(adjacency: torch.Tensor, coo: torch.Tensor) -> dict[str, float]:
    ego = torch.randn(adjacency.shape[0], DIM, generator=torch.Generator().manual_seed(0))

    def layers(multiply: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        x = ego.clone().requires_grad_(True)
        current = x
        for _ in range(LAYERS):
            current = multiply(current)
        current.square().sum().backward()
        return [current.detach(), x.grad]

    return side_by_side({"spread (CSR)": lambda: layers(lambda x: spread(adjacency, x)),
                         "COO autograd": lambda: layers(lambda x: coo @ x)})  # fmt: skip


def info_nce() -> dict[str, float]:
    draws = torch.Generator().manual_seed(1)
    a0, b0 = (torch.randn(BATCH, DIM, generator=draws) for _ in range(2))
    groups = torch.randint(-1, 300, (BATCH,), generator=draws)

    def loss(formulation: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
        a, b = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        value = formulation(a, b, groups)
        value.backward()
        return [value.detach(), a.grad, b.grad]

    return side_by_side({
        "one matrix": lambda: loss(lambda a, b, g: in_batch_adaptive_info_nce(a, b, g, *TAUS)),
        "gathered": lambda: loss(gathered_info_nce),
    })  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    dataset = prepare(load_beauty())
    users, items = history_edges(dataset)
    draws = np.random.default_rng(0)
    graphs = {"history": (users, items), f"history + {AUGMENTED:,} random edges": (
        np.concatenate([users, draws.integers(0, dataset.n_users, AUGMENTED)]),
        np.concatenate([items, draws.integers(0, dataset.n_items, AUGMENTED)]))}  # fmt: skip
    figures: dict[str, Any] = {"propagation": {}, "nonzeros": {}}
    for name, (u, i) in graphs.items():
        adjacency = normalised_adjacency(u, i, dataset.n_users, dataset.n_items)
        coo = adjacency.to_sparse_coo().coalesce()
        figures["propagation"][name] = propagation(adjacency, coo)
        figures["nonzeros"][name] = int(adjacency.values().numel())
    figures["info_nce"] = info_nce()
    parts = {f"propagation, {name}": figures["propagation"][name] for name in graphs}
    parts["in-batch adaptive InfoNCE"] = figures["info_nce"]
    rows = []
    for part, times in parts.items():
        new, old = times
        rows.append(f"| {part} | {new}: {times[new]:.3f} | {old}: {times[old]:.3f} | "
                    f"{times[old] / times[new]:.1f}× |")  # fmt: skip
    sizes = ", ".join(f"{name}: {n:,}" for name, n in figures["nonzeros"].items())
    markdown = f"""# A graph training batch's two costs, beside the formulations they replaced

Amazon Beauty ({dataset.n_users + dataset.n_items:,} nodes; nonzeros of `Â`: {sizes}),
{LAYERS} layers of dimension {DIM} forward and back; the in-batch adaptive InfoNCE of
{BATCH:,} rows (τ_p, τ_h, τ_e, w_h = {TAUS}) forward and back. One thread, alternating,
median of {REPEATS} after a warm-up; each pair's values and gradients agree (checked).

| part | now (s) | before (s) | speed-up |
|---|---|---|---|
{chr(10).join(rows)}

    .venv/bin/python benchmarks/graph_speed.py
"""
    write_results("graph_speed", figures, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
