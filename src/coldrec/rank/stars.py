"""STARS (Chen, Zhu & Li, "Semantic Tokens with Augmented Representations for
Recommendation at Scale"): a causal transformer over content-built item tokens, with a
popularity prior, subclass-aware negatives, calendar context and two user vectors.

- **Item token** ``v_i = [e_i + Δ_i ; g_attr(t_i)]``: the text part is coldrec's delta
  item vector (:class:`~coldrec.rank.items.DeltaItems`, ``map(c_i) + Δ_i`` with the
  MiniLM vector ``c_i``, through a trained linear map), the tag part a linear map of
  the item's multi-hot attribute tags. ``delta: null`` gives ID vectors instead ("no
  text vectors": an item never trained keeps a zero ID part, so it is scored by its tags
  alone); without tags the text part takes the whole width. Δ is frozen for the first
  ``delta_frozen_epochs`` epochs, then trained at ``delta_lr_scale`` of the learning
  rate. Cold items keep ``Δ = 0`` or take their warm neighbours' by the transfer.
- **Context** (``context``): day of week, week of year (and hour, when the data have
  times within the day) of each interaction, its engagement (rating bucket) and the days
  since the previous interaction (bucketed) are added to its token, with the position.
  The **context offset** ``o_t = W_ctx·e_time(t)`` of a time ``t`` is added to the user
  vectors: in training ``t`` is the target's own time, in scoring the request time (in
  evaluation the user's first test interaction), so serving shifts with the calendar
  without retraining.
- **[USER] token and dual vectors** (``user_token``): a learned token appended after the
  history, plus the embeddings of the user's static features when the data have them
  (:meth:`~coldrec.data.dataset.Dataset.user_features`: MovieLens' age bucket, gender,
  occupation; ``user_features: false`` leaves them out). The network is causal, so the
  token reads the whole history while no item position reads it (a prepended token
  would see only itself); ``h_next`` is the last item position's output, ``h_gen`` the
  token's, each through its own head into the item space. ``scoring``: ``next`` (NI),
  ``general`` (GI) or ``round_robin`` (RR: the two lists interleaved without repeats,
  :func:`~coldrec.rank.interleave.round_robin`).
- **Objective**: sampled softmax over logits ``z_k = u·e_k + b_k`` with the fixed prior
  ``b_k = −γ log π_k`` (:func:`~coldrec.rank.prior.popularity_prior`; kept at scoring,
  so cold items get the largest prior), every position's next item against the
  sequence's uniform negatives and ``subclass_negatives`` of its own from the target's
  taxonomy leaf (:class:`~coldrec.training.negatives.SubclassSampler`); ``h_gen`` scores the
  sequence's last target the same way. Optional ``λ_neg·L_neg`` (logistic loss pushing
  negatives' logits down) and ``λ_aux·L_aux`` (in-batch InfoNCE between a user's
  ``h_gen`` and last ``h_next``). AdamW with linear warm-up and cosine decay over
  ``training.epochs``, gradient clipping.

Not yet: pseudo labels (``L_sim``/``L_pair``), candidates re-ranking through ``coldrec rank``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.data.taxonomy import build_taxonomy
from coldrec.encode import TextEncoder
from coldrec.errors import ConfigError, DataError
from coldrec.eval.protocol import selection_score
from coldrec.rank.batching import length_batches, padded_sequences, target_weights
from coldrec.rank.interleave import round_robin
from coldrec.rank.items import INIT_STD, DeltaConfig, DeltaItems, IdItems
from coldrec.rank.network import SequentialConfig
from coldrec.rank.prior import popularity_prior, unseen_prior
from coldrec.rank.sasrec import attention_mask
from coldrec.rank.sequential import SequentialRecommender
from coldrec.supervision.labels import LabelFiles
from coldrec.training.negatives import SubclassSampler, UniformSampler
from coldrec.training.saving import Saved
from coldrec.training.scores import scores_at

__all__ = ["Side", "StarsConfig", "StarsNet", "StarsRecommender"]

DAY = 86_400
RECENCY_BUCKETS = 12
"""Days since the previous interaction: 0, 1, 2–3, 4–7, … (log2), the last open-ended."""
SIDE = ("day", "week", "hour", "engagement", "recency")
"""The per-interaction context columns (each 0 = padding or unknown)."""
SIZES = {"day": 7, "week": 53, "hour": 24, "engagement": 6, "recency": RECENCY_BUCKETS}


class StarsConfig(SequentialConfig):
    """STARS settings (module doc); every component can be switched off for ablation."""

    kind: Literal["stars"] = "stars"
    n_layers: int = Field(2, gt=0)
    n_heads: int = Field(1, gt=0)
    delta: DeltaConfig | None = Field(default_factory=DeltaConfig)
    """The text part of the item token (a trained linear map: on Beauty the frozen PCA
    map left it a third of the tag part's norm, warm Recall@20 0.026 against 0.037);
    ``null``: ID vectors (the "no text" ablation)."""
    tag_dim: int = Field(16, gt=0)
    """Width of the tag part of the item token (with tags)."""
    context: bool = True
    """Calendar, engagement and recency embeddings and the context offset."""
    user_token: bool = True
    """The [USER] token and its vector ``h_gen``; without it one vector (``h_next``)."""
    user_features: bool = True
    """Add the embeddings of the user's static features (if the data have any) to the
    [USER] token."""
    scoring: Literal["next", "general", "round_robin"] = "next"
    round_robin_depth: int = Field(100, gt=0)
    """Items each user's round-robin list holds (the rest score NaN)."""
    gamma: float = Field(0.0, ge=0)
    """Strength of the popularity prior (0: plain softmax)."""
    prior_smoothing: float = Field(1.0, gt=0)
    subclass_negatives: int = Field(20, ge=0)
    """Negatives per target drawn from its taxonomy leaf (besides ``n_negatives``
    uniform ones per sequence); 0: uniform only."""
    lambda_neg: float = Field(0.0, ge=0)
    lambda_aux: float = Field(0.0, ge=0)
    aux_temperature: float = Field(0.1, gt=0)
    warmup_share: float = Field(0.05, ge=0, lt=1)
    """Share of the scheduled steps (``training.epochs``) spent warming up."""
    clip_norm: float | None = Field(1.0, gt=0)
    delta_frozen_epochs: int = Field(2, ge=0)
    delta_lr_scale: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _two_vectors_need_the_token(self) -> Self:
        if self.scoring != "next" and not self.user_token:
            raise ValueError(f"scoring {self.scoring!r} needs user_token")
        if self.loss != "sampled":
            raise ValueError("stars trains with the sampled softmax (loss: sampled)")
        return self

    def network(  # type: ignore[override]  # not a SequenceNet: it reads context too
        self,
        n_items: int,
        content: np.ndarray | None = None,
        tags: np.ndarray | None = None,
        hours: bool = False,
        known: np.ndarray | None = None,
        feature_sizes: tuple[int, ...] = (),
    ) -> StarsNet:
        """A fresh network (``tags``: items × vocabulary; ``hours``: whether the data
        have times within the day; ``known``: the items with training interactions;
        ``feature_sizes``: the number of values of each static user feature)."""
        return StarsNet(n_items, self, content, tags, hours, known, feature_sizes)

    def build(self) -> StarsRecommender:
        return StarsRecommender(self)


class StarsNet(nn.Module):
    """Item tokens, context embeddings, a causal transformer, the [USER] token and the
    two heads (module doc). Item ids are shifted by one (0 = padding)."""

    tags: torch.Tensor
    prior: torch.Tensor

    def __init__(
        self,
        n_items: int,
        config: StarsConfig,
        content: np.ndarray | None,
        tags: np.ndarray | None,
        hours: bool,
        known: np.ndarray | None,
        feature_sizes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.n_items, self.dim, self.config, self.hours = n_items, config.dim, config, hours
        tag_dim = config.tag_dim if tags is not None else 0
        if tag_dim >= config.dim:
            raise ConfigError(f"tag_dim ({tag_dim}) must be below dim ({config.dim})")
        text_dim = config.dim - tag_dim
        self.items: IdItems | DeltaItems
        if config.delta is None:
            self.items = IdItems(n_items + 1, text_dim)
        elif content is None or len(content) != n_items:
            raise ValueError("delta item vectors need one content vector per item")
        else:
            self.items = DeltaItems(content, text_dim, 0, config.delta)
        table = np.zeros((n_items + 1, 0 if tags is None else tags.shape[1]), np.float32)
        if tags is not None:
            table[1:] = tags
        self.register_buffer("tags", torch.as_tensor(table))
        self.attr = nn.Linear(table.shape[1], tag_dim, bias=False) if tag_dim else None
        self.register_buffer("prior", torch.zeros(n_items))
        self.positions = nn.Embedding(config.max_len + 1, config.dim)
        self.side = None
        if config.context:
            self.side = nn.ModuleDict({name: nn.Embedding(size + 1, config.dim, padding_idx=0)
                                       for name, size in SIZES.items()})  # fmt: skip
        self.offset = nn.Linear(config.dim, config.dim, bias=False) if config.context else None
        self.user = nn.Parameter(torch.zeros(config.dim)) if config.user_token else None
        self.feature_sizes = feature_sizes if self.user is not None else ()
        self.features = nn.ModuleList([nn.Embedding(size + 1, config.dim, padding_idx=0)
                                       for size in self.feature_sizes])  # fmt: skip
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(config.dim, config.n_heads, config.dim, config.dropout,
                                           batch_first=True, norm_first=True)  # fmt: skip
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.next_head = nn.Linear(config.dim, config.dim)
        self.gen_head = nn.Linear(config.dim, config.dim) if config.user_token else None
        self._reset(known)

    def _reset(self, known: np.ndarray | None) -> None:
        tables: list[nn.Embedding] = [self.positions, *self.features]
        if self.side is not None:
            tables += [table for table in self.side.values() if isinstance(table, nn.Embedding)]
        for table in tables:
            nn.init.normal_(table.weight, std=INIT_STD)
            if table.padding_idx is not None:
                with torch.no_grad():
                    table.weight[table.padding_idx].zero_()
        if self.user is not None:
            nn.init.normal_(self.user, std=INIT_STD)
        self.items.reset()
        if isinstance(self.items, IdItems) and known is not None:
            with torch.no_grad():  # an item never trained is scored by its tags alone
                self.items.weight[1:][~torch.as_tensor(known)] = 0.0

    def table(self) -> torch.Tensor:
        """The token of every row (padding, then the catalogue)."""
        text = self.items.weight[: self.n_items + 1]
        if self.attr is None:
            return text
        return torch.cat([text, self.attr(self.tags)], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """Output vectors of the catalogue's items, in Dataset item order."""
        return self.table()[1:]

    def encode(
        self,
        sequences: torch.Tensor,
        side: dict[str, torch.Tensor],
        features: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states of the item positions and, with the [USER] token, of the token
        (one more column at the end): batch × (length [+ 1]) × dim. ``features``: the
        users' static feature codes (batch × features; 0 = unknown); ``table``: the
        tokens (:meth:`table`) when the caller has them already."""
        x = (self.table() if table is None else table)[sequences] * math.sqrt(self.dim)
        if self.side is not None:
            for name in SIDE:  # a fixed order: the sums are then the same bits
                if name != "hour" or self.hours:
                    x = x + self.side[name](side[name])
        real = sequences > 0
        if self.user is not None:
            token = self.user.expand(len(x), -1)
            if self.feature_sizes and features is not None:
                token = token + sum(table(features[:, column])
                                    for column, table in enumerate(self.features))  # fmt: skip
            x = torch.cat([x, token[:, None]], dim=1)
            real = torch.cat([real, real.new_ones(len(x), 1)], dim=1)
        length = x.shape[1]
        x = x + self.positions.weight[-length:]
        hidden = self.blocks(self.dropout(x), mask=attention_mask(real, self.config.n_heads))
        return self.norm(hidden)

    def user_vectors(
        self, hidden: torch.Tensor, when: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``h_next`` at every item position (batch × length × dim) and ``h_gen`` (batch
        × dim, or None), each with the context offset of ``when`` (per position for
        ``h_next``, the last for ``h_gen``) added."""
        items = hidden[:, :-1] if self.user is not None else hidden
        h_next = self.next_head(items)
        h_gen = self.gen_head(hidden[:, -1]) if self.gen_head is not None else None
        if self.offset is not None and when is not None:
            offset = self.context_offset(when)
            h_next = h_next + (offset if offset.dim() == 3 else offset[:, None])
            if h_gen is not None:
                h_gen = h_gen + (offset[:, -1] if offset.dim() == 3 else offset)
        return h_next, h_gen

    def context_offset(self, when: dict[str, torch.Tensor]) -> torch.Tensor:
        """``o_t = W_ctx·e_time(t)`` of calendar ids (``day``, ``week``, ``hour``)."""
        assert self.side is not None and self.offset is not None
        time = sum(self.side[name](when[name]) for name in ("day", "week", "hour")
                   if name != "hour" or self.hours)  # fmt: skip
        return self.offset(time)

    def logits(
        self, users: torch.Tensor, items: torch.Tensor, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``u·e_k + b_k`` of each user row with each item (shifted ids) of its row."""
        vectors = (self.table() if table is None else table)[items]
        return torch.einsum("...d,...kd->...k", users, vectors) + self._bias(items)

    def _bias(self, shifted: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.prior.new_zeros(1), self.prior])[shifted]


class Side:
    """The context columns of interactions (:data:`SIDE`), as padded tensors aligned
    with item sequences, and the calendar of request times."""

    def __init__(self, calendar: bool, hours: bool) -> None:
        self.calendar = calendar
        """Whether times are dates (not positions of order-only data)."""
        self.hours = calendar and hours
        """Whether the times have hours (not all at midnight)."""

    @classmethod
    def of(cls, dataset: Dataset) -> Side:
        """The calendar of a Dataset's times."""
        times = dataset.interactions["ts"].to_numpy(np.int64)
        return cls(not dataset.meta.get("order_only", False), bool((times % DAY != 0).any()))

    def calendar_ids(self, ts: np.ndarray) -> dict[str, np.ndarray]:
        """``day``, ``week``, ``hour`` ids (1-based; 0 without a calendar) of times."""
        ts = np.asarray(ts, dtype=np.int64)
        if not self.calendar:
            return {name: np.zeros(len(ts), np.int64) for name in ("day", "week", "hour")}
        days = ts // DAY
        dates = days.astype("datetime64[D]")
        day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
        hours = (ts % DAY) // 3600 + 1 if self.hours else np.zeros(len(ts), np.int64)
        return {"day": (days + 3) % 7 + 1,  # 1970-01-01 was a Thursday; Monday = 1
                "week": np.minimum(day_of_year // 7, 52) + 1, "hour": hours}  # fmt: skip

    def columns(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every context column of interaction ``rows`` (one user's, in time order)."""
        ts = rows["ts"].to_numpy(np.int64)
        rating = rows["rating"].to_numpy(np.float64)
        engagement = np.where(np.isfinite(rating), np.clip(np.round(rating), 0, 5), -1) + 1
        gaps = np.diff(ts, prepend=ts[:1]) // DAY if self.calendar else np.zeros(len(ts))
        recency = np.minimum(np.ceil(np.log2(np.maximum(gaps, 0) + 1)), RECENCY_BUCKETS - 1)
        return {**self.calendar_ids(ts), "engagement": engagement.astype(np.int64),
                "recency": recency.astype(np.int64) + 1}  # fmt: skip


def _with_prior(vectors: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``[v ; b]`` rows, so that ``[h ; 1]·[v ; b] = h·v + b``."""
    return np.concatenate([vectors, prior[:, None]], axis=1).astype(np.float32)


def _calendar(side: Side, at: int | None) -> dict[str, torch.Tensor] | None:
    """The calendar ids of one time, as a batch of one (None: none)."""
    if at is None:
        return None
    return {name: torch.as_tensor(ids) for name, ids in side.calendar_ids(np.array([at])).items()}


def _user_rows(dataset: Dataset, splits: tuple[str, ...]) -> list[pd.DataFrame]:
    """Each user's interactions in ``splits``, in time order."""
    rows = dataset.interactions.loc[dataset.interactions["split"].isin(splits)]
    groups = dict(tuple(rows.groupby("user_idx", sort=False)))
    empty = rows.iloc[:0]
    return [groups.get(u, empty) for u in range(dataset.n_users)]


class StarsRecommender(SequentialRecommender):
    """STARS over the full catalogue, a :class:`~coldrec.training.model.Trainable`.

    ``tags``: the items' multi-hot attribute tags (items × vocabulary; from ``coldrec
    tag``), none for the "no tags" ablation. Saved, it keeps the network (tags and prior
    included), the history with its context columns and the request times.
    """

    config: StarsConfig

    def __init__(self, config: StarsConfig, tags: np.ndarray | None = None) -> None:
        super().__init__(config, LabelFiles(), None)
        self.tags = tags
        self.net: StarsNet | None = None  # type: ignore[assignment]
        self.side: dict[str, torch.Tensor] = {}
        """The context columns of :attr:`history`, aligned with it."""
        self.request: dict[str, torch.Tensor] = {}
        """Calendar ids of each user's request time (first test interaction, else the
        last history one)."""
        self.user_codes = torch.zeros(0, 0, dtype=torch.long)
        """Each user's static feature codes (users × features; none without features)."""
        self.vocabulary: list[str] = []
        """The tag of each column of :attr:`tags` (new items are tagged from it)."""
        self.context = Side(calendar=True, hours=False)
        """How the model reads times (set from the data it trains on)."""

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        rows = torch.as_tensor(users)
        when = {name: values[rows] for name, values in self.request.items()}
        with torch.no_grad():
            h_next, h_gen = self.vectors(self.history[rows], self._side(rows), when,
                                         self._codes(rows))  # fmt: skip
            table = self.net.item_vectors()
            prior = self.net.prior
            if self.config.scoring == "next" or h_gen is None:
                return scores_at((h_next @ table.T + prior).numpy(), items)
            general = (h_gen @ table.T + prior).numpy()
            if self.config.scoring == "general":
                return scores_at(general, items)
            return scores_at(self._interleaved((h_next @ table.T + prior).numpy(), general,
                                               users), items)  # fmt: skip

    def vectors(
        self,
        history: torch.Tensor,
        side: dict[str, torch.Tensor],
        when: dict[str, torch.Tensor] | None,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``h_next`` (of the last position) and ``h_gen`` of padded histories, with the
        context offset of the calendar ids ``when`` (none: no offset) and the users'
        static ``features`` in the [USER] token."""
        assert self.net is not None
        self.net.eval()
        h_next, h_gen = self.net.user_vectors(self.net.encode(history, side, features), when)
        return h_next[:, -1], h_gen

    def _interleaved(self, first: np.ndarray, second: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Scores whose order is the round-robin list of the two score matrices (history
        items left out first), descending from the list's length; NaN past it."""
        depth = min(self.config.round_robin_depth, first.shape[1])
        seen = self.history[torch.as_tensor(users)].numpy() - 1
        lists = []
        for scores in (first, second):
            masked = scores.copy()
            rows = np.repeat(np.arange(len(users)), seen.shape[1])
            keep = seen.ravel() >= 0
            masked[rows[keep], seen.ravel()[keep]] = -np.inf
            lists.append(np.argsort(-masked, axis=1, kind="stable")[:, :depth])
        merged = round_robin(lists[0], lists[1], depth)
        out = np.full(first.shape, np.nan, dtype=np.float32)
        ranks = np.arange(depth, 0, -1, dtype=np.float32)
        for row, items in enumerate(merged):
            taken = items >= 0
            out[row, items[taken]] = ranks[: taken.sum()]
        return out

    def _side(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: values[rows] for name, values in self.side.items()}

    def _codes(self, rows: torch.Tensor) -> torch.Tensor | None:
        return self.user_codes[rows] if self.user_codes.shape[1] else None

    def history_vectors(
        self, items: np.ndarray, ts: np.ndarray | None, at: int | None, user: int | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``h_next`` and ``h_gen`` (None without the token) of one history at time ``at``
        (Unix seconds: its context offset; None: no offset): ``items`` Dataset item ids
        oldest first (items
        added after training have no token and are left out), ``ts`` their times (None:
        their context unknown), ``user`` a trained user's row (its static features)."""
        items = np.asarray(items, dtype=np.int64)
        known = items < len(self.item_interactions)
        rows = pd.DataFrame({"ts": np.zeros(int(known.sum()), np.int64) if ts is None else
                             np.asarray(ts, dtype=np.int64)[known], "rating": np.nan})  # fmt: skip
        columns = self.context.columns(rows)
        if ts is None:
            columns = {name: np.zeros_like(values) for name, values in columns.items()}
        length = self.config.max_len
        history = padded_sequences([items[known]], length)
        context = {name: padded_sequences([values], length, shift=0)
                   for name, values in columns.items()}  # fmt: skip
        codes = self._codes(torch.as_tensor([user])) if user is not None else None
        if codes is None and self.user_codes.shape[1]:
            codes = torch.zeros(1, self.user_codes.shape[1], dtype=torch.long)
        with torch.no_grad():
            h_next, h_gen = self.vectors(history, context, _calendar(self.context, at), codes)
        return h_next[0].numpy(), None if h_gen is None else h_gen[0].numpy()

    def stored_vectors(self, user: int, at: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``h_next`` and ``h_gen`` of a trained user's stored history (with its context
        columns, as :meth:`score` reads it) at time ``at``."""
        rows = torch.as_tensor([user])
        with torch.no_grad():
            when = _calendar(self.context, at)
            h_next, h_gen = self.vectors(self.history[rows], self._side(rows), when,
                                         self._codes(rows))  # fmt: skip
        return h_next[0].numpy(), None if h_gen is None else h_gen[0].numpy()

    def tag_rows(self, tags: list[list[str]]) -> np.ndarray:
        """Multi-hot rows of tag lists over :attr:`vocabulary` (a tag outside it is a
        DataError naming it)."""
        column = {tag: j for j, tag in enumerate(self.vocabulary)}
        out = np.zeros((len(tags), len(self.vocabulary)), dtype=np.float32)
        for row, names in enumerate(tags):
            unknown = [name for name in names if name not in column]
            if unknown:
                raise DataError(f"tag(s) {unknown} are not in the model's vocabulary "
                                f"({len(self.vocabulary)} tags)")  # fmt: skip
            out[row, [column[name] for name in names]] = 1.0
        return out

    def item_table(self) -> np.ndarray:
        """Every item's token with its prior as one more coordinate, ``[v_k ; b_k]``, so
        that a query ``[h ; 1]`` (:meth:`contexts_of`) scores ``h·v_k + b_k``."""
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        with torch.no_grad():
            return _with_prior(self.net.item_vectors().numpy(), self.net.prior.numpy())

    def contexts_of(self, sequences: list[np.ndarray], at: int | None = None) -> np.ndarray:
        """Queries ``[h_next ; 1]`` of item sequences (their context unknown) with the
        context offset of time ``at`` (none: no offset), against :meth:`item_table`."""
        queries = [np.append(self.history_vectors(items, None, at, None)[0], np.float32(1.0))
                   for items in sequences]  # fmt: skip
        return np.array(queries, dtype=np.float32)

    def new_item_vectors(self, content: np.ndarray, tags: np.ndarray | None = None) -> np.ndarray:
        """``[v ; b]`` rows (:meth:`item_table`) of items added after training: the text
        part ``map(c) + Δ`` (Δ by the transfer, none without one; zero for an ID model,
        whose untrained rows are zero), the tag part of ``tags`` (multi-hot rows over
        :attr:`vocabulary`; none: no tags) and the prior of an item never seen."""
        if self.net is None:
            raise ConfigError("fit the model before scoring")
        if isinstance(self.net.items, DeltaItems):
            text = super().new_item_vectors(content)
        else:
            text = np.zeros((len(content), self.net.items.weight.shape[1]), dtype=np.float32)
        if self.net.attr is not None:
            hot = np.zeros((len(content), self.net.tags.shape[1]), np.float32) if (
                tags is None) else tags  # fmt: skip
            with torch.no_grad():
                tag_part = self.net.attr(torch.as_tensor(hot, dtype=torch.float32)).numpy()
            text = np.concatenate([text, tag_part], axis=1)
        prior = unseen_prior(self.item_interactions.numpy(), self.config.gamma,
                             self.config.prior_smoothing)  # fmt: skip
        return _with_prior(text, np.full(len(content), prior, dtype=np.float32))

    def _start(self, dataset: Dataset, generator: torch.Generator) -> StarsTrainer:  # type: ignore[override]
        if self.tags is not None and len(self.tags) != dataset.n_items:
            raise ConfigError(f"tags must have one row per item ({dataset.n_items}), got "
                              f"{len(self.tags)}")  # fmt: skip
        side = self.context = Side.of(dataset)
        rows = _user_rows(dataset, HISTORY_SPLITS)
        sequences = [r["item_idx"].to_numpy(np.int64) for r in rows]
        columns = [side.columns(r) for r in rows]
        length = self.config.max_len
        self.history = padded_sequences(sequences, length)
        self.side = {name: padded_sequences([c[name] for c in columns], length, shift=0)
                     for name in SIDE}  # fmt: skip
        self.request = self._request_times(dataset, side, rows)
        use = self.config.user_token and self.config.user_features
        self.user_codes = torch.as_tensor(dataset.user_features() if use else
                                          np.zeros((dataset.n_users, 0), np.int64))  # fmt: skip
        counts = np.bincount(np.concatenate(sequences), minlength=dataset.n_items)
        self.item_interactions = torch.as_tensor(counts)
        self.item_label_rows = torch.zeros_like(self.item_interactions)
        self.trained_items = self.item_interactions > 0
        content = None
        if self.config.delta is not None:
            content = TextEncoder(self.config.delta.encoder).encode(dataset.item_text)
        self.net = self.config.network(dataset.n_items, content, self.tags, side.hours,
                                       known=counts > 0, feature_sizes=self._sizes())  # fmt: skip
        prior = popularity_prior(counts, self.config.gamma, self.config.prior_smoothing)
        self.net.prior.copy_(torch.as_tensor(prior))
        self._fitted_residuals = None
        return StarsTrainer(self, dataset, sequences, columns, counts > 0, generator)

    def _sizes(self) -> tuple[int, ...]:
        """The number of values of each static user feature (its largest code)."""
        return tuple(int(column.max()) for column in self.user_codes.T)

    @staticmethod
    def _request_times(
        dataset: Dataset, side: Side, history: list[pd.DataFrame]
    ) -> dict[str, torch.Tensor]:
        test = dataset.split("test").drop_duplicates("user_idx")
        ts = np.array([r["ts"].iloc[-1] if len(r) else 0 for r in history], dtype=np.int64)
        ts[test["user_idx"].to_numpy()] = test["ts"].to_numpy(np.int64)
        return {name: torch.as_tensor(ids) for name, ids in side.calendar_ids(ts).items()}

    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        net = {f"net.{name}": value for name, value in self.net.state_dict().items()}
        side = {f"side.{name}": value for name, value in self.side.items()}
        request = {f"request.{name}": value for name, value in self.request.items()}
        return {**net, **side, **request, "history": self.history,
                "user_codes": self.user_codes,
                "trained_items": self.trained_items,
                "item_interactions": self.item_interactions,
                "item_label_rows": self.item_label_rows}  # fmt: skip

    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        content = tensors.get("net.items.content")
        tags = tensors["net.tags"][1:].numpy()
        self.tags = tags if tags.shape[1] else None
        hours = bool(saved.fields.get("hours", False))
        self.context = Side(bool(saved.fields.get("calendar", True)), hours)
        vectors = None if content is None else content.numpy()
        self.user_codes = tensors["user_codes"]
        self.vocabulary = list(saved.fields.get("vocabulary", []))
        self.net = self.config.network(len(saved.item_ids), vectors, self.tags, hours,
                                       feature_sizes=self._sizes())  # fmt: skip
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()
        self.side = {k[5:]: v for k, v in tensors.items() if k.startswith("side.")}
        self.request = {k[8:]: v for k, v in tensors.items() if k.startswith("request.")}
        self.history, self.trained_items = tensors["history"], tensors["trained_items"]
        self.item_interactions = tensors["item_interactions"]
        self.item_label_rows = tensors["item_label_rows"]

    def _extra(self) -> dict[str, Any]:
        hours = {"hours": self.net.hours} if self.net is not None else {}
        return {**super()._extra(), **hours, "calendar": self.context.calendar,
                "vocabulary": self.vocabulary}  # fmt: skip


class StarsTrainer:
    """One training of a STARS network on one Dataset's history (module doc)."""

    def __init__(
        self,
        model: StarsRecommender,
        dataset: Dataset,
        sequences: list[np.ndarray],
        columns: list[dict[str, np.ndarray]],
        in_history: np.ndarray,
        generator: torch.Generator,
    ) -> None:
        assert model.net is not None
        self.model, self.net, self.dataset = model, model.net, dataset
        self.config, self.generator = model.config, generator
        length = self.config.max_len + 1
        usable = [u for u, s in enumerate(sequences) if len(s) >= 2]
        self.items = padded_sequences([sequences[u] for u in usable], length)
        self.side = {name: padded_sequences([columns[u][name] for u in usable], length, shift=0)
                     for name in SIDE}  # fmt: skip
        self.lengths = torch.as_tensor([min(len(sequences[u]), length) for u in usable])
        self.codes = model._codes(torch.as_tensor(usable, dtype=torch.long))
        pool = np.flatnonzero(in_history)
        self.uniform = UniformSampler(torch.as_tensor(pool))
        self.subclass = None
        if self.config.subclass_negatives:
            leaves = build_taxonomy(dataset).item_leaf
            self.subclass = SubclassSampler(leaves, pool, share=1.0)
        self.optimiser = self._optimiser()
        options = self.config.training
        steps = options.epochs * math.ceil(len(usable) / options.batch_size)
        warmup = max(1, round(self.config.warmup_share * steps))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, lambda step: _warmup_cosine(step, warmup, steps)
        )

    def _optimiser(self) -> torch.optim.Optimizer:
        options = self.config.training
        delta = [self.net.items.delta] if isinstance(self.net.items, DeltaItems) else []
        rest = [p for p in self.net.parameters() if all(p is not d for d in delta)]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if delta:
            groups.append({"params": delta, "lr": options.lr * self.config.delta_lr_scale})
        return torch.optim.AdamW(groups, lr=options.lr, weight_decay=options.weight_decay)

    def train_epoch(self, epoch: int) -> float:
        if isinstance(self.net.items, DeltaItems):
            self.net.items.delta.requires_grad_(epoch > self.config.delta_frozen_epochs)
        batches = length_batches(self.lengths, self.config.training.batch_size, self.generator)
        weights = target_weights([self.items[rows, :-1] for rows in batches])  # inputs > 0
        total = 0.0
        for rows, weight in zip(batches, weights, strict=True):
            loss = self.batch_loss(rows, weight)
            self.optimiser.zero_grad()
            loss.backward()
            if self.config.clip_norm is not None:
                nn.utils.clip_grad_norm_(self.net.parameters(), self.config.clip_norm)
            self.optimiser.step()
            self.schedule.step()
            total += loss.item()
        return total / len(batches)

    def batch_loss(self, rows: torch.Tensor, weight: float) -> torch.Tensor:
        """``weight·L_main`` (next items and, with the token, the last target from
        ``h_gen``) plus the optional ``L_neg`` and ``L_aux`` of one batch."""
        config, net = self.config, self.net
        width = min(self.items.shape[1], int((self.items[rows] > 0).sum(dim=1).max()) + 1)
        items = self.items[rows, -width:]
        side = {name: values[rows, -width:] for name, values in self.side.items()}
        inputs, targets = items[:, :-1], torch.where(items[:, :-1] > 0, items[:, 1:], 0)
        target_side = {name: values[:, 1:] for name, values in side.items()}
        table = net.table()  # once per batch: it maps every item's text and tags
        hidden = net.encode(inputs, {name: values[:, :-1] for name, values in side.items()},
                            None if self.codes is None else self.codes[rows], table)  # fmt: skip
        h_next, h_gen = net.user_vectors(hidden, target_side)
        shared = self.uniform.sample(rows, config.n_negatives, self.generator) + 1
        real = targets > 0
        positives = targets[real]
        users = h_next[real]
        # the sequence's shared negatives scored per sequence, not gathered per position
        per_sequence = torch.einsum("bld,bnd->bln", h_next, table[shared])
        parts = [net.logits(users, positives[:, None], table),
                 (per_sequence + net._bias(shared)[:, None, :])[real]]  # fmt: skip
        if self.subclass is not None:
            own = self.subclass.sample_for(positives - 1, config.subclass_negatives,
                                           self.generator) + 1  # fmt: skip
            parts.append(net.logits(users, own, table))
        logits = torch.cat(parts, dim=1)
        loss = weight * F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
        if h_gen is not None:
            last = targets[:, -1]
            gen_logits = net.logits(h_gen, torch.cat([last[:, None], shared], dim=1), table)
            loss = loss + F.cross_entropy(gen_logits, torch.zeros(len(last), dtype=torch.long))
            if config.lambda_aux:
                loss = loss + config.lambda_aux * _info_nce(h_gen, h_next[:, -1],
                                                            config.aux_temperature)  # fmt: skip
        if config.lambda_neg:
            loss = loss + config.lambda_neg * F.softplus(logits[:, 1:]).mean()
        return loss

    def validation_score(self) -> float:
        return selection_score(self.model, self.dataset)


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay
    to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """In-batch InfoNCE: row ``i`` of ``a`` should match row ``i`` of ``b``."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(a)))
