"""Run the ASGI app with its lifespan in the test's event loop, with an httpx client on it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from hookline.api.app import create_app
from hookline.config import Settings


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
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield RunningApp(app=app, client=client, settings=settings)
