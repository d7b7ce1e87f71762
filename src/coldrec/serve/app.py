"""The HTTP service over an :class:`~coldrec.serve.engine.Engine` (FastAPI, OpenAPI at
``/docs`` and ``/openapi.json``).

=========================  ==============================================================
``POST /recommend``        the top k for a ``user_id`` or a ``history`` (fallback: popular)
``POST /items``            add or update one item or a batch; recommendable at once
``GET /items/{id}``        an item's record and state; ``DELETE`` removes it from results
``POST /events``           interactions (one or a batch), in the user's history at once
``GET /users/{id}``        a user's history
``GET /explain``           why an item is where it is in a user's list
``GET /health``            counts; ``GET /metrics``: Prometheus text (requests, latency)
``GET /``                  the web page
=========================  ==============================================================

Requests are validated (sizes bounded; bodies over ``max_body`` bytes are refused with
413); with an API key, the write endpoints need it in ``X-API-Key``. No request value is
ever used as a path. Errors are JSON ``{"detail": …}`` with a 4xx status.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coldrec import __version__
from coldrec.errors import DataError
from coldrec.serve.catalogue import Filters
from coldrec.serve.engine import BaseEngine, Engine, ServeConfig
from coldrec.serve.run import StarsRun, load_run
from coldrec.serve.stars import StarsEngine
from coldrec.serve.store import WriteLog

__all__ = ["create_app", "from_environment", "open_engine", "serve"]

_ENV = "COLDREC_SERVE"
"""Where ``coldrec serve`` hands its settings to worker processes (JSON)."""

Id = Annotated[str, Field(min_length=1, max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=500)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersIn(_Strict):
    """What a recommendation may hold."""

    category: list[Name] | None = Field(None, max_length=10)
    """A category path prefix, root first: ``["Beauty", "Makeup"]``."""
    brand: Name | None = None
    min_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    exclude: list[Id] = Field(default_factory=list, max_length=1000)


class RecommendIn(_Strict):
    """A user id (a known user's history is used), or a history of item ids (an
    anonymous user), or neither (popular items)."""

    user_id: Id | None = None
    history: list[Id] | None = Field(None, max_length=1000)
    """Item ids, oldest first; overrides the user's own history."""
    k: int = Field(20, ge=1, le=200)
    filters: FiltersIn = Field(default_factory=FiltersIn)
    exclude_seen: bool = True
    """Leave out the items of the history."""
    at: int | None = Field(None, ge=0, lt=10**12)
    """The request time, Unix seconds (default now): STARS's context offset."""
    mode: Literal["next", "general", "round_robin"] | None = None
    """STARS runs: the user vector that ranks (default the server's)."""


class ItemIn(_Strict):
    """An item to add, or the new state of a known one."""

    id: Id
    title: Annotated[str, Field(max_length=2000)] | None = None
    categories: list[list[Name]] = Field(default_factory=list, max_length=20)
    """Category paths, root first: ``[["Beauty", "Makeup", "Lips"]]``."""
    brand: Name | None = None
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    available: bool = True
    """False keeps the item out of every result (out of stock)."""
    tags: list[Name] = Field(default_factory=list, max_length=50)
    """Attribute tags from the model's vocabulary (STARS runs read them into the token)."""

    @field_validator("categories")
    @classmethod
    def _short_paths(cls, value: list[list[str]]) -> list[list[str]]:
        if any(len(path) > 10 for path in value):
            raise ValueError("a category path has at most 10 levels")
        return value


class EventIn(_Strict):
    """An interaction: appended to the user's history."""

    user_id: Id
    item_id: Id
    ts: int | None = Field(None, ge=0, lt=10**12)


def create_app(engine: BaseEngine, api_key: str | None = None, max_body: int = 1 << 20) -> FastAPI:
    """The service over ``engine``; ``api_key`` protects the write endpoints."""
    app = FastAPI(title="coldrec", version=__version__,
                  description="Recommendations that take a new item at once.")  # fmt: skip
    metrics = _Metrics()

    def writer(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if api_key is not None and x_api_key != api_key:
            raise HTTPException(401, "this endpoint needs the API key in X-API-Key")

    @app.exception_handler(DataError)
    async def _unknown(request: Request, error: DataError) -> JSONResponse:
        status = 404 if request.method in ("GET", "DELETE") else 422
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.middleware("http")
    async def _measure(
        request: Request, call: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call(request)
        route = request.scope.get("route")
        metrics.record(getattr(route, "path", "other"), response.status_code,
                       time.perf_counter() - start)  # fmt: skip
        return response

    @app.post("/recommend")
    def recommend(body: RecommendIn) -> dict[str, Any]:
        filters = Filters(body.filters.category, body.filters.brand, body.filters.min_price,
                          body.filters.max_price, tuple(body.filters.exclude))  # fmt: skip
        found = engine.recommend(body.user_id, body.history, body.k, filters, body.exclude_seen,
                                 body.at, body.mode)  # fmt: skip
        return found.__dict__

    @app.post("/items", dependencies=[Depends(writer)])
    def add_items(body: ItemIn | list[ItemIn]) -> dict[str, Any]:
        items = body if isinstance(body, list) else [body]
        if not 1 <= len(items) <= 1000:
            raise HTTPException(422, "send 1 to 1,000 items at once")
        records = [{"item": i.id, **i.model_dump(exclude={"id"})} for i in items]
        seq = engine.add_items(records)
        return {"accepted": len(records), "log_position": seq}

    @app.get("/items/{item_id}")
    def get_item(item_id: str) -> dict[str, Any]:
        return engine.item(item_id)

    @app.delete("/items/{item_id}", dependencies=[Depends(writer)])
    def delete_item(item_id: str) -> dict[str, Any]:
        return {"deleted": item_id, "log_position": engine.delete_item(item_id)}

    @app.post("/events", dependencies=[Depends(writer)])
    def add_events(body: EventIn | list[EventIn]) -> dict[str, Any]:
        events = body if isinstance(body, list) else [body]
        if not 1 <= len(events) <= 10_000:
            raise HTTPException(422, "send 1 to 10,000 events at once")
        seq = engine.add_events([{"user": e.user_id, "item": e.item_id,
                                  "ts": e.ts if e.ts is not None else int(time.time())}
                                 for e in events])  # fmt: skip
        return {"accepted": len(events), "log_position": seq}

    @app.get("/users/{user_id}")
    def get_user(user_id: str) -> dict[str, Any]:
        return engine.user(user_id)

    @app.get("/explain")
    def explain(
        user_id: Annotated[str, Query(max_length=200)],
        item_id: Annotated[str, Query(max_length=200)],
    ) -> dict[str, Any]:
        return engine.explain(user_id, item_id)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **engine.health()}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.text(engine.health())

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("coldrec.serve").joinpath("page.html").read_text("utf-8")

    app.add_middleware(_LimitBody, limit=max_body)
    return app


class _LimitBody:
    """Refuse a request body over ``limit`` bytes with 413, whether or not it says its
    length (a chunked body is counted as it arrives)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail": "the request body is over {limit:,} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf)


class _Metrics:
    """Request counts by route and status, and latency histograms by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, int], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts[route, status] = self.counts.get((route, status), 0) + 1
            buckets = self.buckets.setdefault(route, [0] * len(_BUCKETS))
            for i, bound in enumerate(_BUCKETS):
                buckets[i] += seconds <= bound
            self.sums[route] = self.sums.get(route, 0.0) + seconds

    def text(self, health: dict[str, Any]) -> str:
        lines = ["# TYPE coldrec_requests_total counter"]
        with self._lock:
            lines += [f'coldrec_requests_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.counts.items())]  # fmt: skip
            lines.append("# TYPE coldrec_request_seconds histogram")
            for route, buckets in sorted(self.buckets.items()):
                for bound, count in zip(_BUCKETS, buckets, strict=True):
                    edge = "+Inf" if math.isinf(bound) else f"{bound:g}"
                    lines.append(f'coldrec_request_seconds_bucket{{route="{route}",le="{edge}"}}'
                                 f" {count}")  # fmt: skip
                lines.append(f'coldrec_request_seconds_sum{{route="{route}"}} {self.sums[route]}')
                lines.append(f'coldrec_request_seconds_count{{route="{route}"}} {buckets[-1]}')
        lines += ["# TYPE coldrec_index_size gauge", f"coldrec_index_size {health['index_size']}",
                  "# TYPE coldrec_items gauge", f"coldrec_items {health['served']}"]  # fmt: skip
        return "\n".join(lines) + "\n"


def open_engine(run_dir: Path, config: ServeConfig) -> BaseEngine:
    """The engine of the run in ``run_dir`` (a STARS run's or the fused one), its writes
    kept in ``run_dir/serve/``."""
    run = load_run(run_dir, config.seed)
    log = WriteLog(run_dir / "serve" / "writes.sqlite")
    return StarsEngine(run, config, log) if isinstance(run, StarsRun) else Engine(run, config, log)


def from_environment() -> FastAPI:
    """The app of a worker process, from the settings ``coldrec serve`` left in the
    environment (uvicorn's factory for ``--workers`` above 1)."""
    settings = json.loads(os.environ[_ENV])
    engine = open_engine(Path(settings["run"]), ServeConfig.model_validate(settings["config"]))
    return create_app(engine, settings["api_key"])


def serve(
    run_dir: Path,
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    api_key: str | None = None,
) -> None:
    """Serve the run until interrupted. Workers share the write log, so each sees every
    write before it answers. Requests are logged unless logging is at warnings only
    (``coldrec -q``)."""
    import uvicorn

    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    logs: dict[str, Any] = {"log_level": "warning" if quiet else "info", "access_log": not quiet}
    if workers == 1:
        app = create_app(open_engine(run_dir, config), api_key)
        uvicorn.run(app, host=host, port=port, **logs)
        return
    os.environ[_ENV] = json.dumps({"run": str(Path(run_dir).resolve()), "api_key": api_key,
                                   "config": config.model_dump(mode="json")})  # fmt: skip
    uvicorn.run("coldrec.serve.app:from_environment", factory=True, host=host, port=port,
                workers=workers, **logs)  # fmt: skip
