"""LightGCN (He et al., SIGIR 2020) and XSimGCL (Yu et al., TKDE 2023) over the user–item
graph of the training history, on coldrec's trainer.

- **Propagation**: ego embeddings ``E⁰`` (users, then items) are multiplied by the
  normalised adjacency ``Â`` (:func:`~coldrec.graph.adjacency.normalised_adjacency`)
  ``n_layers`` times. LightGCN's final embeddings are the mean of ``E⁰ … E^L``;
  XSimGCL's the mean of ``E¹ … E^L``, each layer perturbed in training by
  ``sign(E)·normalise(U(0, 1))·ε``.
- **Loss**: BPR over (user, positive, uniform negative) triples of the history (a
  negative is never one of the user's items), plus ``reg`` × the batch's squared ego
  norms; XSimGCL adds ``lambda_cl`` × InfoNCE (temperature ``cl_temperature``) between
  the final embeddings and those of layer ``cl_layer`` of the batch's users and items.
- **Data-level activation** (LAGCL4Rec, :attr:`GraphRecommender.augmentation`, from
  ``coldrec augment``): the augmented positives join the graph as edges and the BPR pairs.
  A user's known dislikes — augmented negatives and the Dataset's real negatives (low
  ratings before the user's test, ``prepare.low_ratings: negatives``) — give
  ``disliked_share`` of their BPR negatives.
- **Rank-level activation** (LAGCL4Rec, ``rank_level``): items are grouped by their
  taxonomy leaf and users by the most frequent leaf of their history (the stand-ins for
  LLM-named groups); each positive gets ``n_negatives``, ``hard_share`` of them from its
  own group (hard) and the rest uniform (easy unless in the group by chance); BPR becomes
  LABPR (:func:`~coldrec.graph.losses.labpr`) and XSimGCL's InfoNCE the
  adaptive-temperature one (:func:`~coldrec.graph.losses.in_batch_adaptive_info_nce`).
- **Strict cold items** (no training edge) have no graph signal; coldrec's addition (the
  papers do not treat them): their embedding is a ridge-regression map of their text
  vector (MiniLM) fitted on the trained items' final embeddings after training, so every
  item is scored; a new item added later gets the same map.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from coldrec.data.dataset import Dataset
from coldrec.data.taxonomy import build_taxonomy
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.errors import ConfigError
from coldrec.eval.protocol import selection_score
from coldrec.graph.adjacency import normalised_adjacency, spread
from coldrec.graph.losses import in_batch_adaptive_info_nce, labpr, same_group
from coldrec.training.loop import TrainedConfig, TrainingConfig
from coldrec.training.model import TrainedModel
from coldrec.training.negatives import SubclassSampler
from coldrec.training.pairs import HistoryPairs, history_edges
from coldrec.training.saving import Saved
from coldrec.training.scores import scores_at

__all__ = ["GraphConfig", "GraphNet", "GraphRecommender", "LightGCNConfig", "XSimGCLConfig"]


class RankLevel(BaseModel):
    """LAGCL4Rec's rank-level activation (module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_negatives: int = Field(4, gt=0)
    """Negatives per positive."""
    hard_share: float = Field(0.5, ge=0, le=1)
    """Share of them drawn from the positive's group."""
    w_hard: float = Field(2.0, gt=0)
    """Weight of a hard negative's term (LABPR and InfoNCE)."""
    tau_positive: float = Field(0.2, gt=0)
    tau_easy: float = Field(0.2, gt=0)
    tau_hard: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _temperatures_in_order(self) -> RankLevel:
        if not self.tau_hard < self.tau_easy <= self.tau_positive:
            raise ValueError("need tau_hard < tau_easy <= tau_positive")
        return self


class GraphConfig(TrainedConfig):
    """What LightGCN and XSimGCL share."""

    dim: int = Field(64, gt=0)
    n_layers: int = Field(3, gt=0)
    reg: float = Field(1e-4, ge=0)
    """Weight of the batch's squared ego-embedding norms (λ_reg)."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """The text vectors of the cold items' map."""
    ridge: float = Field(1.0, gt=0)
    """Ridge penalty of the text → embedding map of cold items."""
    rank_level: RankLevel | None = None
    """LAGCL4Rec's hard negatives by group (None: the plain backbone)."""
    data_level: bool = False
    """Train on ``coldrec augment``'s augmented interactions (LAGCL4Rec's data level):
    ``coldrec evaluate --augmented DIR``, or the ``augment`` step of ``coldrec run``."""
    disliked_share: float = Field(0.5, ge=0, le=1)
    """The share of a user's negatives drawn from their known dislikes (augmented
    negatives, real low ratings), when they have some."""
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=300, batch_size=2048, lr=1e-3,
                                               weight_decay=0.0, eval_every=5, patience=5)
    )  # fmt: skip

    def build(self) -> GraphRecommender:
        return GraphRecommender(self)


class LightGCNConfig(GraphConfig):
    """LightGCN: the mean of the propagated layers, BPR."""

    kind: Literal["lightgcn"] = "lightgcn"


class XSimGCLConfig(GraphConfig):
    """XSimGCL: noise-perturbed propagation and a cross-layer contrastive loss."""

    kind: Literal["xsimgcl"] = "xsimgcl"
    eps: float = Field(0.2, ge=0)
    """Size of the propagation noise ε."""
    lambda_cl: float = Field(0.2, ge=0)
    cl_temperature: float = Field(0.2, gt=0)
    cl_layer: int = Field(1, gt=0)
    """The layer whose embeddings are contrasted with the final ones."""


class GraphNet(nn.Module):
    """Ego embeddings of the users, then the items, and their propagation."""

    def __init__(self, n_users: int, n_items: int, config: GraphConfig) -> None:
        super().__init__()
        self.n_users, self.n_items, self.config = n_users, n_items, config
        self.ego = nn.Embedding(n_users + n_items, config.dim)
        nn.init.xavier_normal_(self.ego.weight)

    def propagate(
        self, adjacency: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The final embeddings of every node and those of layer ``cl_layer`` (XSimGCL;
        LightGCN: the final ones again). With ``generator`` (training), XSimGCL's layers
        get their noise from it."""
        config = self.config
        xsim = config if isinstance(config, XSimGCLConfig) else None
        layers = [] if xsim else [self.ego.weight]
        current, contrasted = self.ego.weight, self.ego.weight
        for depth in range(1, config.n_layers + 1):
            current = spread(adjacency, current)
            if xsim is not None and generator is not None and xsim.eps > 0:
                noise = torch.rand(current.shape, generator=generator)
                current = current + torch.sign(current) * F.normalize(noise, dim=-1) * xsim.eps
            layers.append(current)
            if xsim is not None and depth == xsim.cl_layer:
                contrasted = current
        final = torch.stack(layers).mean(dim=0)
        return final, final if xsim is None else contrasted


class GraphRecommender(TrainedModel):
    """LightGCN or XSimGCL (``config.kind``) over the full catalogue, a
    :class:`~coldrec.training.model.Trainable`. After ``fit``, ``user_vectors`` and
    ``item_vectors`` hold the final embeddings (cold items' from the text map) and
    scores are their inner products; saved, it keeps them and the map."""

    config: GraphConfig

    def __init__(self, config: GraphConfig) -> None:
        super().__init__(config)
        self.net: GraphNet | None = None
        self.user_vectors = torch.zeros(0, config.dim)
        self.item_vectors = torch.zeros(0, config.dim)
        self.text_map = torch.zeros(0, config.dim)
        """``(text dim + 1) × dim``: a text vector (with a 1 for the bias) to an item
        embedding, fitted on the trained items."""
        self.augmentation: pd.DataFrame | None = None
        """Augmented interactions (``coldrec augment``'s, :func:`read_augmentation`)."""
        self._adjacency: torch.Tensor | None = None
        self._content: np.ndarray | None = None
        self._linked = np.zeros(0, dtype=bool)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if not len(self.user_vectors):
            raise ConfigError("fit the model before scoring")
        full = self.user_vectors[torch.as_tensor(users)] @ self.item_vectors.T
        return scores_at(full.numpy(), items)

    def new_item_vectors(self, content: np.ndarray) -> np.ndarray:
        """Embeddings of items without edges (added after training) from their text."""
        rows = np.hstack([content, np.ones((len(content), 1), np.float32)])
        return (torch.as_tensor(rows, dtype=torch.float32) @ self.text_map).numpy()

    def _start(self, dataset: Dataset, generator: torch.Generator) -> _Trainer:
        users, items = history_edges(dataset)
        if self.augmentation is not None:
            extra = self.augmentation.loc[self.augmentation["kind"] == "positive"]
            users = np.concatenate([users, extra["user_idx"].to_numpy(np.int64)])
            items = np.concatenate([items, extra["item_idx"].to_numpy(np.int64)])
        self._adjacency = normalised_adjacency(users, items, dataset.n_users, dataset.n_items)
        history = HistoryPairs(users, items, dataset.n_items)
        self._linked = history.linked
        if self._content is None or len(self._content) != dataset.n_items:
            self._content = TextEncoder(self.config.encoder).encode(dataset.item_text)
        self.net = GraphNet(dataset.n_users, dataset.n_items, self.config)
        return _Trainer(self, dataset, history, users, items, generator)

    def _finish(self, dataset: Dataset) -> None:
        self.export()
        self._adjacency = None  # rebuilt by each training; not kept in copies

    def export(self) -> None:
        """Final embeddings of every user and item; cold items' from the text map fitted
        (ridge) on the trained items."""
        assert self.net is not None and self._adjacency is not None and self._content is not None
        with torch.no_grad():
            final, _ = self.net.propagate(self._adjacency)
        users, items = final[: self.net.n_users], final[self.net.n_users :].clone()
        content = np.hstack([self._content, np.ones((len(self._content), 1), np.float32)])
        self.text_map = torch.as_tensor(_ridge(content[self._linked], items[self._linked].numpy(),
                                               self.config.ridge))  # fmt: skip
        cold = torch.as_tensor(~self._linked)
        items[cold] = torch.as_tensor(content[~self._linked], dtype=torch.float32) @ self.text_map
        self.user_vectors, self.item_vectors = users, items

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"user_vectors": self.user_vectors, "item_vectors": self.item_vectors,
                "text_map": self.text_map}  # fmt: skip

    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        self.user_vectors, self.item_vectors = tensors["user_vectors"], tensors["item_vectors"]
        self.text_map = tensors["text_map"]


def _ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """``argmin_W ‖xW − y‖² + penalty·‖W‖²`` (float32)."""
    x64 = x.astype(np.float64)
    gram = x64.T @ x64 + penalty * np.eye(x.shape[1])
    return np.linalg.solve(gram, x64.T @ y.astype(np.float64)).astype(np.float32)


class _Trainer:
    """One training of a graph model on one Dataset's history."""

    def __init__(
        self,
        model: GraphRecommender,
        dataset: Dataset,
        history: HistoryPairs,
        users: np.ndarray,
        items: np.ndarray,
        generator: torch.Generator,
    ) -> None:
        assert model.net is not None and model._adjacency is not None
        self.model, self.dataset, self.generator = model, dataset, generator
        self.net: GraphNet = model.net
        self.adjacency = model._adjacency
        self.history = history
        self.disliked = _disliked(model.augmentation, dataset, model._linked)
        self.level = model.config.rank_level
        self.item_group = torch.zeros(dataset.n_items, dtype=torch.long)
        self.user_group = torch.zeros(dataset.n_users, dtype=torch.long)
        self.grouped: SubclassSampler | None = None
        if self.level is not None:
            leaves = build_taxonomy(dataset).item_leaf
            self.item_group = torch.as_tensor(leaves, dtype=torch.long)
            self.user_group = torch.as_tensor(_dominant(users, leaves[items], dataset.n_users))
            self.grouped = SubclassSampler(leaves, self.history.pool.numpy(), self.level.hard_share)
        options = model.config.training
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=options.lr,
                                          weight_decay=options.weight_decay)  # fmt: skip

    def train_epoch(self, epoch: int) -> float:
        return self.history.train_epoch(self.optimiser, self.model.config.training.batch_size,
                                        self.generator, self.batch_loss)  # fmt: skip

    def negatives(self, users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Negatives of each (user, positive) pair among the trained items, never one of
        the user's own: one uniform, or with the rank level ``n_negatives``, some from the
        positive's group (batch × k)."""
        pool = self.history.pool
        if self.grouped is None:
            draw = pool[torch.randint(len(pool), (len(users), 1), generator=self.generator)]
        else:
            assert self.level is not None
            draw = self.grouped.sample_for(positives, self.level.n_negatives, self.generator)
        return self.history.unowned(users, self._with_disliked(users, draw), self.generator)

    def _with_disliked(self, users: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
        """``draw`` with each entry replaced, with probability ``disliked_share``, by one
        of the row's user's known dislikes (for users that have some)."""
        if self.disliked is None:
            return draw
        starts, sizes, items = self.disliked
        share = self.model.config.disliked_share
        swap = (torch.rand(draw.shape, generator=self.generator) < share) & (
            sizes[users] > 0)[:, None]  # fmt: skip
        offsets = (torch.rand(draw.shape, generator=self.generator)
                   * sizes[users].clamp_min(1)[:, None]).long()  # fmt: skip
        picked = items[(starts[users][:, None] + offsets).clamp_max(len(items) - 1)]
        return torch.where(swap, picked, draw)

    def batch_loss(self, users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """BPR or LABPR + ``reg``·squared ego norms (+ XSimGCL's ``lambda_cl``·InfoNCE,
        adaptive with the rank level) of a batch of (user, positive) pairs."""
        config, net, level = self.model.config, self.net, self.level
        negatives = self.negatives(users, positives)
        final, contrasted = net.propagate(self.adjacency, self.generator)
        item_rows = net.n_users
        u, i, j = final[users], final[item_rows + positives], final[item_rows + negatives]
        positive, negative = (u * i).sum(1), torch.einsum("bd,bkd->bk", u, j)
        if level is None:
            ranking = -F.logsigmoid(positive[:, None] - negative).mean()
        else:
            hard = same_group(self.item_group[positives], self.item_group[negatives])
            ranking = labpr(positive, negative, hard, level.w_hard)
        ego = net.ego.weight
        # the negatives' norms count as one negative's, so k negatives keep reg's scale
        squares = (ego[users].pow(2).sum() + ego[item_rows + positives].pow(2).sum()
                   + ego[item_rows + negatives].pow(2).sum() / negatives.shape[1])  # fmt: skip
        reg = squares / len(users)
        loss = ranking + config.reg * reg
        if isinstance(config, XSimGCLConfig) and config.lambda_cl:
            users_in, items_in = torch.unique(users), torch.unique(positives)
            nodes = [(users_in, self.user_group[users_in]),
                     (item_rows + items_in, self.item_group[items_in])]  # fmt: skip
            loss = loss + config.lambda_cl * sum(
                self._contrast(final[n], contrasted[n], groups, config) for n, groups in nodes
            )
        return loss

    def _contrast(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor, config: XSimGCLConfig
    ) -> torch.Tensor:
        level = self.level
        if level is None:
            return _info_nce(a, b, config.cl_temperature)
        return in_batch_adaptive_info_nce(a, b, groups, level.tau_positive, level.tau_hard,
                                          level.tau_easy, level.w_hard)  # fmt: skip

    def validation_score(self) -> float:
        self.model.export()
        return selection_score(self.model, self.dataset)


def _disliked(
    augmentation: pd.DataFrame | None, dataset: Dataset, linked: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Each user's known dislikes among the trained items (augmented negatives, real
    negatives before the user's test), grouped: (start, count) per user and the items."""
    parts = [dataset.known_negatives()]
    if augmentation is not None:
        parts.append(augmentation.loc[augmentation["kind"] == "negative",
                                      ["user_idx", "item_idx"]])  # fmt: skip
    negatives = pd.concat(parts).drop_duplicates().sort_values(["user_idx", "item_idx"])
    negatives = negatives.loc[linked[negatives["item_idx"].to_numpy()]]
    if negatives.empty:
        return None
    users = negatives["user_idx"].to_numpy(np.int64)
    sizes = np.bincount(users, minlength=dataset.n_users)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return (torch.as_tensor(starts), torch.as_tensor(sizes),
            torch.tensor(negatives["item_idx"].to_numpy(np.int64)))  # fmt: skip


def _dominant(users: np.ndarray, groups: np.ndarray, n_users: int) -> np.ndarray:
    """Each user's most frequent group among ``groups`` (aligned with ``users``; -1:
    none), the smaller id among ties; -1 for a user without a grouped item."""
    keep = groups >= 0
    out = np.full(n_users, -1, dtype=np.int64)
    if not keep.any():
        return out
    frame = np.stack([users[keep], groups[keep]])
    pairs, counts = np.unique(frame, axis=1, return_counts=True)
    order = np.lexsort((pairs[1], -counts, pairs[0]))  # per user: most frequent, then smallest
    first = np.unique(pairs[0][order], return_index=True)[1]
    out[pairs[0][order][first]] = pairs[1][order][first]
    return out


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of row ``k`` of ``a`` against row ``k`` of ``b`` among all rows of ``b``."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(a)))
