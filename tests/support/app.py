"""Run the ASGI app with its lifespan in the test's event loop, with an httpx client on it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from hookline.api.app import create_app
from hookline.config import Settings
from tests.support.db import test_db


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings


@asynccontextmanager
async def running_app(
    settings: Settings, *, run_worker: bool = False, migrate_db: bool = True
) -> AsyncIterator[RunningApp]:
    app = create_app(settings, run_worker=run_worker, migrate_db=migrate_db)
    async with app.router.lifespan_context(app):
        # For tests to inspect and arrange rows; hookline itself never uses it.
        app.state.test_db = test_db(settings)
        transport = httpx.ASGITransport(app=app)
        # As the admin, who may do everything: tests of who may do what send other tokens.
        headers = {}
        if settings.admin_token is not None:
            headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            try:
                yield RunningApp(app=app, client=client, settings=settings)
            finally:
                await app.state.test_db.engine.dispose()
