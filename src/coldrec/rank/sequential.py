"""Sequential recommenders (SASRec, GRU4Rec, BERT4Rec) behind one trainer and one loss.

Item ids are shifted by one inside a network (0 is padding); sequences are the last
``max_len`` history items, left-padded. A network turns a sequence into hidden states and
says how a training sequence becomes (inputs, targets): the causal models predict the
next item at every position, BERT4Rec the items hidden behind a mask token. A user is
scored from the context vector of their history (:meth:`SequenceNet.context`) against
the item embeddings, which are tied between input and output.

Training: ``L_main + λ_sim·L_sim + λ_pair·L_pair`` (:mod:`coldrec.rank.losses`), in
batches of sequences of about the same length (:func:`length_batches`; attention
networks then drop the padding columns no sequence of the batch needs), each batch's
``L_main`` weighted by its number of targets (:func:`target_weights`), so that every
target of an epoch counts the same whatever the length of its sequence.
``L_main``: every target of every training sequence against ``n_negatives`` sampled
items, drawn per sequence (uniform over trained items, or hard negatives from the user's
Two-Tower candidates), or against every item of the training history (``loss="full"``, RecBole's
``CE`` setting; items first seen at test time do not exist yet when the model trains, so
they are never negatives).
``L_sim``: each step draws up to a batch of pseudo edges, rebuilds each edge's user
sequence and scores the pseudo item first against sampled negatives, weighted by the edge
weight. ``L_pair``: ``pairs_per_step`` triplets per step, weighted
``-w·log σ(s⁺ − s⁻)`` under the user's sequence context. With ``early_stopping`` the epoch
count is chosen on the validation carve-out, then the model is refitted on all history.

An ID model learns one embedding per item: an item never seen in training (nor in a
label) has no trained vector, so its score is NaN (never ranked). With ``delta`` the item
vectors are anchored in content (:mod:`coldrec.rank.items`), so every item is scored, and
``transfer`` moves residuals from warm neighbours to cold items after training
(:mod:`coldrec.rank.transfer`).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
import torch
from pydantic import ConfigDict, Field, model_validator
from torch import nn

from coldrec.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.eval.protocol import Csr, selection_score
from coldrec.rank.items import DeltaConfig, DeltaItems, IdItems
from coldrec.rank.losses import (
    full_softmax_loss,
    pairwise_loss,
    sampled_softmax_loss,
    sequence_softmax_loss,
)
from coldrec.rank.negatives import NegativeSampler, PoolSampler, UniformSampler
from coldrec.rank.transfer import Transfer, TransferConfig, knn_gate_transfer
from coldrec.recommender import history_splits, scores_at
from coldrec.supervision.labels import Labels, read_labels
from coldrec.text import TextEncoder
from coldrec.training import (
    TrainedConfig,
    TrainingConfig,
    TrainingLog,
    fit_with_validation,
    run_epochs,
)

__all__ = [
    "SequenceNet",
    "SequentialConfig",
    "SequentialRecommender",
    "length_batches",
    "padded_sequences",
    "target_weights",
]


class SequentialConfig(TrainedConfig, ABC):
    """Settings every sequential model shares (defaults: the thesis's batch 256, AdamW,
    lr 3e-4, sampled softmax with 100 uniform negatives)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_len: int = Field(50, gt=0)
    """Items of history the model reads (the most recent ones)."""
    dim: int = Field(64, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["sampled", "full"] = "sampled"
    """``sampled``: listwise CE against ``n_negatives`` negatives; ``full``: CE over the
    whole catalogue."""
    n_negatives: int = Field(100, gt=0)
    hard_negatives: Path | None = None
    """A ``candidates.parquet`` (Two-Tower recall): negatives are drawn from each user's
    candidates with seen and cold items removed, falling back to uniform."""
    edges: Path | None = None
    """Pseudo edges (``edges.parquet``) for ``L_sim``."""
    triplets: Path | None = None
    """Pseudo triplets (``triplets.parquet``) for ``L_pair``."""
    lambda_sim: float = Field(1.0, ge=0)
    lambda_pair: float = Field(1.0, ge=0)
    pairs_per_step: int = Field(256, gt=0)
    """Triplets drawn per training step for ``L_pair``."""
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(batch_size=256, eval_every=2, patience=3)
    )

    delta: DeltaConfig | None = None
    """Content-anchored item vectors (:mod:`coldrec.rank.items`); none for ID vectors."""
    transfer: TransferConfig | None = None
    """After training, give cold items residuals of their warm neighbours
    (:mod:`coldrec.rank.transfer`; needs ``delta``)."""

    @model_validator(mode="after")
    def _transfer_needs_delta(self) -> Self:
        if self.transfer is not None and self.delta is None:
            raise ValueError("transfer moves delta residuals: set delta as well")
        return self

    @abstractmethod
    def network(self, n_items: int, content: np.ndarray | None = None) -> SequenceNet:
        """A fresh, untrained network for a catalogue of ``n_items`` (``content``: the
        items' content vectors, needed with ``delta``)."""

    def build(self) -> SequentialRecommender:
        return SequentialRecommender(self)


class SequenceNet(nn.Module, ABC):
    """Encodes left-padded shifted item sequences; item embeddings are shared by input
    and output (row 0 is padding, rows past ``n_items`` are special tokens)."""

    extra_tokens = 0

    def __init__(self, n_items: int, config: SequentialConfig, content: np.ndarray | None) -> None:
        super().__init__()
        self.n_items, self.dim = n_items, config.dim
        self.items: IdItems | DeltaItems
        if config.delta is None:
            self.items = IdItems(n_items + 1 + self.extra_tokens, config.dim)
        elif content is None or len(content) != n_items:
            raise ValueError("delta item vectors need one content vector per item")
        else:
            self.items = DeltaItems(content, config.dim, self.extra_tokens, config.delta)

    trims_padding = False
    """Whether leading padding columns can be dropped without changing any output (true
    where padding is masked out of attention; a GRU steps through it)."""

    def fit_width(self, sequences: torch.Tensor) -> torch.Tensor:
        """``sequences`` without the leading padding columns no row needs (one is kept,
        so a network that drops the first column loses no item), where that changes no
        output: a batch of short sequences then costs what its items cost."""
        if not self.trims_padding or not len(sequences):
            return sequences
        width = min(sequences.shape[1], int((sequences > 0).sum(dim=1).max()) + 1)
        return sequences[:, sequences.shape[1] - width :]

    def reset_items(self) -> None:
        """Draw the item vectors (call after building the other layers)."""
        self.items.reset()

    @abstractmethod
    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch × length × dim)."""

    def item_vectors(self) -> torch.Tensor:
        """Output vectors of the catalogue's items, in Dataset item order."""
        return self.items.weight[1 : self.n_items + 1]

    def context(self, history: torch.Tensor) -> torch.Tensor:
        """The vector that scores a user's next item (the last hidden state)."""
        return self(history)[:, -1]

    def contexts(self, history: torch.Tensor, parts: int = 4) -> torch.Tensor:
        """:meth:`context` of each row, computed in ``parts`` groups of similar length so
        that a few long histories do not make every short one pay for their padding
        (the outputs are those of one call)."""
        order = torch.argsort((history > 0).sum(dim=1))
        groups = [rows for rows in order.tensor_split(parts) if len(rows)]
        chunks = [self.context(self.fit_width(history[rows])) for rows in groups]
        return torch.cat(chunks)[torch.argsort(order)]

    def examples(
        self, sequences: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs and targets (0 = no target) from sequences one item longer
        than ``max_len``: the next item at every real position."""
        inputs = sequences[:, :-1]
        return inputs, torch.where(inputs > 0, sequences[:, 1:], 0)


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


def padded_sequences(sequences: list[np.ndarray], length: int) -> torch.Tensor:
    """The last ``length`` items of each sequence, shifted by one and left-padded with 0."""
    out = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, items in enumerate(sequences):
        tail = items[-length:]
        if len(tail):
            out[row, length - len(tail) :] = torch.as_tensor(tail + 1)
    return out


class SequentialRecommender:
    """A sequential model as a :class:`~coldrec.recommender.Recommender` over the full
    catalogue; ``config`` picks the network."""

    def __init__(self, config: SequentialConfig) -> None:
        self.config = config
        self.net: SequenceNet | None = None
        self.history = torch.zeros(0, 0, dtype=torch.long)
        self.trained_items = torch.zeros(0, dtype=torch.bool)
        self.training_log: dict[str, TrainingLog] = {}
        self.validation_model: SequentialRecommender | None = None
        """The model trained on the validation view (with early stopping)."""
        self.transfer: Transfer | None = None
        """What the residual transfer did (gates and best similarities of cold items)."""
        self._validated: tuple[Dataset, TrainingLog] | None = None
        """The Dataset :meth:`validate` trained on and its log, until :meth:`fit` uses them."""

    def fit(self, dataset: Dataset) -> Self:
        validated, self._validated = self._validated, None
        self.training_log = fit_with_validation(
            dataset,
            self._train,
            self.config.training.epochs,
            self.config.early_stopping,
            self.config.valid_share,
            validated[1] if validated and validated[0] is dataset else None,
        )
        return self

    def validate(self, dataset: Dataset) -> Self:
        """Train on ``dataset``'s validation view only, with early stopping, keeping the best
        model as :attr:`validation_model`; a later :meth:`fit` reuses this training (to
        compare settings on validation before paying for a final fit on the same
        ``dataset``)."""
        if not self.config.early_stopping:
            raise ValueError("validate needs early_stopping")
        view = validation_view(dataset, self.config.valid_share)
        log = self._train(view, self.config.training.epochs, True)
        self.training_log, self._validated = {"validation": log}, (dataset, log)
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("fit the model before scoring")
        self.net.eval()
        with torch.no_grad():
            context = self.net.contexts(self.history[torch.as_tensor(users)])
            scores = (context @ self.net.item_vectors().T).numpy()
        if isinstance(self.net.items, IdItems):  # an untrained ID vector means nothing
            scores[:, ~self.trained_items.numpy()] = np.nan
        return scores_at(scores, items)

    def _train(self, dataset: Dataset, epochs: int, validate: bool) -> TrainingLog:
        """Train a fresh network on ``dataset``'s history (early stopping on its test)."""
        sequences = dataset.sequences(*history_splits())
        length = self.config.max_len
        self.history = padded_sequences(sequences, length)
        seen = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        in_history = np.bincount(seen, minlength=dataset.n_items) > 0
        labels = read_labels(dataset, self.config.edges, self.config.triplets)
        self.trained_items = torch.as_tensor(in_history)
        self.trained_items[torch.as_tensor(labels.items)] = True
        usable = np.array([u for u, s in enumerate(sequences) if len(s) >= 2], dtype=np.int64)
        training = padded_sequences([sequences[u] for u in usable], length + 1)
        row_users = torch.as_tensor(usable)
        lengths = torch.as_tensor([min(len(sequences[u]), length + 1) for u in usable])
        content = None
        if self.config.delta is not None:
            content = TextEncoder(self.config.delta.encoder).encode(dataset.item_text)
        net = self.config.network(dataset.n_items, content)
        self.net = net
        options = self.config.training.model_copy(update={"epochs": epochs})
        optimiser = torch.optim.AdamW(
            net.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
        )
        sampler = self._sampler(dataset, in_history, sequences)
        known = torch.as_tensor(np.flatnonzero(in_history))  # the full softmax's catalogue
        slot = torch.full((dataset.n_items,), -1, dtype=torch.long)
        slot[known] = torch.arange(len(known))
        extra = _LabelLosses.of(labels, self.config)
        generator = torch.Generator().manual_seed(int(torch.randint(2**31, (1,)).item()))

        def train_epoch(epoch: int) -> dict[str, float]:
            batches = [
                (rows, *net.examples(net.fit_width(training[rows]), generator))
                for rows in length_batches(lengths, options.batch_size, generator)
            ]
            weights = target_weights([targets for _, _, targets in batches])
            total = 0.0
            for (rows, inputs, targets), weight in zip(batches, weights, strict=True):
                hidden = net(inputs)
                real = targets > 0
                if self.config.loss == "full":
                    catalogue = net.item_vectors()[known]
                    loss = full_softmax_loss(hidden[real], slot[targets[real] - 1], catalogue)
                else:
                    negatives = sampler.sample(row_users[rows], self.config.n_negatives,
                                               generator) + 1  # fmt: skip
                    loss = sequence_softmax_loss(hidden, targets, negatives, net.items.weight)
                loss = weight * loss + extra.loss(net, self.history, sampler, len(rows), generator)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item()
            return {"loss": total / len(batches)}

        def validation_score() -> float:
            return selection_score(self, dataset)

        name = self.config.model_dump()["kind"] + (" (validation)" if validate else "")
        result = run_epochs(net, train_epoch, options, validation_score if validate else None, name)
        if self.config.transfer is not None:
            self.transfer = self._transfer(dataset, self.config.transfer)
        if validate:  # the best model of the validation view, for later choices made there
            self.validation_model = self._snapshot()
        return result

    def transferred(self, dataset: Dataset, config: TransferConfig) -> SequentialRecommender:
        """A copy whose cold items (``dataset``'s) carry residuals moved from their warm
        neighbours (:func:`~coldrec.rank.transfer.knn_gate_transfer`); needs ``delta``."""
        twin = self._snapshot()
        twin.transfer = twin._transfer(dataset, config)
        return twin

    def _transfer(self, dataset: Dataset, config: TransferConfig) -> Transfer:
        items = self.net.items if self.net is not None else None
        if not isinstance(items, DeltaItems):
            raise ValueError("transfer moves delta residuals: fit a model with delta set")
        cold = dataset.items["cold"].to_numpy()
        donors = self.trained_items.numpy() & ~cold
        with torch.no_grad():
            residuals = items.residuals().numpy()
            moved = knn_gate_transfer(residuals, items.content.numpy(), cold, donors, config)
            items.delta.copy_(torch.as_tensor(moved.residuals))
        return moved

    def _snapshot(self) -> SequentialRecommender:
        twin = SequentialRecommender(self.config)
        twin.net = copy.deepcopy(self.net)
        twin.history = self.history.clone()
        twin.trained_items = self.trained_items.clone()
        twin.transfer = self.transfer
        return twin

    def _sampler(
        self, dataset: Dataset, in_history: np.ndarray, sequences: list[np.ndarray]
    ) -> NegativeSampler:
        """Uniform over items seen in history, or hard negatives from candidates."""
        uniform = UniformSampler(torch.as_tensor(np.flatnonzero(in_history)))
        if self.config.hard_negatives is None:
            return uniform
        lengths = [len(s) for s in sequences]
        seen = Csr.of(
            np.repeat(np.arange(len(sequences)), lengths), np.concatenate(sequences), len(sequences)
        )
        candidates = Candidates.load(self.config.hard_negatives)
        return PoolSampler.from_candidates(candidates, dataset.n_users, ~in_history, seen, uniform)


@dataclass(frozen=True)
class _LabelLosses:
    """``λ_sim·L_sim + λ_pair·L_pair`` over the filtered labels, drawn per step."""

    edges: torch.Tensor
    edge_weights: torch.Tensor
    triplets: torch.Tensor
    triplet_weights: torch.Tensor
    config: SequentialConfig

    @classmethod
    def of(cls, labels: Labels, config: SequentialConfig) -> _LabelLosses:
        return cls(
            torch.tensor(labels.edges[["user", "item"]].to_numpy(np.int64)).reshape(-1, 2),
            torch.tensor(labels.edges["weight"].to_numpy(np.float32)),
            torch.tensor(labels.triplets[["user", "pos", "neg"]].to_numpy(np.int64)).reshape(-1, 3),
            torch.tensor(labels.triplets["weight"].to_numpy(np.float32)),
            config,
        )

    def loss(
        self,
        net: SequenceNet,
        history: torch.Tensor,
        sampler: NegativeSampler,
        batch_size: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        total = torch.zeros(())
        if len(self.edges) and self.config.lambda_sim:
            pick = torch.randint(
                len(self.edges), (min(batch_size, len(self.edges)),), generator=generator
            )
            users, items = self.edges[pick, 0], self.edges[pick, 1]
            context = net.contexts(history[users])
            negatives = sampler.sample(users, self.config.n_negatives, generator) + 1
            l_sim = sampled_softmax_loss(
                context, items + 1, negatives, net.items.weight, self.edge_weights[pick]
            )
            total = total + self.config.lambda_sim * l_sim
        if len(self.triplets) and self.config.lambda_pair:
            count = min(self.config.pairs_per_step, len(self.triplets))
            pick = torch.randint(len(self.triplets), (count,), generator=generator)
            users, pos, neg = self.triplets[pick].T
            context = net.contexts(history[users])
            s_pos = (context * net.items(pos + 1)).sum(-1)
            s_neg = (context * net.items(neg + 1)).sum(-1)
            total = total + self.config.lambda_pair * pairwise_loss(
                s_pos, s_neg, self.triplet_weights[pick]
            )
        return total
