"""Apply Alembic migrations; safe to run from several processes at once.

Alembic drives SQLAlchemy, so migrating builds a short-lived SQLAlchemy engine of its own; the
running service reads the schema's revision through the store.

A migration that seals or opens values (0009, the custom header values) asks for the secret box
through `secret_box(config)`: the process's own, or one loaded from its settings when needed.
"""

import logging
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hookline import secretbox
from hookline.config import Settings
from hookline.operator_errors import OperatorError, opening_database
from hookline.secretbox import SecretBox
from hookline.store import Store, units
from hookline.store.sql import sql

# Inside the package, so that an installed wheel carries them.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works: every hookline process takes the same lock before migrating.
_PG_LOCK_KEY = 0x686F6F6B
_REVISION = sql("SELECT version_num FROM alembic_version")

log = logging.getLogger("hookline.migrate")

BoxSource = Callable[[], SecretBox]


def _config(connection: Connection | None = None, box: BoxSource | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["secret_box"] = box
    return config


def secret_box(config: Config) -> SecretBox:
    """The box a migration seals and opens with (loaded only when a migration asks for it)."""
    source: BoxSource | None = config.attributes.get("secret_box")
    if source is None:
        raise RuntimeError(
            "this migration seals or opens stored values and needs the secret key: migrate"
            " with `hookline migrate` (or pass a box to upgrade_engine)"
        )
    return source()


@cache
def head() -> str | None:
    """The newest revision this hookline knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def migration_engine(settings: Settings) -> AsyncEngine:
    """A one-connection engine for Alembic (SQLAlchemy's stock drivers)."""
    if not settings.is_sqlite:
        return create_async_engine(settings.resolved_database_url, pool_size=1, max_overflow=0)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(settings.resolved_database_url, pool_size=1, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # Wait for the write lock (another process migrating) instead of failing at once.
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def _upgrade(connection: Connection, box: BoxSource | None) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    before = MigrationContext.configure(connection).get_current_revision()
    _refuse_unknown(before)
    command.upgrade(_config(connection, box), "head")
    if before != head():
        log.info("migrated the database from %s to revision %s", before or "empty", head())


def _refuse_unknown(revision: str | None) -> None:
    """A schema newer than this hookline (an older release started after a newer one
    migrated): migrations roll forward only."""
    if revision is None:
        return
    try:
        known = ScriptDirectory.from_config(_config()).get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise OperatorError(
            f"the database is at revision {revision}, newer than this hookline knows"
            f" (its newest is {head()})",
            "run the release that migrated it, or a newer one (migrations roll forward only)",
        )


def _is_current(connection: Connection) -> bool:
    return MigrationContext.configure(connection).get_current_revision() == head()


async def upgrade(settings: Settings, box: SecretBox | None = None) -> None:
    """Bring the schema to the newest revision; `box` seals what a migration seals (loaded
    from `settings` when not given and a migration needs it)."""
    source: BoxSource = partial(secretbox.load, settings) if box is None else lambda: box
    engine = migration_engine(settings)
    try:
        conn = engine.connect()
        with opening_database(settings):
            await conn.start()
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade, source)
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def upgrade_engine(engine: AsyncEngine, box: SecretBox | None = None) -> None:
    """Bring the schema to the newest revision through a given engine (tests, benchmarks);
    without `box`, a migration that must seal something refuses."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, None if box is None else lambda: box)


async def engine_is_current(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return await conn.run_sync(_is_current)


def _revision() -> units.Unit[bool]:
    try:
        found = yield units.value(_REVISION)
    except units.IntegrityError:  # pragma: no cover - a read raises no constraint error
        return False
    return bool(found == head())


async def is_current(store: Store) -> bool:
    """Whether the schema is at the newest revision (for /ready and at start)."""
    try:
        return await store.read(_revision())
    except units.StoreUnavailable:
        raise
    except Exception:  # no alembic_version table yet: an empty database
        return False
