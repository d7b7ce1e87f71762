"""Training batches of the sequential models: left-padded sequences, batches of about
the same length, and the per-batch weights that make every target count the same."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["length_batches", "padded_sequences", "target_weights"]


def length_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Row indices in batches of sequences of about the same length, in random order:
    every row once; rows of one length shuffled, the batches shuffled too."""
    shuffled = torch.randperm(len(lengths), generator=generator)
    by_length = shuffled[torch.argsort(lengths[shuffled], stable=True)]
    batches = list(by_length.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def target_weights(targets: list[torch.Tensor]) -> list[float]:
    """Each batch's weight on the mean loss of its targets (``targets > 0``): its target
    count over the epoch's mean count per batch, so that every target of the epoch weighs
    the same. Length batches differ in targets per batch by up to ``max_len``× (Beauty:
    256 sequences of 2 items or of 50); a plain per-batch mean gives the targets of short
    sequences that much more weight, which costs accuracy (docs/results.md)."""
    counts = [int((batch > 0).sum()) for batch in targets]
    mean = sum(counts) / len(counts)
    return [count / mean for count in counts]


def padded_sequences(sequences: list[np.ndarray], length: int, shift: int = 1) -> torch.Tensor:
    """The last ``length`` values of each sequence, plus ``shift`` (item ids move up by
    one, so 0 is padding; columns already 1-based keep 0), left-padded with 0."""
    out = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, items in enumerate(sequences):
        tail = items[-length:]
        if len(tail):
            out[row, length - len(tail) :] = torch.as_tensor(tail + shift)
    return out
