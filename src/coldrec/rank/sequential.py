"""Sequential recommenders (SASRec, GRU4Rec, BERT4Rec) behind one trainer and one loss.

The networks are in :mod:`coldrec.rank.network` and its subclasses.

Training: ``L_main + λ_sim·L_sim + λ_pair·L_pair`` (:mod:`coldrec.rank.losses`), in
batches of sequences of about the same length
(:func:`~coldrec.rank.batching.length_batches`; attention
networks then drop the padding columns no sequence of the batch needs), each batch's
``L_main`` weighted by its number of targets
(:func:`~coldrec.rank.batching.target_weights`), so that every
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

from typing import Any

import numpy as np
import torch

from coldrec._util.sparse import item_lists
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder
from coldrec.errors import ConfigError
from coldrec.eval.protocol import selection_score
from coldrec.rank.batching import length_batches, padded_sequences, target_weights
from coldrec.rank.items import DeltaItems, IdItems
from coldrec.rank.losses import LabelLosses, full_softmax_loss, sequence_softmax_loss
from coldrec.rank.network import SequenceNet, SequentialConfig
from coldrec.rank.transfer import Transfer, TransferConfig, knn_gate_transfer, lenders
from coldrec.supervision.labels import LabelFiles, Labels
from coldrec.training.distributed import data_parallel, shard, sum_over_ranks, world_size
from coldrec.training.model import TrainedModel
from coldrec.training.negatives import NegativeSampler, PoolSampler, UniformSampler
from coldrec.training.saving import Saved
from coldrec.training.scores import scores_at

__all__ = ["SequentialRecommender"]


class SequentialRecommender(TrainedModel):
    """A sequential model over the full catalogue, a
    :class:`~coldrec.training.model.Trainable`; ``config`` picks the network.

    Its inputs besides the Dataset: ``labels`` (pseudo edges and triplets for ``L_sim``
    and ``L_pair``, read and filtered against each Dataset it trains on) and
    ``negatives`` (retrieved candidates, the pools of ``hard_negatives``). Saved, it keeps
    the network, the padded history it scores users from and which items it trained.
    """

    config: SequentialConfig

    def __init__(
        self,
        config: SequentialConfig,
        labels: LabelFiles | None = None,
        negatives: Candidates | None = None,
    ) -> None:
        super().__init__(config)
        if config.hard_negatives and negatives is None:
            raise ConfigError("hard_negatives draws from retrieved candidates: pass them "
                              "(coldrec rank does)")  # fmt: skip
        self.labels = labels or LabelFiles()
        self.negatives = negatives
        self.net: SequenceNet | None = None
        self.history = torch.zeros(0, 0, dtype=torch.long)
        """Each user's last ``max_len`` history items, shifted by one and left-padded."""
        self.trained_items = torch.zeros(0, dtype=torch.bool)
        """Items seen in the training history or in a label."""
        self.item_interactions = torch.zeros(0, dtype=torch.long)
        """Per item, its interactions in the training history."""
        self.item_label_rows = torch.zeros(0, dtype=torch.long)
        """Per item, the pseudo-label rows (edges, triplet sides) naming it."""
        self.transfer: Transfer | None = None
        """What the residual transfer did (gates and best similarities of cold items)."""
        self._fitted_residuals: torch.Tensor | None = None
        """The delta residuals as trained, before any transfer (in memory only)."""

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        self.net.eval()
        with torch.no_grad():
            context = self.net.contexts(self.history[torch.as_tensor(users)])
            scores = (context @ self.net.item_vectors().T).numpy()
        if isinstance(self.net.items, IdItems):  # an untrained ID vector means nothing
            scores[:, ~self.trained_items.numpy()] = np.nan
        return scores_at(scores, items)

    def evidence(self, label_share: float) -> np.ndarray:
        """Per item, the evidence its vector trained on: interactions plus
        ``label_share`` per pseudo-label row (the fusion's evidence blend)."""
        return (self.item_interactions.numpy()
                + label_share * self.item_label_rows.numpy()).astype(np.float32)  # fmt: skip

    def contexts_of(self, sequences: list[np.ndarray], at: int | None = None) -> np.ndarray:
        """Context vectors of item sequences (Dataset item ids, oldest first), as
        :meth:`score` uses them; items the network has no row for (added after training)
        are left out of a sequence. ``at``: the request time, for models that read one."""
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        known = [np.asarray(s, dtype=np.int64) for s in sequences]
        known = [s[s < self.net.n_items] for s in known]
        if self.net.training:
            self.net.eval()
        with torch.no_grad():
            return self.net.contexts(padded_sequences(known, self.config.max_len)).numpy()

    def item_table(self) -> np.ndarray:
        """The output vector of every item it was trained for (NaN rows for items an ID
        model never trained, which it cannot score)."""
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        with torch.no_grad():
            table = self.net.item_vectors().numpy().copy()
        if isinstance(self.net.items, IdItems):
            table[~self.trained_items.numpy()] = np.nan
        return table

    def new_item_vectors(self, content: np.ndarray) -> np.ndarray:
        """Output vectors for items added after training, from their content vectors:
        with delta item vectors ``map(c) + Δ`` where ``Δ`` comes from the warm neighbours
        by the run's transfer (none without one); an ID model cannot score them (NaN)."""
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        items = self.net.items
        if not isinstance(items, DeltaItems):
            return np.full((len(content), self.config.dim), np.nan, dtype=np.float32)
        with torch.no_grad():
            mapped = items.map(torch.as_tensor(content, dtype=torch.float32)).numpy()
            if self.config.transfer is None:
                return mapped
            residuals = np.concatenate([items.residuals().numpy(),
                                        np.zeros_like(mapped)])  # fmt: skip
            known = items.content.numpy()
        n = len(known)
        new = np.arange(n, n + len(content))
        donors = np.concatenate([self.trained_items.numpy(), np.zeros(len(content), bool)])
        receivers = np.zeros(n + len(content), dtype=bool)
        receivers[new] = True
        moved = knn_gate_transfer(residuals, np.concatenate([known, content]), receivers,
                                  donors, self.config.transfer)  # fmt: skip
        return mapped + moved.residuals[new]

    def lenders(self, content: np.ndarray) -> dict[str, Any] | None:
        """The warm items that lend an item with this content vector their residual, by
        the run's transfer (None without one): ``items`` (ids, similarities, weights) and
        ``gate``."""
        items = self.net.items if self.net is not None else None
        if not isinstance(items, DeltaItems) or self.config.transfer is None:
            return None
        known = items.content.numpy()
        rows, similarity, weights, gate = lenders(content, known, self.trained_items.numpy(),
                                                  self.config.transfer)  # fmt: skip
        return {"gate": gate, "items": [
            {"item": int(r), "similarity": float(s), "weight": float(w)}
            for r, s, w in zip(rows, similarity, weights, strict=True)]}  # fmt: skip

    def transferred(self, dataset: Dataset, config: TransferConfig) -> SequentialRecommender:
        """A copy whose cold items (``dataset``'s) carry residuals moved from their warm
        neighbours (:func:`~coldrec.rank.transfer.knn_gate_transfer`) by ``config``,
        which becomes its transfer (new items added in serving take it too); it starts
        from the residuals as trained, not from an earlier transfer. Needs ``delta``."""
        twin = self._copy()
        twin.config = twin.config.model_copy(update={"transfer": config})
        twin._fitted_residuals = self._fitted_residuals
        twin.transfer = twin._transfer(dataset, config)
        return twin

    def _start(self, dataset: Dataset, generator: torch.Generator) -> _Trainer:
        sequences = dataset.sequences(*HISTORY_SPLITS)
        self.history = padded_sequences(sequences, self.config.max_len)
        labels = self.labels.read(dataset)
        seen = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        self.item_interactions = torch.as_tensor(np.bincount(seen, minlength=dataset.n_items))
        self.item_label_rows = torch.as_tensor(labels.item_rows(dataset.n_items))
        in_history = self.item_interactions.numpy() > 0
        self.trained_items = (self.item_interactions > 0) | (self.item_label_rows > 0)
        content = None
        if self.config.delta is not None:
            content = TextEncoder(self.config.delta.encoder).encode(dataset.item_text)
        self.net = self.config.network(dataset.n_items, content)
        self._fitted_residuals = None
        sampler = self._sampler(dataset, in_history, sequences)
        return _Trainer(self, dataset, sequences, in_history, labels, sampler, generator)

    def _finish(self, dataset: Dataset) -> None:
        if self.config.transfer is not None:
            self.transfer = self._transfer(dataset, self.config.transfer)

    def _transfer(self, dataset: Dataset, config: TransferConfig) -> Transfer:
        items = self.net.items if self.net is not None else None
        if not isinstance(items, DeltaItems):
            raise ConfigError("transfer moves delta residuals: fit a model with delta set")
        cold = dataset.items["cold"].to_numpy()
        donors = self.trained_items.numpy() & ~cold
        with torch.no_grad():
            if self._fitted_residuals is None:
                self._fitted_residuals = items.residuals().clone()
            residuals = self._fitted_residuals.numpy()
            moved = knn_gate_transfer(residuals, items.content.numpy(), cold, donors, config)
            items.delta.copy_(torch.as_tensor(moved.residuals))
        return moved

    def _sampler(
        self, dataset: Dataset, in_history: np.ndarray, sequences: list[np.ndarray]
    ) -> NegativeSampler:
        """Uniform over items seen in history, or hard negatives from candidates."""
        uniform = UniformSampler(torch.as_tensor(np.flatnonzero(in_history)))
        if not self.config.hard_negatives or self.negatives is None:
            return uniform
        lengths = [len(s) for s in sequences]
        rows = np.repeat(np.arange(len(sequences)), lengths)
        seen = item_lists(rows, np.concatenate(sequences), len(sequences), dataset.n_items)
        return PoolSampler.from_candidates(self.negatives, dataset.n_users, ~in_history, seen,
                                           uniform)  # fmt: skip

    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        net = {f"net.{name}": value for name, value in self.net.state_dict().items()}
        return {**net, "history": self.history, "trained_items": self.trained_items,
                "item_interactions": self.item_interactions,
                "item_label_rows": self.item_label_rows}  # fmt: skip

    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        content = tensors.get("net.items.content")
        vectors = None if content is None else content.numpy()
        self.net = self.config.network(len(saved.item_ids), vectors)
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()
        self.history, self.trained_items = tensors["history"], tensors["trained_items"]
        # Models saved before the evidence counts: one interaction per trained item.
        self.item_interactions = tensors.get("item_interactions", self.trained_items.long())
        self.item_label_rows = tensors.get("item_label_rows", torch.zeros_like(
            self.item_interactions))  # fmt: skip

    def _extra(self) -> dict[str, Any]:
        return {"transfer": self.transfer.summary()} if self.transfer is not None else {}


class _Trainer:
    """One training of a sequential network on one Dataset's history:
    ``L_main + λ_sim·L_sim + λ_pair·L_pair`` in length batches."""

    def __init__(
        self,
        model: SequentialRecommender,
        dataset: Dataset,
        sequences: list[np.ndarray],
        in_history: np.ndarray,
        labels: Labels,
        sampler: NegativeSampler,
        generator: torch.Generator,
    ) -> None:
        assert model.net is not None
        self.model, self.net, self.dataset = model, model.net, dataset
        self.config, self.sampler, self.generator = model.config, sampler, generator
        length = self.config.max_len
        usable = np.array([u for u, s in enumerate(sequences) if len(s) >= 2], dtype=np.int64)
        self.training = padded_sequences([sequences[u] for u in usable], length + 1)
        self.row_users = torch.as_tensor(usable)
        self.lengths = torch.as_tensor([min(len(sequences[u]), length + 1) for u in usable])
        options = self.config.training
        self.optimiser = torch.optim.AdamW(
            self.net.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
        )
        self.known = torch.as_tensor(np.flatnonzero(in_history))  # the full softmax's catalogue
        self.slot = torch.full((dataset.n_items,), -1, dtype=torch.long)
        self.slot[self.known] = torch.arange(len(self.known))
        self.labels = LabelLosses.of(labels, self.config)
        self.forward = data_parallel(self.net)

    def train_epoch(self, epoch: int) -> float:
        net, config = self.net, self.config
        batches = [
            (rows, *net.examples(net.fit_width(self.training[rows]), self.generator))
            for rows in length_batches(self.lengths, config.training.batch_size, self.generator)
        ]
        weights = target_weights([targets for _, _, targets in batches])
        total = 0.0
        for (rows, inputs, targets), weight in zip(batches, weights, strict=True):
            negatives = None
            if config.loss != "full":  # drawn for the whole batch: the same in every process
                negatives = self.sampler.sample(self.row_users[rows], config.n_negatives,
                                                self.generator) + 1  # fmt: skip
            main = self._main_loss(inputs, targets, negatives)
            extra = self.labels.loss(net, self.model.history, self.sampler, len(rows),
                                     self.generator)  # fmt: skip
            loss = weight * main + extra
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            total += loss.item()
        return sum_over_ranks(total) / world_size() / len(batches)

    def _main_loss(
        self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor | None
    ) -> torch.Tensor:
        """``L_main`` of the batch; in a data-parallel run, of this process's rows,
        scaled so that the processes' mean is the whole batch's loss."""
        mine = shard(len(inputs))
        real = targets[mine] > 0
        share = world_size() * int(real.sum()) / int((targets > 0).sum())
        hidden = self.forward(inputs[mine])
        if not share:  # fewer rows than processes: no targets here, zero gradients
            return hidden.sum() * 0
        if negatives is None:
            catalogue = self.net.item_vectors()[self.known]
            targets = self.slot[targets[mine][real] - 1]
            return share * full_softmax_loss(hidden[real], targets, catalogue)
        return share * sequence_softmax_loss(hidden, targets[mine], negatives[mine],
                                             self.net.items.weight)  # fmt: skip

    def validation_score(self) -> float:
        return selection_score(self.model, self.dataset)
