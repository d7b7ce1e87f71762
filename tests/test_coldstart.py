"""The cold-start content models (DeepMusic, DropoutNet, Heater, CLCRec, ALDI) over
BPR-MF: their losses on hand-worked numbers, cold items scored from content alone,
DropoutNet's pure content limit, saving, and BPR-MF itself."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coldrec.coldstart import (
    BPRMF,
    ALDIConfig,
    BPRMFConfig,
    CLCRecConfig,
    ContentModel,
    DeepMusicConfig,
    DropoutNetConfig,
    HeaterConfig,
)
from coldrec.coldstart.aldi import aldi_losses, popularity_weights
from coldrec.coldstart.clcrec import CLCRecNet, first_candidate_info_nce
from coldrec.coldstart.dropoutnet import Towers
from coldrec.coldstart.heater import HeaterNet
from coldrec.data import Dataset
from coldrec.eval.protocol import evaluate
from coldrec.experiment.evaluate import MODEL_KINDS, EvaluateConfig, run_evaluation
from coldrec.training.pairs import HistoryPairs

SHORT = {"epochs": 4, "lr": 0.01}
BACKBONE = BPRMFConfig(dim=8, early_stopping=False, training={"epochs": 15, "lr": 0.01})
CONFIGS = {
    "deepmusic": DeepMusicConfig(backbone=BACKBONE, early_stopping=False, training=SHORT),
    "dropoutnet": DropoutNetConfig(backbone=BACKBONE, early_stopping=False, training=SHORT),
    "heater": HeaterConfig(backbone=BACKBONE, early_stopping=False, training=SHORT),
    "clcrec": CLCRecConfig(backbone=BACKBONE, early_stopping=False, training=SHORT, n_negatives=8),
    "aldi": ALDIConfig(
        backbone=BACKBONE, early_stopping=False, training=SHORT, popularity_weight=True
    ),
}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def fitted(request: pytest.FixtureRequest, small_dataset: Dataset) -> ContentModel:
    model = CONFIGS[request.param].build()
    assert isinstance(model, ContentModel)
    return model.fit(small_dataset, generator=seeded())


def test_every_cold_start_model_is_a_model_kind() -> None:
    assert {"bprmf", *CONFIGS} <= set(MODEL_KINDS)


def test_a_cold_items_vector_comes_from_its_content_alone(
    fitted: ContentModel, small_dataset: Dataset
) -> None:
    cold = torch.as_tensor(small_dataset.cold_items)
    assert len(cold) and not fitted.warm[cold].any()
    before = fitted.item_vectors[cold].clone()
    # scramble every ID-side vector a cold item has (the teacher's, or CLCRec's own IDs)
    if fitted.teacher is not None:
        ids = fitted.teacher.item_vectors
    else:
        assert isinstance(fitted.net, CLCRecNet)
        ids = fitted.net.items.weight.data
    kept = ids[cold].clone()
    ids[cold] = torch.randn(len(cold), fitted.dim) * 10
    fitted.export()
    ids[cold] = kept
    assert torch.equal(fitted.item_vectors[cold], before)
    content = fitted.content[cold].numpy()
    assert fitted.new_item_vectors(content) == pytest.approx(before.numpy(), abs=1e-5)
    # ...and that content does decide it
    other = fitted.new_item_vectors(np.roll(content, 1, axis=0))
    assert not np.allclose(other, before.numpy(), atol=1e-4)


def test_cold_start_models_score_warm_and_cold_items_in_one_list(
    fitted: ContentModel, small_dataset: Dataset
) -> None:
    scores = fitted.score(np.arange(small_dataset.n_users))
    assert scores.shape == (small_dataset.n_users, small_dataset.n_items)
    assert np.isfinite(scores).all()


def test_a_saved_cold_start_model_scores_and_maps_new_items_the_same(
    fitted: ContentModel, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "model")
    loaded = type(fitted).load(tmp_path / "model")
    users = np.arange(10)
    assert np.array_equal(loaded.score(users), fitted.score(users))
    content = fitted.content[:5].numpy()
    assert np.array_equal(loaded.new_item_vectors(content), fitted.new_item_vectors(content))


def test_dropoutnet_at_dropout_one_is_a_pure_content_model(small_dataset: Dataset) -> None:
    config = CONFIGS["dropoutnet"].model_copy(update={"dropout": 1.0})
    model = config.build().fit(small_dataset, generator=seeded())
    every_item = model.new_item_vectors(model.content.numpy())
    assert model.item_vectors.numpy() == pytest.approx(every_item, abs=1e-5)
    # in training, the item tower's preference inputs get no gradient at all
    assert isinstance(model.net, Towers)
    model.net.train()
    users = torch.arange(64) % small_dataset.n_users
    assert model.history is not None
    model.net.zero_grad()
    model._loss(users, model.history.pool[users % len(model.history.pool)], seeded()).backward()
    first = model.net.item[0].weight.grad
    assert first is not None and first[:, : model.dim].abs().max() == 0
    assert first[:, model.dim :].abs().max() > 0


def test_deepmusic_and_aldi_keep_the_teachers_warm_scores(small_dataset: Dataset) -> None:
    for kind in ("deepmusic", "aldi"):
        model = CONFIGS[kind].build().fit(small_dataset, generator=seeded())
        teacher = model.fitted_teacher()
        warm = model.warm.numpy()
        expected = (teacher.user_vectors @ teacher.item_vectors.T).numpy()[:, warm]
        assert model.score(np.arange(small_dataset.n_users))[:, warm] == pytest.approx(
            expected, abs=1e-5
        )


def test_aldi_losses_equal_the_papers_formulas_on_a_hand_worked_batch() -> None:
    # teacher users (1,0), (0,1); items A (2,0), B (0,1), C (1,1); triples (u1,A,B), (u2,C,A)
    t_users, t_items = torch.tensor([[1.0, 0], [0, 1]]), torch.tensor([[2.0, 0], [0, 1], [1, 1]])
    s_users, s_items = torch.tensor([[1.0, 0], [0, 1]]), torch.tensor([[1.0, 0], [1, 1], [0, 2]])
    positives, negatives = torch.tensor([0, 2]), torch.tensor([1, 0])

    def losses(weights: torch.Tensor) -> dict[str, torch.Tensor]:
        return aldi_losses((t_users, t_items[positives], t_items[negatives]),
                           (s_users, s_items[positives], s_items[negatives]), weights)  # fmt: skip

    plain = {name: float(value) for name, value in losses(torch.ones(2)).items()}
    # teacher scores (2, 0), (1, 0); student (1, 1), (2, 0)
    assert plain["supervised"] == pytest.approx((math.log(2) + math.log1p(math.exp(-2))) / 2)
    assert plain["rating"] == pytest.approx(((1 + 1) + (1 + 0)) / 2)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    soft_bce = lambda x, z: math.log1p(math.exp(x)) - x * z  # noqa: E731
    ranking = [soft_bce(0, sigmoid(2)), soft_bce(2, sigmoid(1))]
    assert plain["ranking"] == pytest.approx(sum(ranking) / 2)
    assert plain["ranking"] == pytest.approx(0.678979, abs=1e-6)
    # identification: student (1 − mean(1, 1), 4 − mean(2, 0)); teacher (4 − 2, 2 − 1.5)
    identification = [soft_bce(0, sigmoid(2)), soft_bce(3, sigmoid(0.5))]
    assert plain["identification"] == pytest.approx(sum(identification) / 2)
    assert plain["identification"] == pytest.approx(0.937178, abs=1e-6)
    total = (plain["supervised"] + 0.9 * plain["ranking"] + 0.05 * plain["identification"]
             + 0.1 * plain["rating"])  # fmt: skip
    assert total == pytest.approx(1.217978, abs=1e-6)
    # the positives' weights (A, C) scale the ranking and identification terms only
    weights = torch.tensor([math.tanh(4), math.tanh(4 / 3)])
    weighted = {name: float(value) for name, value in losses(weights).items()}
    assert weighted["ranking"] == pytest.approx(0.635554, abs=1e-6)
    assert weighted["identification"] == pytest.approx(0.860204, abs=1e-6)
    assert weighted["rating"] == plain["rating"] and weighted["supervised"] == plain["supervised"]


def test_aldi_popularity_weights_on_hand_counted_neighbours() -> None:
    # u0: {A}; u1: {A, B}; u2: {A, B, C} (u1–A given twice); item D has no interaction
    users, items = np.array([0, 1, 1, 1, 2, 2, 2]), np.array([0, 0, 0, 1, 0, 1, 2])
    weights = popularity_weights(users, items, n_users=3, n_items=4, m=4.0)
    # f = (1 + 1/2 + 1/3, 1/2 + 1/3, 1/3, 1 for none); mean f̄ = 3 users / 4 items
    quality = np.array([11 / 6, 5 / 6, 1 / 3, 1.0])
    expected = np.minimum(np.tanh(4 * quality / 0.75), np.tanh(4))
    assert weights == pytest.approx(expected)
    assert weights[0] == pytest.approx(math.tanh(4))  # capped


def test_clcrecs_representation_term_on_hand_worked_cosines() -> None:
    # ID vector (3, 4) against contents (1, 0) (its own), (0, 2), (−1, 0): cosines 0.6, 0.8, −0.6
    anchor = F.normalize(torch.tensor([[3.0, 4.0]]), dim=-1)
    contents = F.normalize(torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]]), dim=-1)
    for temperature, expected in ((1.0, 0.925289), (2.0, 0.976061)):
        value = first_candidate_info_nce(anchor, contents, temperature)
        assert float(value) == pytest.approx(expected, abs=1e-6)


def test_clcrec_info_nce_on_hand_worked_dot_products() -> None:
    anchor = torch.tensor([[1.0, 1.0]])
    candidates = torch.tensor([[[1.0, 1.0], [1.0, -1.0], [0.5, 0.5]]])  # dots 2, 0, 1
    for temperature, expected in ((1.0, 0.407606), (2.0, 0.680270)):
        value = first_candidate_info_nce(anchor, candidates, temperature)
        assert float(value) == pytest.approx(expected, abs=1e-6)
        dots = np.array([2.0, 0.0, 1.0]) / temperature
        assert float(value) == pytest.approx(-dots[0] + np.log(np.exp(dots).sum()))


def test_heaters_mixture_of_experts_on_hand_set_weights() -> None:
    net = HeaterNet(dim=2, content_dim=1, n_experts=2)
    # content (1): the gates' tanh gives (0.5, −0.2), the experts (0.2, 0.4) and (−0.1, 0.3)
    with torch.no_grad():
        net.gate.weight.copy_(torch.atanh(torch.tensor([[0.5], [-0.2]])))
        net.gate.bias.zero_()
        for expert, output in zip(net.experts, ([0.2, 0.4], [-0.1, 0.3]), strict=True):
            expert.weight.copy_(torch.atanh(torch.tensor(output))[:, None])
            expert.bias.zero_()
        mixed = net.mixture(torch.ones(1, 1))
    expected = np.tanh([0.5 * 0.2 - 0.2 * -0.1, 0.5 * 0.4 - 0.2 * 0.3])  # tanh(0.12, 0.14)
    assert mixed[0].numpy() == pytest.approx(expected, abs=1e-6)


def test_bprmf_learns_warm_items_and_cannot_score_cold_ones(small_dataset: Dataset) -> None:
    config = BPRMFConfig(dim=16, early_stopping=False, training={"epochs": 60, "lr": 0.01})
    model = BPRMF(config).fit(small_dataset, generator=seeded())
    scores = model.score(np.arange(small_dataset.n_users))
    assert np.isnan(scores[:, small_dataset.cold_items]).all()
    warm = evaluate(model, small_dataset, ks=(20,))["segments"]["warm"]["recall@20"]
    assert warm > 2 * 20 / small_dataset.n_items


def test_coldrec_evaluate_records_the_teachers_training(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    small_dataset.save(tmp_path / "data")
    config = EvaluateConfig(model=CONFIGS["deepmusic"])
    record = run_evaluation(config, tmp_path / "data", tmp_path / "run")
    assert record["teacher"]["final"]["epochs_run"] == BACKBONE.training.epochs
    assert record["training"]["final"]["epochs_run"] == SHORT["epochs"]
    assert (tmp_path / "run" / "model" / "model.json").is_file()


def test_models_seeded_alike_share_one_fitted_teacher(
    small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted_on: list[str] = []
    original = BPRMF.fit

    def counted(self: BPRMF, dataset: Dataset, *args: Any, **kwargs: Any) -> BPRMF:
        fitted_on.append(dataset.data_hash())
        return original(self, dataset, *args, **kwargs)

    monkeypatch.setattr(BPRMF, "fit", counted)
    first = CONFIGS["deepmusic"].build().fit(small_dataset, generator=seeded(3))
    second = CONFIGS["heater"].build().fit(small_dataset, generator=seeded(3))
    assert fitted_on == [small_dataset.data_hash()]  # one fit (no validation run here)
    assert first.teacher is not second.teacher  # copies: scrambling one leaves the other
    assert torch.equal(first.fitted_teacher().user_vectors, second.fitted_teacher().user_vectors)
    CONFIGS["deepmusic"].build().fit(small_dataset, generator=seeded(4))
    assert len(fitted_on) == 2  # another seed, another teacher


def test_history_pairs_batches_draws_and_membership() -> None:
    # user 0 owns items 0, 1, 2 (item 1 twice); user 1 owns item 3; item 4 has no pair
    pairs = HistoryPairs(np.array([0, 0, 0, 0, 1]), np.array([0, 1, 1, 2, 3]), n_items=5)
    assert pairs.pairs.tolist() == [0, 1, 2, 8] and pairs.pool.tolist() == [0, 1, 2, 3]
    codes = torch.tensor([0, 2, 3, 8, 9, 24, -1])
    assert pairs.owns(codes).tolist() == [True, True, False, True, False, False, False]
    assert not HistoryPairs(np.array([], int), np.array([], int), 5).owns(codes).any()
    drawn = pairs.uniform(torch.ones(200, dtype=torch.long), 3, seeded())
    assert set(drawn.flatten().tolist()) == {0, 1, 2}  # the pool but user 1's own item 3
    sizes = [len(users) for users, _ in pairs.batches(3, seeded())]
    assert sizes == [4]  # 3 + a last batch of one, merged
    seen = torch.cat([u * 5 + i for u, i in pairs.batches(2, seeded())])
    assert sorted(seen.tolist()) == pairs.pairs.tolist()
