"""Apply Alembic migrations on an engine; safe to run from several processes at once."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any constant works: every hookline process takes the same lock before migrating.
_PG_LOCK_KEY = 0x686F6F6B


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    command.upgrade(_config(connection), "head")


def _is_current(connection: Connection) -> bool:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    return MigrationContext.configure(connection).get_current_revision() == head


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def is_current(engine: AsyncEngine) -> bool:
    """Whether the schema is at the newest revision (for /ready)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_is_current)
