"""Shared fixtures: settings per database backend, a running app, real local receivers.

Every test that takes `settings` runs on SQLite and, when HOOKLINE_TEST_POSTGRES_URL is set,
on PostgreSQL too. Under CI=true a missing PostgreSQL URL fails those tests instead of skipping.
"""

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from hookline import migrate
from hookline.config import Settings
from hookline.models import Base
from hookline.store import Store, open_store
from tests.support.app import RunningApp, running_app
from tests.support.db import inspection_engine as create_engine
from tests.support.receiver import Receiver

POSTGRES_URL = os.environ.get("HOOKLINE_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated; dropped at the end."""
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("HOOKLINE_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
        pytest.skip("HOOKLINE_TEST_POSTGRES_URL is not set")
    name = f"hookline_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_pg_dsn(POSTGRES_URL))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _pg_dsn(POSTGRES_URL, name)

    async def upgrade() -> None:
        engine = create_engine(Settings(_env_file=None, database_url=url))
        try:
            await migrate.upgrade_engine(engine)
        finally:
            await engine.dispose()

    asyncio.run(upgrade())
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _truncate_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)

    async def run() -> None:
        conn = await asyncpg.connect(_pg_dsn(url))
        try:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def empty_postgres(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied: for tests that only make sense there."""
    _truncate_postgres(postgres_database)
    return postgres_database


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, to copy: migrating costs ~90 ms a test."""
    path = tmp_path_factory.mktemp("template") / "hookline.db"

    async def upgrade() -> None:
        engine = create_engine(Settings(_env_file=None, database_url=f"sqlite:///{path}"))
        try:
            await migrate.upgrade_engine(engine)
        finally:
            await engine.dispose()  # the last connection checkpoints the WAL into the file

    asyncio.run(upgrade())
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the session's PostgreSQL database truncated."""
    if request.param == "sqlite":
        path = tmp_path / "hookline.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)
    return url


ADMIN_TOKEN = "hl_admin_test-token-of-the-test-suite-0123456789"

# Fast settings for tests: retries within seconds, receivers on loopback allowed.
TEST_DEFAULTS: dict[str, Any] = {
    "allow_private_networks": True,
    "retry_schedule": (0.2, 0.4),
    "retry_jitter": 0.0,
    "delivery_timeout": 2.0,
    "lease_seconds": 5.0,
    "poll_interval": 0.2,
    "result_flush_interval": 0.02,
    # Tests count what receivers get; the creation ping has tests of its own.
    "ping_on_create": False,
    # The test clients send it (tests/support/app.py); the auth tests send others or none.
    "admin_token": ADMIN_TOKEN,
    # Tests send bursts far beyond any sane client; the limit has tests of its own.
    "rate_limit_per_second": 0,
}


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on this test's database; keyword arguments override TEST_DEFAULTS."""

    def make(**overrides: Any) -> Settings:
        values = {**TEST_DEFAULTS, "data_dir": tmp_path / "data", "database_url": database_url}
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """A store on this test's database, closed afterwards."""
    opened = open_store(settings)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[RunningApp]:
    """The app (no worker) with its lifespan running, and an httpx client on it."""
    async with running_app(settings) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 that records what it gets and answers as told."""
    async with Receiver() as running:
        yield running
