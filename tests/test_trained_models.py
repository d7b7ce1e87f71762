"""Trained models (Two-Tower, SASRec, GRU4Rec, BERT4Rec, delta vectors, the fused ranker):
known answers on tiny hand-made data, save → load → the same scores, seeding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from coldrec.data import Dataset, PrepareConfig, prepare
from coldrec.data.candidates import Candidates
from coldrec.errors import ConfigError, DataError
from coldrec.eval.protocol import evaluate
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.fusion import FusedRanker
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.items import DeltaConfig
from coldrec.rank.network import SequentialConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.rank.stars import StarsConfig, StarsRecommender
from coldrec.rank.transfer import TransferConfig
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig
from coldrec.training.loop import TrainingConfig
from coldrec.training.model import TrainedModel
from tests.helpers import frames_of

CYCLE = 20
"""Items of the cycle: after item ``i`` always comes ``i + 1 (mod CYCLE)``."""


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def cycle() -> Dataset:
    """120 users, each walking 6 steps of the cycle from a random start; leave-one-out,
    so each user's test item is the next one of the cycle, which they never saw."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u:03d}", f"i{(start + k) % CYCLE:02d}", k)
            for u, start in enumerate(rng.integers(0, CYCLE, 120)) for k in range(6)]  # fmt: skip
    return prepare(frames_of(rows, order_only=True), PrepareConfig(split="loo"))


@pytest.fixture(scope="module")
def groups() -> Dataset:
    """Three groups of 6 items, 30 users each; a user has 5 of their group's items and
    the 6th as test: it is the only unseen item of their group (a checkerboard)."""
    rows = []
    for group in range(3):
        items = [f"g{group}i{k}" for k in range(6)]
        for u in range(30):
            order = items[u % 6 + 1 :] + items[: u % 6 + 1]  # the test item last
            rows += [(f"g{group}u{u:02d}", item, t) for t, item in enumerate(order)]
    return prepare(frames_of(rows, order_only=True), PrepareConfig(split="loo"))


LEARN = TrainingConfig(epochs=40, batch_size=64, lr=1e-2)
SEQUENTIAL: dict[str, SequentialConfig] = {
    "sasrec": SASRecConfig(dim=32, n_negatives=10, dropout=0.0, early_stopping=False,
                           training=LEARN),
    "gru4rec": GRU4RecConfig(dim=32, n_negatives=10, dropout=0.0, early_stopping=False,
                             training=LEARN),
    # how far a few epochs get depends on the CPU's kernels and threads: 80 epochs reached
    # 117 of 120 users on one thread of an Intel CPU, 120 epochs 112 on two of an AMD EPYC;
    # 200 reach all on 1-4 threads of the latter (160 barely did on two)
    "bert4rec": BERT4RecConfig(dim=32, n_negatives=10, dropout=0.0, early_stopping=False,
                               mask_prob=0.4, training=LEARN.model_copy(update={"epochs": 200})),
    "sasrec_delta": SASRecConfig(dim=32, n_negatives=10, dropout=0.0, early_stopping=False,
                                 training=LEARN, delta=DeltaConfig(max_norm=None)),
}  # fmt: skip
TWO_TOWER = TwoTowerConfig(dim=16, early_stopping=False, training=LEARN)
STARS = StarsConfig(dim=32, n_negatives=10, dropout=0.0, early_stopping=False, training=LEARN,
                    delta=None, subclass_negatives=0)  # fmt: skip
"""ID vectors: the cycle's 20 items are too few for the PCA map of the text vectors."""


def hit_rate_at_1(model: object, dataset: Dataset, candidates: Candidates | None = None) -> float:
    result = evaluate(model, dataset, ks=(1,), candidates=candidates)  # type: ignore[arg-type]
    return float(result["segments"]["all"]["hit_rate@1"])


@pytest.mark.parametrize("kind", list(SEQUENTIAL))
def test_a_sequential_ranker_learns_the_next_item_of_a_cycle(kind: str, cycle: Dataset) -> None:
    model = SequentialRecommender(SEQUENTIAL[kind]).fit(cycle, generator=seeded())
    assert hit_rate_at_1(model, cycle) == 1.0  # every user's next item ranked first


@pytest.mark.parametrize("scoring", ["next", "general", "round_robin"])
def test_stars_learns_the_next_item_of_a_cycle(scoring: str, cycle: Dataset) -> None:
    config = STARS.model_copy(update={"scoring": scoring})
    model = StarsRecommender(config).fit(cycle, generator=seeded())
    assert hit_rate_at_1(model, cycle) == 1.0


def test_two_tower_ranks_the_unseen_item_of_the_users_group_first(groups: Dataset) -> None:
    model = TwoTower(TWO_TOWER).fit(groups, generator=seeded())
    assert hit_rate_at_1(model, groups) == 1.0


def test_the_fused_ranker_ranks_the_next_item_first(tmp_path: Path, cycle: Dataset) -> None:
    ranker = SequentialRecommender(SEQUENTIAL["sasrec"]).fit(cycle, generator=seeded())
    retriever = TwoTower(TWO_TOWER).fit(cycle, generator=seeded())
    retriever.save(tmp_path / "tw")
    users = np.arange(cycle.n_users)
    every_item = np.tile(np.arange(cycle.n_items), (cycle.n_users, 1))
    candidates = Candidates(users, every_item, retriever.score(users, every_item))
    assert hit_rate_at_1(FusedRanker(ranker, retriever, "hybrid", 1.0), cycle, candidates) == 1.0
    assert hit_rate_at_1(FusedRanker(ranker, retriever, "sas", 0.0), cycle, candidates) == 1.0


def models(cycle: Dataset) -> dict[str, TrainedModel]:
    quick = TrainingConfig(epochs=2, batch_size=64)
    built: dict[str, TrainedModel] = {
        kind: SequentialRecommender(config.model_copy(update={"training": quick}))
        for kind, config in SEQUENTIAL.items()
    }
    built["sasrec_pca_transfer"] = SequentialRecommender(SEQUENTIAL["sasrec"].model_copy(
        update={"training": quick, "delta": DeltaConfig(map="pca"), "dim": 8,
                "transfer": TransferConfig(k=3)}))  # fmt: skip
    built["two_tower"] = TwoTower(TWO_TOWER.model_copy(update={"training": quick}))
    built["stars"] = StarsRecommender(STARS.model_copy(update={"training": quick}))
    return built


@pytest.mark.parametrize("kind", [*SEQUENTIAL, "sasrec_pca_transfer", "two_tower", "stars"])
def test_save_then_load_scores_exactly_the_same(kind: str, cycle: Dataset, tmp_path: Path) -> None:
    model = models(cycle)[kind].fit(cycle, generator=seeded())
    folder = model.save(tmp_path / kind)
    loaded = type(model).load(folder, cycle)
    users = np.arange(cycle.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))  # bitwise
    assert loaded.training_log == model.training_log
    assert loaded.config == model.config
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".npy") == sorted(
        ["model.json", "model.safetensors"]
        + (["item_vectors.json", "user_vectors.json"] if kind == "two_tower" else [])
    )


def test_a_saved_fused_ranker_loads_with_its_retriever(tmp_path: Path, cycle: Dataset) -> None:
    quick = TrainingConfig(epochs=2, batch_size=64)
    retriever = TwoTower(TWO_TOWER.model_copy(update={"training": quick}))
    retriever.fit(cycle, generator=seeded()).save(tmp_path / "retrieve" / "model")
    ranker = SequentialRecommender(SEQUENTIAL["gru4rec"].model_copy(update={"training": quick}))
    fused = FusedRanker(ranker.fit(cycle, generator=seeded()), retriever, "hybrid", 0.3)
    fused.save(tmp_path / "rank" / "model")
    loaded = FusedRanker.load(tmp_path / "rank" / "model", cycle)
    users = np.arange(cycle.n_users)
    items = np.tile(np.arange(cycle.n_items), (cycle.n_users, 1))
    np.testing.assert_array_equal(loaded.score(users, items), fused.score(users, items))
    assert (loaded.mode, loaded.alpha) == ("hybrid", 0.3)
    other = TwoTower(TWO_TOWER.model_copy(update={"training": quick}))
    other.fit(cycle, generator=seeded(1)).save(tmp_path / "other")
    with pytest.raises(DataError, match="not the Two-Tower model it was saved with"):
        FusedRanker.load(tmp_path / "rank" / "model", retriever=TwoTower.load(tmp_path / "other"))


def test_loading_against_another_dataset_is_refused(
    tmp_path: Path, cycle: Dataset, groups: Dataset
) -> None:
    model = TwoTower(TWO_TOWER.model_copy(update={"training": TrainingConfig(epochs=1)}))
    folder = model.fit(cycle, generator=seeded()).save(tmp_path / "tw")
    with pytest.raises(DataError, match="trained on 20 items, the dataset has 18"):
        TwoTower.load(folder, groups)
    with pytest.raises(DataError, match=r"holds a coldrec\.retrieval\.two_tower\.TwoTower"):
        SequentialRecommender.load(folder)
    with pytest.raises(DataError, match="not a saved coldrec model"):
        TwoTower.load(tmp_path)
    with pytest.raises(ConfigError, match="fit the sasrec model before saving"):
        SequentialRecommender(SEQUENTIAL["sasrec"]).save(tmp_path / "unfitted")


def test_a_seed_fixes_the_model_and_leaves_the_global_generator_alone(cycle: Dataset) -> None:
    config = SEQUENTIAL["bert4rec"].model_copy(update={"training": TrainingConfig(epochs=2)})
    users = np.arange(cycle.n_users)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = SequentialRecommender(config).fit(cycle, generator=seeded(5)).score(users)
    assert torch.equal(torch.get_rng_state(), state)  # neither read nor moved
    torch.manual_seed(999)  # another global state changes nothing
    again = SequentialRecommender(config).fit(cycle, generator=seeded(5)).score(users)
    other = SequentialRecommender(config).fit(cycle, generator=seeded(6)).score(users)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other, equal_nan=True)


def test_a_saved_model_is_readable_like_every_other_artifact(
    tmp_path: Path, cycle: Dataset
) -> None:
    model = TwoTower(TWO_TOWER.model_copy(update={"training": TrainingConfig(epochs=1)}))
    folder = model.fit(cycle, generator=seeded()).save(tmp_path / "tw")
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes
