"""An experiment's settings: the data, one typed node per step, and the seeds.

Each step node is the settings model of the command that runs it (``retrieve`` is
:class:`~coldrec.retrieval.retrieve.RetrieveConfig`, ``supervise``
:class:`~coldrec.supervision.run.SuperviseConfig`, ``rank``
:class:`~coldrec.rank.run.RankConfig`, each of ``baselines``
:class:`EvaluateConfig`), checked when the experiment is read. ``rank: null`` runs the
baselines alone (and no retriever unless the LLM stages need one). Two settings are shared
by the nodes and filled in by the experiment: ``encoder`` (the retriever's and the LLM
stages' text encoder, unless their node sets its own) and ``upstream_seed`` (the seed of
the retriever and of the LLM stages' user sample); ``seeds`` vary the ranker and the
baselines.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldrec.data.prepare import DataConfig
from coldrec.encode import TextEncoderConfig
from coldrec.experiment.evaluate import EvaluateConfig
from coldrec.experiment.llm_rank import LLMRankConfig
from coldrec.rank.run import RankConfig
from coldrec.rank.stars import StarsConfig
from coldrec.retrieval.retrieve import RetrieveConfig
from coldrec.supervision.augment import AugmentConfig
from coldrec.supervision.run import SuperviseConfig
from coldrec.supervision.tags import TagConfig

__all__ = ["ExperimentConfig", "Loss"]

Loss = Literal["sim", "pair"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
"""A method name that is also a folder name: letters, digits, ``_ . -``, no path."""


class ExperimentConfig(BaseModel):
    """An experiment: data, the step settings and the seeds (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    """Method name of the ranker in reports (and the default run folder's name)."""
    seeds: tuple[Annotated[int, Field(ge=0, lt=2**32)], ...] = Field((0,), min_length=1)
    """Seeds of the ranker and the baselines (one run of each per seed)."""
    upstream_seed: int = Field(0, ge=0, lt=2**32)
    """Seed of the retriever and of the user sample of the LLM stages."""
    data: DataConfig = Field(default_factory=DataConfig)
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """The item text encoder of the retriever and the LLM stages' evidence (unless their
    nodes set their own)."""
    retrieve: RetrieveConfig = Field(default_factory=RetrieveConfig)
    supervise: SuperviseConfig | None = None
    """The LLM stages; ``None``: no labels (E0)."""
    tag: TagConfig | None = None
    """Attribute tags of the items (``coldrec tag``), read by a ``stars`` ranker."""
    losses: tuple[Loss, ...] = ()
    """Label losses of the ranker: ``sim`` (edges, ``L_sim``), ``pair`` (triplets)."""
    rank: RankConfig | None = Field(default_factory=RankConfig)
    """The fused sequential ranker; ``None``: none (the baselines alone)."""
    llm_rank: LLMRankConfig | None = None
    """The LLM as ranker of the fused ranker's top candidates (``coldrec llm-rank``; one
    run per seed of the ranker)."""
    augment: AugmentConfig | None = None
    """LAGCL4Rec's data level (``coldrec augment``), read by baselines whose graph model
    sets ``data_level``."""
    baselines: dict[Name, EvaluateConfig] = Field(default_factory=dict)
    """Extra methods evaluated beside the ranker: name → ``evaluate`` settings."""
    references: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    """Published figures printed beside ours: method → segment → metric → value."""

    @model_validator(mode="before")
    @classmethod
    def _shared_settings(cls, data: Any) -> Any:
        """Fill ``encoder`` and ``upstream_seed`` into the nodes that take them."""
        if not isinstance(data, dict):
            return data
        encoder, seed = _plain(data.get("encoder", {})), data.get("upstream_seed", 0)
        filled = dict(data)
        retrieve = _plain(data.get("retrieve", {}))
        if isinstance(retrieve, dict):
            model = _plain(retrieve.get("model", {}))
            if isinstance(model, dict):
                model = {"encoder": encoder, **model}
            filled["retrieve"] = {**_seeded("retrieve", retrieve, seed), "model": model}
        supervise = _plain(data.get("supervise"))
        if isinstance(supervise, dict):
            filled["supervise"] = {"encoder": encoder, **_seeded("supervise", supervise, seed)}
        for node in ("tag", "augment"):
            settings = _plain(data.get(node))
            if isinstance(settings, dict):
                filled[node] = {"encoder": encoder, **_seeded(node, settings, seed)}
        llm_rank = _plain(data.get("llm_rank"))
        if isinstance(llm_rank, dict):  # its seed is the user sample's, not upstream
            filled["llm_rank"] = {"encoder": encoder, **llm_rank}
        return filled

    @model_validator(mode="after")
    def _losses_need_labels(self) -> Self:
        if self.losses and (self.supervise is None or self.rank is None):
            raise ValueError(f"losses {list(self.losses)} need a supervise node and a ranker")
        stars = self.rank is not None and isinstance(self.rank.model, StarsConfig)
        if self.tag is not None and not stars:
            raise ValueError("the tag node's tags are read by a stars ranker only")
        if stars and self.losses:
            raise ValueError("stars trains without pseudo labels: drop the losses")
        if self.llm_rank is not None and (self.rank is None or self.rank.mode != "hybrid"
                                          or self.rank.alpha is not None):  # fmt: skip
            raise ValueError("llm_rank ranks the ranker's top candidates and chooses its α on "
                             "the ranker's validation ranking: add a rank node in hybrid mode "
                             "that chooses its own alpha")  # fmt: skip
        readers = [name for name, base in self.baselines.items()
                   if getattr(base.model, "data_level", False)]  # fmt: skip
        if readers and self.augment is None:
            raise ValueError(f"baselines {readers} set data_level: they need an augment node")
        return self

    def rank_run(self, seed: int) -> RankConfig:
        """The ranker's settings for one seed (named after the experiment)."""
        if self.rank is None:
            raise ValueError("this experiment has no ranker")
        return self.rank.model_copy(update={"seed": seed, "name": self.name})

    def baseline_run(self, name: str, seed: int) -> EvaluateConfig:
        """A baseline's settings for one seed."""
        return self.baselines[name].model_copy(update={"seed": seed, "name": name})


def _plain(value: Any) -> Any:
    """A settings node as a plain mapping (a model given in Python is dumped)."""
    return value.model_dump() if isinstance(value, BaseModel) else value


def _seeded(node: str, settings: dict[str, Any], seed: Any) -> dict[str, Any]:
    if "seed" in settings:
        raise ValueError(f"{node}.seed is the experiment's upstream_seed: set that instead")
    return {**settings, "seed": seed}
