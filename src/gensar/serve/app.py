"""The HTTP API (FastAPI) over a ``Service``, and the web page at ``/``.

=======================  =====================================================================
``POST /recommend``      ``{user_id, k}`` -> ranked items (micro-batched)
``POST /search``         ``{query, k, user_id?}`` -> ranked items; without a user: ad-hoc search
``POST /suggest-query``  ``{user_id, k}`` -> queries the user may issue next
``POST /events``         record a rec click or a search session (fsynced, then acknowledged); needs
                         the API key when the server has one (``access.py``)
``POST /items``          add items to the trained catalog (identifiers from the trained ID stage,
                         fsynced to the items log, then served at once); needs the API key too
``GET /items/{item_id}`` an item's catalog entry
``GET /users``           user ids (``prefix``, ``limit``), for the page's user picker
``GET /users/{user_id}/history``  the user's newest events
``GET /health``          engine, counts, micro-batching statistics
``GET /``                the web page; ``/docs`` and ``/openapi.json`` are FastAPI's
=======================  =====================================================================

Every 4xx answer is an ``ErrorBody`` JSON (``{"error": "...", "detail": [...]}``): a malformed JSON
body is a 400, a body that does not fit the schema or names an unknown item a 422, an unknown
item or path a 404, a write without the server's API key a 401, a body over the cap a 413 (before it
is parsed), items a run cannot take (no trained identifiers, opened read-only) a 409. Nothing a
client sends should produce a 5xx (tests/test_serve_fuzz.py); an event store that cannot be
reached (a PostgreSQL restart) is a 503.

Answers that read users' histories first fold in what other server processes stored
(``Service.sync``), so they run off the event loop like the engine calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gensar import __version__
from gensar.data.canonical import parse_item
from gensar.errors import GensarError, InputError
from gensar.serve.access import WRITE_ACCESS, AccessConfig, BodyLimit
from gensar.serve.batcher import EngineThread, MicroBatcher
from gensar.serve.catalog import ItemProblem
from gensar.serve.schemas import (
    MAX_ID_CHARS,
    AddItemsRequest,
    AddItemsResponse,
    BatchStatsOut,
    ErrorBody,
    ErrorDetail,
    EventRequest,
    EventResponse,
    HealthResponse,
    HistoryResponse,
    ItemResponse,
    RecommendRequest,
    RecommendResponse,
    SearchRequest,
    SearchResponse,
    SuggestRequest,
    SuggestResponse,
    UsersResponse,
)
from gensar.serve.service import Service
from gensar.serve.store import StoreUnavailable

log = logging.getLogger(__name__)

_ERRORS = {
    400: {"model": ErrorBody, "description": "malformed JSON"},
    422: {"model": ErrorBody, "description": "the request does not fit the schema"},
}
_NOT_FOUND = {404: {"model": ErrorBody, "description": "not found"}}
_TOO_LARGE = {413: {"model": ErrorBody, "description": "request body over the server's --max-body-bytes"}}
_WRITE = {401: {"model": ErrorBody, "description": "missing or wrong API key (servers started with --api-key-file)"}}
_CONFLICT = {409: {"model": ErrorBody, "description": "the run cannot take items (no trained identifiers, read-only)"}}


def create_app(service: Service, access: AccessConfig | None = None, owns_service: bool = False) -> FastAPI:
    """An app answering from ``service``; the caller keeps ownership of (and closes) the service,
    unless ``owns_service`` (a worker process's app closes it when its server stops).

    ``access``: the write endpoints' API key and the request-body cap (default: no key, 1 MB).
    """
    access = access if access is not None else AccessConfig()
    worker = EngineThread()
    cfg = service.cfg
    batchers = {
        "recommend": MicroBatcher(service.recommend, worker, cfg.max_batch, cfg.max_wait_ms),
        "search": MicroBatcher(service.search, worker, cfg.max_batch, cfg.max_wait_ms),
        "suggest-query": MicroBatcher(service.suggest, worker, cfg.max_batch, cfg.max_wait_ms),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for b in batchers.values():
            await b.aclose()
        worker.shutdown()
        if owns_service:
            service.close()

    app = FastAPI(title="gensar", version=__version__, lifespan=lifespan,
                  description="Unified generative search and recommendation (GenSAR).")
    app.state.service = service
    app.state.batchers = batchers
    app.state.access = access
    app.add_middleware(BodyLimit, max_bytes=access.max_body_bytes)

    # ---- errors: one JSON shape, never a traceback -----------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "request body is not valid JSON")
        details = [ErrorDetail(loc=[str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                               msg=str(e.get("msg", "")), type=str(e.get("type", ""))) for e in errors]
        first = details[0] if details else None
        message = f"{'.'.join(map(str, first.loc))}: {first.msg}" if first else "invalid request"
        return _error(422, message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail), headers=err.headers)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, err: StoreUnavailable) -> JSONResponse:
        log.error("%s %s: event store unavailable: %s", request.method, request.url.path, err)
        return _error(503, "the event store is unavailable; retry later")

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception) -> JSONResponse:
        # A bug, not bad input: log the traceback, answer JSON like every other error.
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return _error(500, f"internal error ({type(err).__name__}); see the server log")

    # ---- routes ------------------------------------------------------------------------------
    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS | _TOO_LARGE)
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        return await batchers["recommend"].submit(req)

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS | _TOO_LARGE)
    async def search(req: SearchRequest) -> SearchResponse:
        return await batchers["search"].submit(req)

    @app.post("/suggest-query", response_model=SuggestResponse, responses=_ERRORS | _TOO_LARGE)
    async def suggest_query(req: SuggestRequest) -> SuggestResponse:
        return await batchers["suggest-query"].submit(req)

    @app.post("/events", response_model=EventResponse, responses=_ERRORS | _WRITE | _TOO_LARGE,
              dependencies=[WRITE_ACCESS])
    async def post_event(req: EventRequest) -> EventResponse | JSONResponse:
        problem = service.event_problem(req)
        if problem is not None:
            return _error(422, problem, [ErrorDetail(loc=["body"], msg=problem, type="value_error")])
        return await run_in_threadpool(service.add_event, req)  # write + fsync off the event loop

    @app.post("/items", response_model=AddItemsResponse, responses=_ERRORS | _WRITE | _TOO_LARGE | _CONFLICT,
              dependencies=[WRITE_ACCESS])
    async def post_items(req: AddItemsRequest) -> AddItemsResponse | JSONResponse:
        try:
            items = [parse_item(i.model_dump()) for i in req.items]  # the items file's rules (ids stripped)
        except InputError as err:
            return _error(422, str(err), [ErrorDetail(loc=["body", "items"], msg=str(err), type="value_error")])
        problem = service.item_problem(items)
        if problem is None:
            try:  # on the engine thread: the engines grow between batches, never during one
                return await asyncio.get_running_loop().run_in_executor(worker.executor(), service.add_items, items)
            except ItemProblem as raced:  # another POST /items took an id in between
                problem = raced
            except GensarError as err:
                return _error(409, str(err))
        return _error(422, str(problem), [ErrorDetail(loc=["body", "items", problem.position, problem.field],
                                                      msg=problem.message, type="value_error")])

    @app.get("/items/{item_id}", response_model=ItemResponse, responses=_NOT_FOUND | {422: _ERRORS[422]})
    async def get_item(item_id: Annotated[str, Path(max_length=MAX_ID_CHARS)]) -> ItemResponse | JSONResponse:
        item = service.item(item_id)
        if item is None:
            return _error(404, f"unknown item '{item_id}'")
        return item

    @app.get("/users", response_model=UsersResponse, responses={422: _ERRORS[422]})
    async def list_users(prefix: Annotated[str, Query(max_length=MAX_ID_CHARS)] = "",
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> UsersResponse:
        users, total = await run_in_threadpool(service.users, prefix, limit)
        return UsersResponse(users=users, total=total)

    @app.get("/users/{user_id}/history", response_model=HistoryResponse, responses={422: _ERRORS[422]})
    async def user_history(user_id: Annotated[str, Path(max_length=MAX_ID_CHARS)],
                           limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> HistoryResponse:
        return await run_in_threadpool(service.history, user_id, limit)

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        await run_in_threadpool(service.sync)
        return HealthResponse(
            status="ok", engine=service.engine.name, items=len(service.item_ids), users=len(service.histories),
            live_events=service.histories.live_events, writes_need_key=access.api_key is not None, pid=os.getpid(),
            batching={name: BatchStatsOut(batches=b.stats.batches, requests=b.stats.requests, largest=b.stats.largest)
                      for name, b in batchers.items()})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    return app


def _error(status: int, message: str, detail: list[ErrorDetail] | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=message.splitlines()[0] if message else "error", detail=detail or [])
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


@functools.cache
def _page() -> str:
    return resources.files("gensar.serve").joinpath("static/index.html").read_text(encoding="utf-8")
