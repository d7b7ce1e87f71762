"""coldrec serve: online = offline on a finished run, new items recommendable at once,
events counted at once, filters that never starve, durable writes, clear 4xx errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from coldrec.config import validate
from coldrec.data.candidates import Candidates
from coldrec.eval.protocol import EvaluationPlan, rank
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.run import run_experiment
from coldrec.rank.fusion import FusedRanker
from coldrec.retrieval.index import IndexConfig
from coldrec.serve.app import create_app, open_engine
from coldrec.serve.catalogue import Catalogue, Filters
from coldrec.serve.engine import Engine, ServeConfig
from coldrec.serve.run import load_run
from tests.test_experiment import TINY


def fresh(run: Path, tmp_path: Path, **settings: Any) -> Engine:
    """An engine over the run with a write log of its own (a copy of the run folder's
    links, so each test starts with no writes)."""
    copy = tmp_path / "run"
    copy.mkdir()
    for link in run.iterdir():
        (copy / link.name).symlink_to(link.resolve())
    return open_engine(copy, ServeConfig(**settings))


def offline_lists(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated users and their top 20 as the offline protocol ranks them."""
    run = load_run(folder)
    plan = EvaluationPlan.of(run.dataset)
    users = plan.users[: plan.n_with_history]
    candidates = Candidates.load(folder / "retrieve" / "candidates.parquet")
    fused = FusedRanker(run.ranker, run.retriever, run.mode, run.alpha, run.blend)
    return users, rank(fused, users, plan.history[np.arange(len(users))], 20,
                       candidates.for_users(users))  # fmt: skip


def online_list(engine: Engine, user: str) -> list[int]:
    return [engine.catalogue.row_of[e["item"]] for e in engine.recommend(user, k=20).items]


def test_online_lists_equal_the_offline_ones_for_every_user(
    served_run: Path, tmp_path: Path
) -> None:
    engine = fresh(served_run, tmp_path)
    assert engine.run.blend.kappa == 2.0  # the evidence blend is served as fitted
    users, offline = offline_lists(served_run)
    ids = engine.run.dataset.users["user"]
    for user, expected in zip(users, offline, strict=True):
        assert online_list(engine, ids[user]) == [x for x in expected.tolist() if x >= 0]


def test_cold_items_posted_into_a_server_without_them_give_the_offline_lists(
    served_run: Path, tmp_path: Path
) -> None:
    engine = fresh(served_run, tmp_path, initial_items="trained")
    items = engine.run.dataset.items
    cold = items.index[items["cold"]].to_numpy()
    assert not any(engine.catalogue.served[i] for i in cold) and len(cold) > 5
    first_seen = engine.run.dataset.interactions.groupby("item_idx")["ts"].min()
    for row in sorted(cold, key=lambda i: first_seen.get(i, 0)):  # in release order
        record = items.loc[row]
        keys = ("item", "title", "categories", "brand")
        engine.add_items([{key: record[key] for key in keys}])
    users, offline = offline_lists(served_run)
    ids = engine.run.dataset.users["user"]
    same = sum(online_list(engine, ids[u]) == [x for x in o.tolist() if x >= 0]
               for u, o in zip(users, offline, strict=True))  # fmt: skip
    assert same >= 0.98 * len(users)  # the same lists but for float ties


def test_a_new_item_is_recommended_at_once_to_users_whose_taste_it_fits(
    served_run: Path, tmp_path: Path
) -> None:
    engine = fresh(served_run, tmp_path)
    rows = [row for row, seen in enumerate(engine.users.histories) if seen][:30]
    hits = 0
    for n, row in enumerate(rows):  # a new item with the text of the user's latest item
        twin = engine.catalogue.records[engine.users.histories[row][-1]]
        engine.add_items([{"item": f"NEW-{n}", "title": twin["title"],
                           "categories": twin["categories"], "brand": twin["brand"]}])  # fmt: skip
        listing = engine.recommend(engine.users.ids[row], k=20).items
        hits += f"NEW-{n}" in [e["item"] for e in listing]
    assert len(rows) == 30 and hits >= 10  # a third of the very next lists (half, measured)
    user = engine.users.ids[rows[0]]
    twin = engine.catalogue.records[engine.users.histories[rows[0]][-1]]
    entry = engine.recommend(history=[twin["item"]], k=100).items
    new = next(e for e in entry if e["item"] == "NEW-0")
    assert new["cold"] and new["new"] and new["ranker"] is None  # an ID ranker has no vector
    vector = engine.catalogue.retriever.array[engine.catalogue.row_of["NEW-0"]]
    content = engine.catalogue.content.array[engine.catalogue.row_of["NEW-0"]]
    assert np.allclose(vector, engine.run.retriever.embed("items", content[None])[0])  # eq. 4.4
    engine.add_items([{"item": "NEW-0", "title": twin["title"], "available": False}])
    assert "NEW-0" not in [e["item"] for e in engine.recommend(user, k=100).items]
    engine.add_items([{"item": "NEW-0", "title": twin["title"], "available": True}])
    engine.delete_item("NEW-0")
    assert "NEW-0" not in [e["item"] for e in engine.recommend(user, k=100).items]


def test_events_enter_the_history_and_unknown_users_get_popular_items(
    served_run: Path, tmp_path: Path
) -> None:
    engine = fresh(served_run, tmp_path)
    popular = engine.recommend("nobody", k=5)
    assert popular.source == "popular" and popular.fallback_reason == "unknown user"
    assert [e["score"] for e in popular.items] == sorted(engine.popularity, reverse=True)[:5]
    engine.add_events([{"user": "nobody", "item": engine.catalogue.ids[7], "ts": 1}])
    ranked = engine.recommend("nobody", k=5)
    assert ranked.source == "ranked" and ranked.history_length == 1
    assert engine.catalogue.ids[7] not in [e["item"] for e in ranked.items]
    anonymous = engine.recommend(history=[engine.catalogue.ids[7]], k=5)
    assert [e["item"] for e in anonymous.items] == [e["item"] for e in ranked.items]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filters_are_exact_and_never_starve_the_list(
    served_run: Path, tmp_path: Path, kind: str
) -> None:
    engine = fresh(served_run, tmp_path, index=IndexConfig(kind=kind))
    user = engine.users.ids[0]
    records = engine.catalogue.records
    top = records[0]["categories"][0][:2]
    brand = next(r["brand"] for r in records if r["brand"])
    every = (Filters(category=top), Filters(brand=brand), Filters(min_price=5, max_price=20),
             Filters(exclude=(records[1]["item"],)))  # fmt: skip
    for filters in every:
        got = engine.recommend(user, k=10, filters=filters).items
        allowed = engine.catalogue.allowed(filters, np.isin(np.arange(len(records)),
                                                            engine.users.histories[0]))  # fmt: skip
        assert got and all(allowed[engine.catalogue.row_of[e["item"]]] for e in got)
        assert len(got) == min(10, int(allowed.sum()))
    # a filter keeping about 1% of the items: the top is the exact top within them
    rare = Filters(brand=brand)
    allowed = engine.catalogue.allowed(rare, np.zeros(len(records), dtype=bool))
    assert allowed.sum() < 0.05 * len(records)
    rows = np.flatnonzero(allowed & ~np.isin(np.arange(len(records)), engine.users.histories[0]))
    vector = engine.user_vector(0, engine.users.histories[0])
    exact = rows[np.argsort(-(engine.catalogue.retriever.array[rows] @ vector), kind="stable")]
    got = engine.recommend(user, k=len(rows), filters=rare).items
    assert sorted(engine.catalogue.row_of[e["item"]] for e in got) == sorted(exact.tolist())


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiment with pseudo labels and delta item vectors with KNN transfer."""
    rank = {"model": {"dim": 16, "delta": {}, "transfer": {"k": 5},
                      "training": {"epochs": 3, "eval_every": 1}}}  # fmt: skip
    config = validate(ExperimentConfig, {**TINY, "rank": rank, "baselines": {}})
    out = tmp_path_factory.mktemp("labelled") / "run"
    run_experiment(config, out)
    return out


def test_explain_names_the_pseudo_labels_and_the_lenders_of_a_new_items_delta(
    labelled_run: Path, tmp_path: Path
) -> None:
    engine = fresh(labelled_run, tmp_path)
    edges = pd.read_parquet(labelled_run / "supervise" / "edges.parquet")
    trained = {u for u, h in enumerate(engine.users.histories) if len(h) >= 2}
    edge = next(e for e in edges.itertuples() if e.user in trained)
    user, item = engine.users.ids[edge.user], engine.catalogue.ids[edge.item]
    client = TestClient(create_app(engine))
    why = client.get("/explain", params={"user_id": user, "item_id": item}).json()
    assert {"weight": edge.weight, "source": edge.source} in why["pseudo_labels"]["edges"]
    twin = engine.catalogue.records[engine.users.histories[edge.user][-1]]
    client.post("/items", json={"id": "NEW", "title": twin["title"],
                                "categories": twin["categories"]})  # fmt: skip
    lent = client.get("/explain", params={"user_id": user, "item_id": "NEW"}).json()
    lenders = lent["delta_lenders"]
    assert lenders["items"][0]["item"] == twin["item"]  # its own text: similarity 1
    assert lenders["items"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert lenders["gate"] == pytest.approx(1 / (1 + np.exp(-20 * 0.75)), abs=1e-5)
    assert sum(x["weight"] for x in lenders["items"]) == pytest.approx(1.0)
    assert len(lenders["items"]) == 5 and lent["pseudo_labels"] == {"edges": [], "triplets": []}
    items = engine.run.ranker.net.items  # type: ignore[union-attr]
    row = engine.catalogue.row_of["NEW"]
    with torch.no_grad():
        mapped = items.map(torch.as_tensor(engine.catalogue.content.array[row][None]))[0]
        residuals = items.residuals().numpy()
    lent_delta = sum(x["weight"] * residuals[engine.catalogue.row_of[x["item"]]]
                     for x in lenders["items"])  # fmt: skip
    expected = mapped.numpy() + lenders["gate"] * lent_delta  # map(c) + g·Σ α_w Δ_w
    assert np.allclose(engine.catalogue.ranker.array[row], expected, atol=1e-5)
    assert (why["delta_lenders"] is None) == (not engine.catalogue.cold[edge.item])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_search_under_a_small_filter_is_exact_on_a_large_catalogue(kind: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20_000, 32)).astype(np.float32)
    catalogue = Catalogue([{"item": str(i)} for i in range(20_000)], vectors[:, :8], vectors,
                          vectors, cold=np.zeros(20_000, bool), served=np.ones(20_000, bool),
                          index=IndexConfig(kind=kind, ef_search=16))  # fmt: skip
    for share, m in ((0.01, 50), (0.3, 100), (0.9, 100)):
        allowed = rng.random(20_000) < share
        query = rng.normal(size=32).astype(np.float32)
        rows = np.flatnonzero(allowed)
        exact = rows[np.argsort(-(vectors[rows] @ query), kind="stable")[:m]]
        found = catalogue.search(query, m, allowed)
        if kind == "flat" or share < 0.5:  # HNSW over most items is approximate
            assert found.tolist() == exact.tolist()
        assert len(found) == m and allowed[found].all()


def test_writes_survive_a_restart_once_each(served_run: Path, tmp_path: Path) -> None:
    engine = fresh(served_run, tmp_path)
    engine.add_items([{"item": f"N{i}", "title": f"new lipstick {i}"} for i in range(3)])
    engine.add_events([{"user": "walk-in", "item": "N1", "ts": 5}])
    again = open_engine(tmp_path / "run", ServeConfig())
    assert again.catalogue.ids[-3:] == ["N0", "N1", "N2"]
    assert again.user("walk-in")["history"] == ["N1"]
    other = open_engine(tmp_path / "run", ServeConfig())  # another worker on the same log
    engine.add_items([{"item": "N3", "title": "a fourth"}])
    assert other.item("N3")["new"]  # seen by the other worker before it answers


def test_http_errors_are_clear_4xx(served_run: Path, tmp_path: Path) -> None:
    client = TestClient(create_app(fresh(served_run, tmp_path), api_key="s3cret", max_body=10_000))
    user = client.get("/health").json()["example_users"][0]
    assert client.post("/recommend", json={"user_id": user, "k": 201}).status_code == 422
    assert client.post("/recommend", content=b"{").status_code == 422
    unknown = client.post("/recommend", json={"history": ["no-such-item"]})
    assert unknown.status_code == 422 and unknown.json() == {
        "detail": "unknown item 'no-such-item'"
    }
    assert client.post("/recommend", content=b"[" * 20_000).status_code == 413
    assert client.post("/items", json={"id": "X", "title": "t"}).status_code == 401
    ok = client.post("/items", json={"id": "X", "title": "t"}, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert client.get("/items/nothing").status_code == 404
    assert client.post("/recommend", json={"user_id": user, "filters": {"min_price": -1}}
                       ).status_code == 422  # fmt: skip
    assert "coldrec_requests_total" in client.get("/metrics").text
    assert client.get("/").text.startswith("<!doctype html>")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int, path: str, body: Any) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def _start(run: Path, port: int) -> subprocess.Popen[bytes]:
    coldrec = str(Path(sys.executable).with_name("coldrec"))
    process = subprocess.Popen([coldrec, "-q", "serve", str(run), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except OSError:
            assert process.poll() is None, "the server ended"
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def test_a_killed_server_keeps_every_acknowledged_write(served_run: Path, tmp_path: Path) -> None:
    fresh(served_run, tmp_path)  # the copy with its own write log
    run, port = tmp_path / "run", _free_port()
    server = _start(run, port)
    for i in range(20):
        _post(port, "/items", {"id": f"K{i}", "title": f"kill test item {i}"})
        _post(port, "/events", {"user_id": "killer", "item_id": f"K{i}"})
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    server = _start(run, port)
    try:
        history = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/users/killer", timeout=10).read())["history"]  # fmt: skip
        assert history == [f"K{i}" for i in range(20)]  # all there, none twice
        item = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/items/K19").read())
        assert item["new"] and item["served"]
    finally:
        server.terminate()
        server.wait()
