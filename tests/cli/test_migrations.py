"""Migrations: 0004's index may be built online beforehand (docs/deploy.md), and is kept."""

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hookline import migrate
from hookline.config import Settings
from tests.conftest import IN_CI, POSTGRES_URL, _pg_dsn
from tests.support.db import inspection_engine as create_engine

INDEX = "ix_deliveries_endpoint_pending"
BUILT_ONLINE = (
    f"CREATE INDEX {{concurrently}} IF NOT EXISTS {INDEX} ON deliveries"
    " (endpoint_id, next_attempt_at) WHERE status = 'pending'"
)


def _to(revision: str) -> Callable[[Connection], None]:
    def upgrade(connection: Connection) -> None:
        command.upgrade(migrate._config(connection), revision)

    return upgrade


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database of each kind (PostgreSQL's dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hookline.db'}"
        return
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("HOOKLINE_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
        pytest.skip("HOOKLINE_TEST_POSTGRES_URL is not set")
    name = f"hookline_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_pg_dsn(POSTGRES_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _pg_dsn(POSTGRES_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _indexes(engine: AsyncEngine, postgres: bool) -> list[str]:
    query = (
        "SELECT indexname FROM pg_indexes WHERE tablename = 'deliveries'"
        if postgres
        else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'"
    )
    async with engine.connect() as conn:
        return sorted((await conn.execute(text(query))).scalars())


async def test_an_index_built_online_before_0004_is_kept(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)
    postgres = not settings.is_sqlite
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0003"))
        before = await _indexes(engine, postgres)
        if postgres:  # CONCURRENTLY cannot run in a transaction: autocommit
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.execute(text(BUILT_ONLINE.format(concurrently="CONCURRENTLY")))
        else:
            async with engine.begin() as conn:
                await conn.execute(text(BUILT_ONLINE.format(concurrently="")))
        await migrate.upgrade_engine(engine)
        after = await _indexes(engine, postgres)
        current = await migrate.engine_is_current(engine)
    finally:
        await engine.dispose()

    assert INDEX not in before
    assert after.count(INDEX) == 1
    assert current


async def test_0004_builds_the_index_and_its_downgrade_drops_it(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)
    postgres = not settings.is_sqlite
    engine = create_engine(settings)
    try:
        await migrate.upgrade_engine(engine)
        built = await _indexes(engine, postgres)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrate._config(c), "0003"))
        dropped = await _indexes(engine, postgres)
    finally:
        await engine.dispose()

    assert INDEX in built
    assert INDEX not in dropped
