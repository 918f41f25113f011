"""The app factory: routes, the error handler and a lifespan that owns engine, sender, worker."""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.abc import AbstractResolver
from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hookline import __version__, logs, runtime
from hookline.api import auth, health, idempotency, metrics, openapi, responses
from hookline.api.access_log import AccessLog
from hookline.api.limits import BodySizeLimit, JsonShapeLimit, RateLimit, RefuseNul
from hookline.config import Settings
from hookline.dashboard.routes import router as dashboard_router
from hookline.errors import AppError
from hookline.events.router import router as events_router
from hookline.store import StoreUnavailable
from hookline.users.router import router as users_router
from hookline.webhooks import endpoint_router
from hookline.webhooks.router import router as webhooks_router

log = logging.getLogger("hookline.api")

MAX_BODY_BYTES = 1_048_576  # bodies over 1 MiB are refused with 413

DESCRIPTION = """A webhook sender: every user registration and message is POSTed, signed per
[Standard Webhooks](https://www.standardwebhooks.com), to the URLs subscribed to its event,
with retries, from a transactional outbox."""


def create_app(
    settings: Settings,
    *,
    run_worker: bool = False,
    migrate_db: bool = True,
    resolver: AbstractResolver | None = None,
) -> FastAPI:
    """Build the API; with `run_worker` the delivery worker runs in the same process.

    `resolver` replaces the system's DNS resolution for webhook hosts (tests use a stub).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = False
        try:
            async with runtime.running(
                settings, migrate_db=migrate_db, run_worker=run_worker, resolver=resolver
            ) as running:
                app.state.runtime = running
                log.info("api started", extra=_start_fields(running, run_worker))
                started = True
                yield
        finally:
            if started:  # after the worker drained, when there is one
                log.info("api stopped", extra=logs.fields(pid=os.getpid()))

    app = FastAPI(
        title="hookline",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=responses.COMMON,
        # Served by `openapi.install`, with the event types' webhooks.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks look the global providers up on every request
        # (2.4 us each); hookline exports Prometheus metrics and logs of its own, no
        # OpenTelemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    openapi.install(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI parses a JSON body before it runs dependencies; the caller comes first.
        refused = await auth.refuse_anonymous(request)
        if refused is not None:
            return await _app_error(request, refused)
        exc = _capped(exc)
        try:
            return await request_validation_exception_handler(request, exc)
        except (ValueError, UnicodeError, RecursionError):
            # The offending input cannot be echoed (NaN, a lone surrogate, deep nesting).
            return JSONResponse({"detail": plain_errors(exc)}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # Nothing was acknowledged: the client may send it again once the database is back.
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": "The database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(idempotency.Replay)
    async def _replay(_request: Request, exc: idempotency.Replay) -> JSONResponse:
        return exc.response()

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    # The last added runs first: a caller over its rate is refused before anything is read.
    app.add_middleware(JsonShapeLimit)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    # A NUL in a path or query value would reach the database (PostgreSQL refuses it).
    app.add_middleware(RefuseNul)
    app.add_middleware(
        RateLimit,
        per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
    )
    # Outermost: one line for every answer, the refusals above included.
    app.add_middleware(AccessLog)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(users_router)
    app.include_router(webhooks_router)
    app.include_router(endpoint_router.collection)
    app.include_router(endpoint_router.by_id, prefix="/endpoints")
    # The name scripts used first: the same handlers, left out of the schema.
    app.include_router(endpoint_router.by_id, prefix="/webhooks", include_in_schema=False)
    app.include_router(events_router)
    # The web pages: sessions, not bearer tokens; left out of the schema.
    app.include_router(dashboard_router)
    return app


def _start_fields(running: runtime.Runtime, run_worker: bool) -> dict[str, Any]:
    return logs.fields(
        version=__version__, pid=os.getpid(), database=running.store.dialect, worker=run_worker
    )


# A body can hold tens of thousands of wrong fields; an answer listing each costs seconds of
# CPU and megabytes. The first ones say what is wrong.
MAX_REPORTED_ERRORS = 20


# An input echoed in an error is left out past this size (a whole body is no help to read).
MAX_ECHOED_ITEMS = 20
MAX_ECHOED_CHARS = 1000


def _capped(exc: RequestValidationError) -> RequestValidationError:
    errors = [_without_large_input(e) for e in exc.errors()[: MAX_REPORTED_ERRORS + 1]]
    if len(errors) > MAX_REPORTED_ERRORS:
        more = len(exc.errors()) - MAX_REPORTED_ERRORS
        summary = {"type": "too_many_errors", "loc": ["body"], "msg": f"{more} more errors"}
        errors = [*errors[:MAX_REPORTED_ERRORS], summary]
    return RequestValidationError(errors, body=None)


def _without_large_input(error: Any) -> Any:
    found = error.get("input")
    large = (isinstance(found, dict | list) and len(found) > MAX_ECHOED_ITEMS) or (
        isinstance(found, str | bytes) and len(found) > MAX_ECHOED_CHARS
    )
    return {k: v for k, v in error.items() if k != "input"} if large else error


def create_app_from_environment() -> FastAPI:
    """The API from HOOKLINE_* settings: for `hookline api --workers N`, one per process."""
    from hookline.api import server

    settings = Settings()
    logs.configure(settings.log_format)  # this process's own: uvicorn started it anew
    server.raise_open_files_limit()
    server.LimitedHttpToolsProtocol.configure(header_timeout=settings.header_timeout)
    return create_app(settings)


def plain_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The validation errors without the input they echo, every string made encodable."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value if isinstance(value, int) else str(value)

    return [
        {"type": e.get("type"), "loc": [clean(p) for p in e.get("loc", ())], "msg": clean(e["msg"])}
        for e in exc.errors()
    ]
