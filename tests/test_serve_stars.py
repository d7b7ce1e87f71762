"""Serving a STARS run: the lists equal the model's offline scores, the request time moves
them only through the context offset, and a new item with tags is scored at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from coldrec.config import validate
from coldrec.data import Dataset
from coldrec.errors import ConfigError, DataError
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.evaluate import EvaluateConfig, run_evaluation
from coldrec.experiment.run import run_experiment
from coldrec.rank.stars import StarsRecommender
from coldrec.serve.app import create_app, open_engine
from coldrec.serve.engine import Engine, ServeConfig
from coldrec.serve.run import RunArtifacts, StarsRun, load_run
from coldrec.serve.stars import StarsEngine
from coldrec.serve.store import WriteLog

VOCABULARY = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def stars_run(small_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``coldrec evaluate --model stars`` run folder with tags (γ = 0.5)."""
    folder = tmp_path_factory.mktemp("stars")
    small_dataset.save(folder / "data")
    rng = np.random.default_rng(1)
    pairs = [(item, tag) for item in small_dataset.items["item"] for tag in VOCABULARY
             if rng.random() < 0.3]  # fmt: skip
    pd.DataFrame(pairs, columns=["item", "tag"]).to_parquet(folder / "tags.parquet")
    config = EvaluateConfig.model_validate({"model": {
        "kind": "stars", "dim": 32, "tag_dim": 8, "n_negatives": 10, "gamma": 0.5,
        "training": {"epochs": 2, "eval_every": 1}}})  # fmt: skip
    run_evaluation(config, folder / "data", folder / "run", folder / "tags.parquet")
    return folder / "run"


def engine_of(run: Path, tmp_path: Path, **settings: object) -> StarsEngine:
    loaded = load_run(run)
    assert isinstance(loaded, StarsRun)
    return StarsEngine(loaded, ServeConfig.model_validate(settings), WriteLog(tmp_path / "w.db"))


def request_times(dataset: Dataset) -> np.ndarray:
    """What the evaluation scores each user at: the first test time, else the last one."""
    history = dataset.interactions.loc[dataset.interactions["split"] != "test"]
    at = history.groupby("user_idx")["ts"].last().reindex(range(dataset.n_users), fill_value=0)
    first_test = dataset.split("test").groupby("user_idx")["ts"].first()
    at[first_test.index] = first_test
    return at.to_numpy(np.int64)


@pytest.mark.parametrize("mode", ["next", "general", "round_robin"])
def test_online_lists_equal_the_offline_scores(stars_run: Path, tmp_path: Path, mode: str) -> None:
    engine = engine_of(stars_run, tmp_path, mode=mode)
    model, dataset = engine.model, engine.dataset
    model.config = model.config.model_copy(update={"scoring": mode})
    at = request_times(dataset)
    users = [u for u in range(dataset.n_users) if engine.users.histories[u]][:15]
    offline = model.score(np.array(users))
    for row, user in enumerate(users):
        scores = offline[row].copy()
        scores[engine.users.histories[user]] = np.nan  # the protocol masks the history
        expected = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:10]
        online = engine.recommend(dataset.users["user"][user], k=10, at=int(at[user]))
        got = [engine.catalogue.row_of[e["item"]] for e in online.items]
        assert got == expected.tolist()
        if mode == "next":  # the index's inner product is the model's score
            assert [e["score"] for e in online.items] == pytest.approx(
                scores[expected].tolist(), abs=1e-4)  # fmt: skip


def test_the_request_time_moves_the_user_vector_by_the_context_offset(
    stars_run: Path, tmp_path: Path
) -> None:
    engine = engine_of(stars_run, tmp_path)
    net = engine.model.net
    assert net is not None
    monday, saturday = 1_700_438_400, 1_703_894_400  # 2023-11-20 and 2023-12-30
    side = engine.model.context
    h_monday, _ = engine.user_vectors(3, engine.users.histories[3], monday)
    h_saturday, _ = engine.user_vectors(3, engine.users.histories[3], saturday)
    with torch.no_grad():
        offsets = [net.context_offset({k: torch.as_tensor(v) for k, v in
                                       side.calendar_ids(np.array([t])).items()})[0].numpy()
                   for t in (monday, saturday)]  # fmt: skip
    assert h_saturday - h_monday == pytest.approx(offsets[1] - offsets[0], abs=1e-5)
    user = engine.dataset.users["user"][3]
    first = engine.recommend(user, k=5, at=monday).items
    assert first == engine.recommend(user, k=5, at=monday).items  # same time, same list


def test_a_new_item_is_scored_from_its_text_tags_and_the_unseen_prior(
    stars_run: Path, tmp_path: Path
) -> None:
    engine = engine_of(stars_run, tmp_path)
    model = engine.model
    engine.add_items([{"item": "new-1", "title": "A brand new thing", "tags": ["a", "c"]}])
    row = engine.catalogue.row_of["new-1"]
    content = engine.catalogue.content.array[row]
    with torch.no_grad():
        assert model.net is not None and model.net.attr is not None
        text = model.net.items.map(torch.as_tensor(content[None])).numpy()[0]
        tags = model.net.attr(torch.tensor([[1.0, 0, 1, 0, 0, 0]])).numpy()[0]
    prior = -0.5 * np.log(1 / (model.item_interactions.sum().item() + engine.trained_items))
    vector = np.concatenate([text, tags, [prior]])
    assert engine.catalogue.retriever.array[row] == pytest.approx(vector, abs=1e-5)
    user = engine.dataset.users["user"][3]
    h, _ = engine.user_vectors(3, engine.users.histories[3], 1_700_438_400)
    listing = engine.recommend(user, k=engine.top_m, at=1_700_438_400).items
    entry = next(e for e in listing if e["item"] == "new-1")
    assert entry["score"] == pytest.approx(float(h @ vector[:-1] + prior), abs=1e-4)
    assert entry["new"] and entry["source"] == "stars"
    position = [e["item"] for e in listing].index("new-1")
    assert listing[position - 1]["score"] >= entry["score"] >= listing[position + 1]["score"]


def test_an_unknown_tag_is_refused_before_it_is_logged(stars_run: Path, tmp_path: Path) -> None:
    engine = engine_of(stars_run, tmp_path)
    with pytest.raises(DataError, match=r"\['zzz'\] are not in the model's vocabulary"):
        engine.add_items([{"item": "new-2", "title": "x", "tags": ["a", "zzz"]}])
    assert list(engine.log.since(0)) == []
    assert "new-2" not in engine.catalogue.row_of


def test_the_http_service_of_a_stars_run_takes_mode_time_and_tags(stars_run: Path) -> None:
    engine = open_engine(stars_run, ServeConfig())
    assert isinstance(engine, StarsEngine)
    client = TestClient(create_app(engine))
    user = engine.dataset.users["user"][3]
    lists = {mode: client.post("/recommend", json={"user_id": user, "k": 5, "mode": mode,
                                                   "at": 1_700_438_400}).json()
             for mode in ("next", "general", "round_robin")}  # fmt: skip
    assert all(len(found["items"]) == 5 for found in lists.values())
    assert lists["next"]["items"] != lists["general"]["items"]
    assert client.post("/recommend", json={"user_id": user, "mode": "other"}).status_code == 422
    added = client.post("/items", json={"id": "new-3", "title": "x", "tags": ["b"]})
    assert added.status_code == 200
    refused = client.post("/items", json={"id": "new-4", "title": "x", "tags": ["nope"]})
    assert refused.status_code == 422 and "vocabulary" in refused.json()["detail"]
    assert client.get("/health").json()["model"] == "stars"
    top = lists["next"]["items"][0]["item"]
    explained = client.get("/explain", params={"user_id": user, "item_id": top}).json()
    assert explained["mode"] == "next" and explained["gamma"] == 0.5 and explained["of"] > 0


def test_a_run_with_a_stars_ranker_tags_ranks_and_serves(tmp_path: Path) -> None:
    settings = {
        "name": "stars_tiny", "seeds": [0],
        "data": {"source": {"kind": "synthetic", "n_users": 300, "n_items": 200, "seed": 5}},
        "retrieve": {"top_m": 60, "model": {"dim": 16, "training": {"epochs": 2}}},
        "tag": {"llm": {"backend": {"kind": "embedding"}}, "vocabulary_size": 12,
                "threshold": 0.2},
        "rank": {"model": {"kind": "stars", "dim": 32, "tag_dim": 8, "gamma": 0.3,
                           "training": {"epochs": 2, "eval_every": 1}}},
    }  # fmt: skip
    out = tmp_path / "run"
    records = run_experiment(validate(ExperimentConfig, settings), out)
    assert [r["folder"] for r in records] == ["data", "retrieve", "tag", "rank/seed0", "report"]
    metrics = json.loads((out / "rank" / "seed0" / "metrics-seed0.json").read_text())
    assert metrics["inputs"]["tags"].endswith("tag/tags.parquet")
    loaded = load_run(out)
    assert isinstance(loaded, RunArtifacts) and isinstance(loaded.ranker, StarsRecommender)
    assert loaded.ranker.tags is not None and len(loaded.ranker.vocabulary) == 12
    engine = Engine(loaded, ServeConfig(), WriteLog(tmp_path / "w.db"))
    user = next(u for u, h in zip(engine.users.ids, engine.users.histories, strict=True) if h)
    found = engine.recommend(user, k=5, at=1_700_438_400)
    assert found.source == "ranked" and len(found.items) == 5
    engine.add_items([{"item": "new-1", "title": "something new"}])
    assert engine.catalogue.ranker.array[engine.catalogue.row_of["new-1"]][-1] == pytest.approx(
        loaded.ranker.item_table()[:, -1].max())  # the prior of an item never seen  # fmt: skip
    with pytest.raises(ConfigError, match="read by a stars ranker only"):
        validate(ExperimentConfig, {**settings, "rank": {}})
    with pytest.raises(ConfigError, match="stars trains without pseudo labels"):
        validate(ExperimentConfig, {**settings, "losses": ["sim"], "supervise": {
            "llm": {"backend": {"kind": "embedding"}}}})  # fmt: skip
