"""What the item cold-start content models share: a BPR-MF teacher fitted on the same
history, the items' text vectors as content, training pair by pair, and scoring by the
inner product of user and item vectors, warm and cold items in one list.

The teacher is fitted (its epochs chosen on its own validation carve-out) on each Dataset
the model trains on, the validation view included, so the model's own epoch choice never
sees a teacher that learned the held-out interactions. Its seed is drawn from the model's
generator, and the last few fitted teachers are kept for the process
(:func:`shared_teacher`): the content models of one run, seeded alike, share theirs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from coldrec.coldstart.mf import BPRMF, BPRMFConfig, PairTrainer, pair_training
from coldrec.data.dataset import Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.errors import ConfigError
from coldrec.training.loop import TrainedConfig, TrainingConfig
from coldrec.training.model import TrainedModel
from coldrec.training.pairs import HistoryPairs, history_edges
from coldrec.training.saving import Saved
from coldrec.training.scores import scores_at

__all__ = ["ContentModel", "ContentModelConfig", "mlp"]


class ContentModelConfig(TrainedConfig):
    """What the content models share."""

    backbone: BPRMFConfig = Field(default_factory=BPRMFConfig)
    """The warm teacher (models that use one); its ``dim`` is the model's."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """How item text becomes the content vectors."""
    training: TrainingConfig = Field(default_factory=pair_training)

    @model_validator(mode="after")
    def _batches_of_two(self) -> ContentModelConfig:
        if self.training.batch_size < 2:
            raise ValueError("training.batch_size must be at least 2 (batch normalisation)")
        return self


_TEACHERS: OrderedDict[tuple[str, str, int], BPRMF] = OrderedDict()
_TEACHERS_KEPT = 4
"""Fitted teachers by (config, data hash, seed); each model trains on two Datasets (the
validation view and the whole history), so four keep two seeds' worth."""


def shared_teacher(config: BPRMFConfig, dataset: Dataset, seed: int) -> BPRMF:
    """A copy of the BPR-MF of ``config`` fitted on ``dataset`` from ``seed``: fitted on the
    first call, a kept one's copy on the next calls with the same arguments."""
    users, items = history_edges(dataset)
    edges = hashlib.sha256(users.tobytes() + items.tobytes()).hexdigest()
    key = (config.model_dump_json(), dataset.data_hash() + edges, seed)
    if key not in _TEACHERS:
        generator = torch.Generator().manual_seed(seed)
        _TEACHERS[key] = BPRMF(config).fit(dataset, generator=generator)
        while len(_TEACHERS) > _TEACHERS_KEPT:
            _TEACHERS.popitem(last=False)
    return copy.deepcopy(_TEACHERS[key])


def mlp(
    sizes: list[int], activation: Callable[[], nn.Module] = nn.Tanh, batch_norm: bool = False
) -> nn.Sequential:
    """Linear layers of ``sizes``, each but the last followed by a batch normalisation
    (with ``batch_norm``) and ``activation``."""
    layers: list[nn.Module] = []
    for i, (size_in, size_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(size_in, size_out))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(size_out)] if batch_norm else []
            layers.append(activation())
    return nn.Sequential(*layers)


class ContentModel(TrainedModel):
    """A content model over a BPR-MF teacher, a
    :class:`~coldrec.training.model.Trainable`. A subclass builds its network
    (:meth:`_network`), the loss of a batch of (user, positive) pairs (:meth:`_loss`)
    and the final vectors (:meth:`_vectors`, :meth:`new_item_vectors`)."""

    config: ContentModelConfig
    uses_teacher: ClassVar[bool] = True
    """Whether the model learns from a BPR-MF teacher (CLCRec trains its own IDs)."""

    def __init__(self, config: ContentModelConfig) -> None:
        super().__init__(config)
        self.net: nn.Module | None = None
        self.teacher: BPRMF | None = None
        """The BPR-MF fitted on the Dataset of the latest training (models that use one)."""
        self.history: HistoryPairs | None = None
        self.content = torch.zeros(0, 0)
        """The items' text vectors (n_items × content dim)."""
        self._content_of: list[str] = []
        self.user_vectors = torch.zeros(0, config.backbone.dim)
        self.item_vectors = torch.zeros(0, config.backbone.dim)

    @property
    def dim(self) -> int:
        return self.config.backbone.dim

    @property
    def warm(self) -> torch.Tensor:
        """Per item of the latest training: had a training interaction."""
        if self.history is None:
            raise ConfigError(f"the {self.name} model keeps its vectors, not its training "
                              "data: fit it to export them again")  # fmt: skip
        return torch.as_tensor(self.history.linked)

    def fitted_teacher(self) -> BPRMF:
        """The teacher of the latest training."""
        if self.teacher is None:
            raise ConfigError(f"the {self.name} model has no fitted teacher")
        return self.teacher

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if not len(self.user_vectors):
            raise ConfigError("fit the model before scoring")
        full = self.user_vectors[torch.as_tensor(users)] @ self.item_vectors.T
        return scores_at(full.numpy(), items)

    @abstractmethod
    def _network(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        """A fresh network for a catalogue and content vectors of ``content_dim``."""

    @abstractmethod
    def _loss(
        self, users: torch.Tensor, positives: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The loss of a batch of (user, positive) training pairs."""

    @abstractmethod
    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's and item's vector from the trained network (no gradients)."""

    @abstractmethod
    def _cold_vectors(self, content: torch.Tensor) -> torch.Tensor:
        """Vectors of items without interactions from their content vectors alone."""

    def new_item_vectors(self, content: np.ndarray) -> np.ndarray:
        """Vectors of items without interactions (cold, or added after training) from
        their text vectors alone."""
        assert self.net is not None
        self.net.eval()
        with torch.no_grad():
            return self._cold_vectors(torch.as_tensor(content, dtype=torch.float32)).numpy()

    def per_item(
        self, encode: Callable[[torch.Tensor], torch.Tensor], items: torch.Tensor
    ) -> torch.Tensor:
        """``encode`` of the content of ``items`` (any shape), computed once per distinct
        item (the candidates of a batch repeat many items)."""
        distinct, inverse = torch.unique(items, return_inverse=True)
        return encode(self.content[distinct])[inverse]

    def _start(self, dataset: Dataset, generator: torch.Generator) -> PairTrainer:
        if self.uses_teacher:
            seed = int(torch.randint(2**62, (1,), generator=generator).item())
            self.teacher = shared_teacher(self.config.backbone, dataset, seed)
        self.history = HistoryPairs(*history_edges(dataset), dataset.n_items)
        if self._content_of != dataset.item_text:
            vectors = TextEncoder(self.config.encoder).encode(dataset.item_text)
            self.content = torch.as_tensor(vectors, dtype=torch.float32)
            self._content_of = dataset.item_text
        self.net = self._network(dataset.n_users, dataset.n_items, self.content.shape[1])

        def loss_of(users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
            return self._loss(users, positives, generator)

        return PairTrainer(self, self.net, dataset, self.history, generator, loss_of)

    def _finish(self, dataset: Dataset) -> None:
        self.export()

    def export(self) -> None:
        """Set ``user_vectors`` and ``item_vectors`` from the trained network."""
        assert self.net is not None
        self.net.eval()
        with torch.no_grad():
            self.user_vectors, self.item_vectors = self._vectors()

    def _extra(self) -> dict[str, Any]:
        teacher = self.teacher.training_log.summary() if self.teacher is not None else None
        return {"content_dim": int(self.content.shape[1]), "teacher": teacher}

    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        weights = {f"net.{name}": value for name, value in self.net.state_dict().items()}
        return {"user_vectors": self.user_vectors, "item_vectors": self.item_vectors, **weights}

    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        self.user_vectors, self.item_vectors = tensors["user_vectors"], tensors["item_vectors"]
        sizes = len(saved.user_ids), len(saved.item_ids), int(saved.fields["content_dim"])
        self.net = self._network(*sizes)
        weights = {name[4:]: value for name, value in tensors.items() if name.startswith("net.")}
        self.net.load_state_dict(weights)
        self.net.eval()
