"""The app factory: routes, the error handler and a lifespan that owns engine, sender, worker."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hookline import __version__, migrate
from hookline.api import health
from hookline.config import Settings
from hookline.db import create_engine, create_sessionmaker
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.errors import AppError
from hookline.events.router import router as events_router
from hookline.users.router import router as users_router
from hookline.webhooks.endpoint_router import router as endpoint_router
from hookline.webhooks.router import router as webhooks_router

DESCRIPTION = """A webhook sender: every user registration and message is POSTed, signed per
[Standard Webhooks](https://www.standardwebhooks.com), to the URLs subscribed to its event,
with retries, from a transactional outbox."""


def create_app(settings: Settings, *, run_worker: bool = False, migrate_db: bool = True) -> FastAPI:
    """Build the API; with `run_worker` the delivery worker runs in the same process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        if migrate_db:
            await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        sender = Sender(
            timeout=settings.delivery_timeout,
            concurrency=settings.worker_concurrency,
        )
        await sender.start()
        worker = None
        worker_task = None
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        app.state.sender = sender
        app.state.wake_workers = lambda: None
        if run_worker:
            worker = Worker(settings=settings, engine=engine, sender=sender)
            app.state.worker = worker
            app.state.wake_workers = worker.wake
            worker_task = asyncio.create_task(worker.run())
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            await sender.close()
            await engine.dispose()

    app = FastAPI(title="hookline", version=__version__, description=DESCRIPTION, lifespan=lifespan)

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    app.include_router(health.router)
    app.include_router(users_router)
    app.include_router(webhooks_router)
    app.include_router(endpoint_router)
    app.include_router(events_router)
    return app
