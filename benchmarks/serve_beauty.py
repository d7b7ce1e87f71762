"""``coldrec serve`` on Amazon Beauty's E0 run: online = offline, latency under load,
filtered recall, and how soon a new item is returnable.

1. **Online = offline.** A server starts over the E0 run (seed 0, made with
   ``coldrec run configs/beauty/e0.yaml --set seeds=[0]`` when ``runs/beauty_e/e0`` has
   none) with ``initial_items=trained``: the 623 cold items are not in it. They are posted
   one request each through ``POST /items`` in release order (their first interaction),
   then every evaluated test user asks ``POST /recommend`` (``user_id``, k = 20: the
   user's history as of the split). The lists are scored by the protocol's own segments
   (Recall@20 all / warm / cold) beside the run's offline metrics, and compared list by
   list with the offline top 20.
2. **Latency**, over loopback HTTP with an open-loop client (requests sent at fixed
   times on 32 keep-alive connections; a request's latency counts from when it was due,
   so a server that falls behind is charged for the wait): 60 s at 50 and 200 requests/s,
   ``/recommend`` k = 20 for random test users, over the run's 2,000 candidates and over
   200 (a second server, ``--set top_m=200``), unfiltered and with a category filter
   keeping about 1% of the items; then 20 s at rising rates until the server saturates.
   The server runs with one worker and one thread per library, the client on the other
   core.
3. **A new item is returnable** (100 probes): the time of ``POST /items`` and from its
   response to the end of the first ``/recommend`` that returns it (a filter on the
   probe's own brand makes it the only allowed item).
4. **Filtered recall** (in process, flat and HNSW indexes): for 500 users and the 1%
   filter, the top 10 against the exact filtered top 10 (every allowed item scored by
   brute force, the same fusion).
5. A screenshot of the page (``docs/serve_page.png``) after adding an item through its
   form, when Playwright and a system Chromium are installed.

Run ``.venv/bin/python benchmarks/serve_beauty.py`` (about 25 minutes once the run
exists); figures go to ``benchmarks/results/serve_beauty.{json,md}``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import ROOT, write_results
from coldrec._util.sparse import hit_matrix, list_lengths
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import HISTORY_SPLITS
from coldrec.eval.metrics import mean_metrics
from coldrec.eval.protocol import EvaluationPlan, rank
from coldrec.rank.fusion import FusedRanker
from coldrec.retrieval.index import IndexConfig
from coldrec.serve.app import open_engine
from coldrec.serve.catalogue import Filters
from coldrec.serve.engine import ServeConfig
from coldrec.serve.run import load_run

RUN = ROOT / "runs" / "beauty_e" / "e0"
COPIES = ROOT / "runs" / "serve_bench"
COLDREC = str(Path(sys.executable).with_name("coldrec"))
RATES = (50, 200)
SECONDS = 60
SATURATION_RATES = (300, 400, 600, 800)
SATURATION_SECONDS = 20
CONNECTIONS = 32
rng = np.random.default_rng(0)


def main() -> None:
    if not (RUN / "rank" / "seed0" / "model").is_dir():
        subprocess.run([COLDREC, "run", "configs/beauty/e0.yaml", "--set", "seeds=[0]",
                        "--out", str(RUN)], check=True, cwd=ROOT)  # fmt: skip
    run = load_run(RUN)
    plan = EvaluationPlan.of(run.dataset)
    evaluated = plan.users[: plan.n_with_history]
    ids = run.dataset.users["user"].to_numpy()
    shares = category_shares(run.dataset.items)
    prefix, share = min(shares.items(), key=lambda kv: abs(kv[1] - 0.01))
    figures = Figures({"run": str(RUN.relative_to(ROOT)), "users": len(evaluated),
                       "filter": {"category": list(prefix), "share": share}})  # fmt: skip
    with server("full", "--set", "initial_items=trained") as port:
        figures["posting"] = post_cold_items(port, run.dataset)
        figures["online"] = online_equals_offline(port, run, plan, ids)
        figures["latency_2000"] = load_grid(port, ids[evaluated], list(prefix))
        figures["new_item"] = new_item_latency(port, ids[evaluated], run.dataset.items)
        figures["screenshot"] = screenshot(port, run, plan)
    with server("top200", "--set", "top_m=200") as port:
        figures["latency_200"] = load_grid(port, ids[evaluated], list(prefix))
    figures["filtered_recall"] = {kind: filtered_recall(kind, evaluated, list(prefix))
                                  for kind in ("flat", "hnsw")}  # fmt: skip
    write_results("serve_beauty", figures, markdown(figures))


class Figures(dict[str, Any]):
    """The figures so far, also kept in ``COPIES/figures.json`` as each one comes in (a
    failure late in the run loses none)."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        COPIES.mkdir(parents=True, exist_ok=True)
        (COPIES / "figures.json").write_text(json.dumps(self, indent=1, default=str))


# --- the server -------------------------------------------------------------------


def served_copy(name: str) -> Path:
    """A folder linking to the run's artifacts, with a write log of its own."""
    folder = COPIES / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for entry in RUN.iterdir():
        if entry.name != "serve":
            (folder / entry.name).symlink_to(entry.resolve())
    return folder


@contextmanager
def server(name: str, *settings: str) -> Iterator[int]:
    """A ``coldrec serve`` process over a fresh copy of the run; its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([COLDREC, "-q", "serve", str(served_copy(name)), "--port",
                                str(port), *settings], env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                call(port, "GET", "/health")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait()


_connections: dict[int, http.client.HTTPConnection] = {}


def call(port: int, method: str, path: str, body: Any = None, retry: bool = True) -> Any:
    """One request on a kept-alive connection; the decoded answer (raises on 4xx/5xx).
    A connection the server closed while idle is opened again (every write here is an
    upsert or a delete, so a repeat is harmless)."""
    connection = _connections.setdefault(port, http.client.HTTPConnection("127.0.0.1", port))
    try:
        connection.request(method, path, None if body is None else json.dumps(body),
                           {"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException):
        _connections.pop(port).close()
        if not retry:
            raise
        return call(port, method, path, body, retry=False)
    if response.status >= 400:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data)


# --- 1. online = offline ------------------------------------------------------------


def post_cold_items(port: int, dataset: Any) -> dict[str, Any]:
    """Post the cold items one by one in release order; their response times."""
    items = dataset.items
    first_seen = dataset.interactions.groupby("item_idx")["ts"].min()
    cold = items.index[items["cold"]].to_numpy()
    order = sorted(cold, key=lambda row: (first_seen.get(row, np.inf), row))
    seconds = []
    for row in order:
        record = items.loc[row]
        body = {"id": record["item"], "title": record["title"],
                "categories": [list(path) for path in record["categories"]],
                "brand": None if pd.isna(record["brand"]) else str(record["brand"]),
                "price": None if pd.isna(record["price"]) else float(record["price"])}  # fmt: skip
        start = time.perf_counter()
        call(port, "POST", "/items", body)
        seconds.append(time.perf_counter() - start)
    return {"items": len(order), **percentiles(seconds)}


def online_equals_offline(port: int, run: Any, plan: EvaluationPlan, ids: np.ndarray) -> dict:
    """Every evaluated user's online top 20, scored and compared with the offline run."""
    users = plan.users[: plan.n_with_history]
    row_of = {item: row for row, item in enumerate(run.dataset.items["item"])}
    online = np.full((len(users), 20), -1, dtype=np.int64)
    start = time.perf_counter()
    for n, user in enumerate(users):
        found = call(port, "POST", "/recommend", {"user_id": str(ids[user]), "k": 20})
        rows = [row_of[entry["item"]] for entry in found["items"]]
        online[n, : len(rows)] = rows
    seconds = time.perf_counter() - start
    candidates = Candidates.load(RUN / "retrieve" / "candidates.parquet")
    fused = FusedRanker(run.ranker, run.retriever, run.mode, run.alpha, run.blend)
    offline = rank(fused, users, plan.history[np.arange(len(users))], 20,
                   candidates.for_users(users))  # fmt: skip
    metrics = json.loads((RUN / "rank" / "seed0" / "metrics-seed0.json").read_text())
    segments = {}
    for name, rows, targets in plan.segments(run.dataset.items["cold"].to_numpy()):
        if name == "cold_users":
            continue
        hits = hit_matrix(online[rows], targets)
        value = mean_metrics(hits, list_lengths(targets), (20,))["recall@20"]
        segments[name] = {"online": value, "offline": metrics["segments"][name]["recall@20"]}
    same = (online == offline).all(axis=1)
    same_set = [set(a) == set(b) for a, b in zip(online.tolist(), offline.tolist(), strict=True)]
    return {
        "segments": segments,
        "identical_lists": float(same.mean()),
        "same_items": float(np.mean(same_set)),
        "requests_per_s": len(users) / seconds,
    }


# --- 2. latency under load ----------------------------------------------------------


def load_grid(port: int, users: np.ndarray, prefix: list[str]) -> dict[str, Any]:
    """The fixed-rate runs, unfiltered and filtered, then the saturation sweep."""
    grid: dict[str, Any] = {}
    for label, filters in (("unfiltered", {}), ("filter 1%", {"category": prefix})):
        bodies = [json.dumps({"user_id": str(u), "k": 20, "filters": filters}).encode()
                  for u in rng.choice(users, 20_000)]  # fmt: skip
        for rate in RATES:
            grid[f"{label} @ {rate}/s"] = asyncio.run(open_loop(port, bodies, rate, SECONDS))
        for rate in SATURATION_RATES:
            result = asyncio.run(open_loop(port, bodies, rate, SATURATION_SECONDS))
            grid[f"{label} @ {rate}/s (sweep)"] = result
            if result["achieved_per_s"] < 0.95 * rate:
                break
    return grid


async def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Send ``POST /recommend`` at ``rate`` per second for ``seconds`` on a pool of
    connections; latency from each request's due time to its answer."""
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (job := await due.get()) is not None:
            at, body = job
            head = b"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            writer.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - at)
            statuses[status] += 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        due.put_nowait((at, bodies[i % len(bodies)]))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {
        "rate": rate,
        "requests": n,
        "achieved_per_s": n / elapsed,
        "statuses": {str(k): v for k, v in statuses.items()},
        **percentiles(latencies),
    }


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = 1000 * np.array(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}  # fmt: skip


# --- 3. a new item ------------------------------------------------------------------


def new_item_latency(port: int, users: np.ndarray, items: Any) -> dict[str, Any]:
    """POST a probe, then ask for it (its own brand as the filter) until it comes back."""
    posting, returnable, attempts = [], [], []
    for n, row in enumerate(rng.choice(len(items), 100, replace=False)):
        brand = f"probe-brand-{n}"
        start = time.perf_counter()
        call(port, "POST", "/items", {"id": f"probe-{n}", "title": items["title"].iloc[row],
                                      "brand": brand})  # fmt: skip
        acknowledged = time.perf_counter()
        attempt, returned = 0, False
        while not returned and attempt < 1000:
            attempt += 1
            body = {"user_id": str(users[n]), "k": 1, "filters": {"brand": brand}}
            found = call(port, "POST", "/recommend", body)["items"]
            returned = bool(found) and found[0]["item"] == f"probe-{n}"
        returnable.append(time.perf_counter() - acknowledged)
        posting.append(acknowledged - start)
        attempts.append(attempt if returned else None)
        call(port, "DELETE", f"/items/probe-{n}")
    return {"post": percentiles(posting), "response_to_returned": percentiles(returnable),
            "max_attempts": max(a or 0 for a in attempts),
            "never_returned": attempts.count(None)}  # fmt: skip


# --- 4. filtered recall -------------------------------------------------------------


def category_shares(items: Any) -> dict[tuple[str, ...], float]:
    """The share of items under each category path prefix."""
    under: Counter[tuple[str, ...]] = Counter()
    for paths in items["categories"]:
        under.update({tuple(path[:depth]) for path in paths for depth in range(1, len(path) + 1)})
    return {prefix: count / len(items) for prefix, count in under.items()}


def filtered_recall(kind: str, users: np.ndarray, prefix: list[str]) -> dict[str, Any]:
    """Top 10 under the 1% filter against the exact filtered top 10, 500 users."""
    engine = open_engine(served_copy(f"recall-{kind}"),
                         ServeConfig(index=IndexConfig(kind=kind)))  # fmt: skip
    filters = Filters(category=prefix)
    same = []
    for user in rng.choice(users, 500, replace=False):
        seen = engine.users.histories[user]
        blocked = np.isin(np.arange(len(engine.catalogue)), seen)
        allowed = np.flatnonzero(engine.catalogue.allowed(filters, blocked))
        query = engine.user_vector(int(user), seen)
        retriever = engine.catalogue.retriever.array[allowed] @ query
        order = np.argsort(-retriever, kind="stable")[: engine.top_m]
        context = engine.run.ranker.contexts_of([np.array(seen)])[0]
        ranker = engine.catalogue.ranker.array[allowed[order]] @ context
        fused = engine.fused(allowed[order], ranker, retriever[order])
        exact = allowed[order][np.argsort(-np.nan_to_num(fused, nan=-np.inf), kind="stable")][:10]
        got = engine.recommend(engine.users.ids[user], k=10, filters=filters).items
        same.append([engine.catalogue.row_of[e["item"]] for e in got] == exact.tolist())
    return {"requests": len(same), "identical_top10": float(np.mean(same))}


# --- 5. the page --------------------------------------------------------------------


def screenshot(port: int, run: Any, plan: EvaluationPlan) -> str:
    """Add an item through the page's form for a test user; save the page."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: Playwright is not installed"
    if chromium is None:
        return "skipped: no system Chromium"
    user = str(run.dataset.users["user"].iloc[plan.users[0]])
    latest = run.dataset.sequences(*HISTORY_SPLITS)[plan.users[0]][-1]
    record = run.dataset.items.iloc[latest]
    path = ROOT / "docs" / "serve_page.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#user", user)
        page.click("#pick button")
        page.wait_for_selector("#recommendations li")
        page.fill("#new-id", "NEW-DEMO")
        page.fill("#new-title", f"{record['title']} (new edition)")
        page.fill("#new-category", " > ".join(record["categories"][0]))
        page.click("#add button")
        page.wait_for_function("document.getElementById('added').textContent !== ''")
        page.locator('#recommendations li[data-item="NEW-DEMO"]').click()
        page.wait_for_function("document.getElementById('why').textContent.includes('alpha')")
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    return str(path.relative_to(ROOT))


# --- the report ---------------------------------------------------------------------


def markdown(f: dict[str, Any]) -> str:
    online = f["online"]
    lines = [
        "# coldrec serve on Amazon Beauty (E0, seed 0)",
        "",
        f"Run `{f['run']}`; {f['users']:,} evaluated test users. `benchmarks/serve_beauty.py`.",
        "",
        "## Online = offline",
        "",
        f"The server started without the {f['posting']['items']} cold items; they were "
        f"posted one request each in release order (POST p50 {f['posting']['p50_ms']:.1f} ms, "
        f"p99 {f['posting']['p99_ms']:.1f} ms). Then every test user asked `/recommend` "
        f"(k = 20) over HTTP ({online['requests_per_s']:.0f} requests/s, one at a time).",
        "",
        "| Recall@20 | online | offline (the run's metrics) | difference |",
        "|---|---|---|---|",
        *[
            f"| {name} | {s['online']:.4f} | {s['offline']:.4f} | "
            f"{s['online'] - s['offline']:+.4f} |"
            for name, s in online["segments"].items()
        ],
        "",
        f"Identical top-20 lists: {online['identical_lists']:.2%}; the same 20 items: "
        f"{online['same_items']:.2%}.",
        "",
        "## Latency (loopback, open loop, one worker)",
        "",
        f"`/recommend`, k = 20, random test users; the 1% filter is the category "
        f"`{' > '.join(f['filter']['category'])}` ({f['filter']['share']:.2%} of the items). "
        "Latency counts from when a request was due.",
        "",
        "| candidates | load | rate (req/s) | achieved | p50 ms | p99 ms | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for depth in ("2000", "200"):
        for label, r in f[f"latency_{depth}"].items():
            lines.append(f"| {depth} | {label.split(' @ ')[0]}{' (sweep)' * ('sweep' in label)}"
                         f" | {r['rate']} | {r['achieved_per_s']:.0f} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['statuses']} |")  # fmt: skip
    new = f["new_item"]
    lines += [
        "", "## A new item", "",
        f"`POST /items` p50 {new['post']['p50_ms']:.1f} ms, p99 {new['post']['p99_ms']:.1f} ms; "
        f"from its response to the end of the first `/recommend` that returns it: p50 "
        f"{new['response_to_returned']['p50_ms']:.1f} ms, p99 "
        f"{new['response_to_returned']['p99_ms']:.1f} ms (attempts needed: at most "
        f"{new['max_attempts']}; never returned: {new['never_returned']} of 100).", "",
        "## Filtered recall (1% filter, top 10 against the exact filtered top 10)", "",
        *[f"- {kind}: {r['identical_top10']:.1%} of {r['requests']} requests identical"
          for kind, r in f["filtered_recall"].items()],
        "", f"Screenshot: {f['screenshot']}",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
