"""Data-parallel training with ``torch.distributed``: processes started by ``torchrun``
(``coldrec rank --nproc N`` starts them), gloo on CPUs, NCCL where GPUs are.

Every process builds the same batches from the same generator (the epoch's length
batches, each row's negatives and masks) and trains on its shard of each batch's rows,
its loss weighted by its share of the batch's targets; DDP averages the gradients, so a
step moves the weights as the one-process step on the whole batch would (up to the order
of floating-point sums, and dropout, whose masks each process draws for its own rows).
Validation runs on rank 0 and its score reaches every process; only rank 0 evaluates and
writes the run. Without ``torchrun`` (or with one process) nothing here changes anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist

__all__ = [
    "data_parallel",
    "from_rank_zero",
    "is_main",
    "rank",
    "shard",
    "start",
    "sum_over_ranks",
    "world_size",
]


def start() -> bool:
    """Join the process group ``torchrun`` set up in the environment (``WORLD_SIZE`` > 1);
    return whether this is a data-parallel run."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process evaluates and writes (rank 0, or the only process)."""
    return rank() == 0


def shard(n: int) -> slice:
    """This process's rows of a batch of ``n``: contiguous, sizes differing by at most one
    (an empty slice when ``n`` is below the number of processes)."""
    size, me = world_size(), rank()
    return slice(me * n // size, (me + 1) * n // size)


def sum_over_ranks(value: float) -> float:
    """``value`` summed over the processes."""
    if not dist.is_initialized():
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item())


def from_rank_zero(compute: Callable[[], float]) -> float:
    """``compute()`` on rank 0, its value on every process."""
    if not dist.is_initialized():
        return compute()
    value = torch.tensor([compute() if is_main() else 0.0], dtype=torch.float64)
    dist.broadcast(value, src=0)
    return float(value.item())


def data_parallel(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in DDP in a data-parallel run (a forward through it averages the step's
    gradients over the processes), else ``net`` itself."""
    if not dist.is_initialized():
        return net
    return torch.nn.parallel.DistributedDataParallel(net)
