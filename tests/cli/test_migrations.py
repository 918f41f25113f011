"""Migrations: they build the models' schema; 0004's index may be built online beforehand
(docs/deploy.md) and is kept; 0006's table rebuild keeps every row; 0009 seals the custom
header values (with the secret key) and its downgrade opens them."""

import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.models import Base
from hookline.secretbox import SEALED_PREFIX, SecretBox, SecretKeyError
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


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrated_schema_is_the_models_schema(database_url: str) -> None:
    engine = create_engine(Settings(_env_file=None, database_url=database_url))
    try:
        await migrate.upgrade_engine(engine)
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()

    assert differences == []


SEEDED = [
    "INSERT INTO endpoints (id, url, secret, enabled, created_at)"
    " VALUES ('wh_1', 'https://example.com/a', 'sealed', TRUE, '2026-01-01 00:00:00')",
    "INSERT INTO subscriptions (endpoint_id, event) VALUES ('wh_1', 'user_registered')",
    "INSERT INTO events (id, event, payload, created_at)"
    " VALUES ('evt_1', 'user_registered', '{}', '2026-01-01 00:00:00')",
    "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts_made, created_at)"
    " VALUES ('dlv_1', 'evt_1', 'wh_1', 'pending', 0, '2026-01-01 00:00:00')",
]
COUNTS = "SELECT (SELECT count(*) FROM subscriptions), (SELECT count(*) FROM deliveries)"


async def test_0006_keeps_every_endpoint_with_its_subscriptions_and_deliveries(
    database_url: str,
) -> None:
    # On SQLite 0006 rebuilds the endpoints table: with foreign keys enforced, dropping the old
    # one would cascade to every subscription and delivery. The engine `hookline migrate` uses.
    engine = migrate.migration_engine(Settings(_env_file=None, database_url=database_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0005"))
            for statement in SEEDED:
                await conn.execute(text(statement))
        await migrate.upgrade_engine(engine)
        async with engine.connect() as conn:
            after = tuple((await conn.execute(text(COUNTS))).one())
            owner = (await conn.execute(text("SELECT owner_id FROM endpoints"))).scalar_one()
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrate._config(c), "0005"))
            back = tuple((await conn.execute(text(COUNTS))).one())
    finally:
        await engine.dispose()

    assert after == (1, 1)
    assert owner is None
    assert back == (1, 1)


async def test_0006_refuses_to_rebuild_a_table_where_foreign_keys_would_cascade(
    tmp_path: Path,
) -> None:
    engine = create_engine(  # enforces foreign keys
        Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'hookline.db'}")
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0005"))
            for statement in SEEDED:
                await conn.execute(text(statement))
        with pytest.raises(RuntimeError, match="foreign keys off"):
            await migrate.upgrade_engine(engine)
        async with engine.connect() as conn:
            kept = tuple((await conn.execute(text(COUNTS))).one())
    finally:
        await engine.dispose()

    assert kept == (1, 1)


async def test_0008_marks_old_attempts_scheduled_and_its_downgrade_drops_deleted_endpoints(
    database_url: str,
) -> None:
    engine = migrate.migration_engine(Settings(_env_file=None, database_url=database_url))
    attempt = (
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms)"
        " VALUES ('dlv_1', 1, '2026-01-01 00:00:00', 5)"
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0007"))
            for statement in [*SEEDED, attempt]:
                await conn.execute(text(statement))
        await migrate.upgrade_engine(engine)
        async with engine.begin() as conn:
            marked = tuple((await conn.execute(text("SELECT trigger FROM attempts"))).one())
            manual = (await conn.execute(text("SELECT manual FROM deliveries"))).scalar_one()
            # Deleted, its URL taken again by a new endpoint of the admin's.
            await conn.execute(text("UPDATE endpoints SET deleted_at = created_at"))
            await conn.execute(
                text(
                    "INSERT INTO endpoints (id, url, secret, enabled, created_at) VALUES"
                    " ('wh_2', 'https://example.com/a', 'sealed', TRUE, '2026-01-02 00:00:00')"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrate._config(c), "0007"))
            left = (await conn.execute(text("SELECT id FROM endpoints"))).scalars().all()
            back = tuple((await conn.execute(text(COUNTS))).one())
            attempts = (await conn.execute(text("SELECT count(*) FROM attempts"))).scalar_one()
    finally:
        await engine.dispose()

    assert marked == ("scheduled",)
    assert not manual
    assert left == ["wh_2"]
    assert back == (0, 0)
    assert attempts == 0


TOKEN = "Bearer receiver-credential-0123456789"


async def _endpoints_at_0008(engine: AsyncEngine, box: SecretBox) -> None:
    """At 0008 (header values in plain text): one live endpoint with headers, one deleted with
    headers, one without; the secrets sealed with `box`."""
    async with engine.begin() as conn:
        await conn.run_sync(_to("0008"))
        for number, headers in (
            (1, {"Authorization": TOKEN, "X-Team": "payments"}),
            (2, {"Authorization": TOKEN}),
            (3, None),
        ):
            await conn.execute(
                text(
                    "INSERT INTO endpoints (id, url, secret, headers, enabled, created_at)"
                    " VALUES (:id, :url, :secret, :headers, TRUE, '2026-01-01 00:00:00')"
                ),
                {
                    "id": f"wh_{number}",
                    "url": f"https://example.com/{number}",
                    "secret": box.seal("whsec_c2VjcmV0LW9mLXRoZS1lbmRwb2ludC0xMjM0NQ=="),
                    "headers": None if headers is None else json.dumps(headers),
                },
            )
        await conn.execute(text("UPDATE endpoints SET deleted_at = created_at WHERE id = 'wh_2'"))


async def _headers(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, headers FROM endpoints ORDER BY id"))
        return {row[0]: json.loads(row[1]) if isinstance(row[1], str) else row[1] for row in rows}


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def test_0009_seals_plain_header_values_and_its_downgrade_opens_them(
    database_url: str, tmp_path: Path
) -> None:
    key = secretbox.generate_key()
    box = SecretBox([key])
    # The key from the settings, as `hookline migrate` and every start migrate.
    settings = Settings(
        _env_file=None, database_url=database_url, secret_key=key, data_dir=tmp_path / "data"
    )
    engine = migrate.migration_engine(settings)
    try:
        await _endpoints_at_0008(engine, box)
        await migrate.upgrade(settings)
        sealed = await _headers(engine)
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: command.downgrade(migrate._config(c, lambda: box), "0008")
            )
        opened = await _headers(engine)
    finally:
        await engine.dispose()

    live = sealed["wh_1"]
    assert set(live) == {"Authorization", "X-Team"}
    assert all(value.startswith(SEALED_PREFIX) for value in live.values())
    assert TOKEN not in json.dumps(sealed) and "payments" not in json.dumps(sealed)
    assert {name: box.open(value) for name, value in live.items()} == {
        "Authorization": TOKEN,
        "X-Team": "payments",
    }
    assert sealed["wh_2"] is None  # deleted: its headers go, as DELETE's do now
    assert sealed["wh_3"] is None
    assert opened == {
        "wh_1": {"Authorization": TOKEN, "X-Team": "payments"},
        "wh_2": None,
        "wh_3": None,
    }


async def test_0009_refuses_a_key_that_does_not_open_the_secrets_and_seals_nothing(
    database_url: str,
) -> None:
    engine = migrate.migration_engine(Settings(_env_file=None, database_url=database_url))
    try:
        await _endpoints_at_0008(engine, SecretBox([secretbox.generate_key()]))
        with pytest.raises(SecretKeyError, match="HOOKLINE_SECRET_KEY"):
            await migrate.upgrade_engine(engine, SecretBox([secretbox.generate_key()]))
        with pytest.raises(RuntimeError, match="needs the secret key"):
            await migrate.upgrade_engine(engine)  # no key at all
        headers, revision = await _headers(engine), await _revision(engine)
    finally:
        await engine.dispose()

    assert headers["wh_1"] == {"Authorization": TOKEN, "X-Team": "payments"}
    assert revision == "0008"
