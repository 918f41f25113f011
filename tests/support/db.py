"""A SQLAlchemy engine on the test's database, for tests to look at (and arrange) rows.

hookline itself reads and writes through its store; tests inspect with the ORM models, through
SQLAlchemy's stock drivers. On SQLite every transaction takes the write lock at BEGIN, so a test
that reads then writes waits for hookline's writer instead of failing with SQLITE_BUSY.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from hookline.config import Settings

SessionMaker = async_sessionmaker[AsyncSession]


@dataclass
class TestDb:
    engine: AsyncEngine
    sessions: SessionMaker


def inspection_engine(settings: Settings) -> AsyncEngine:
    if not settings.is_sqlite:
        return create_async_engine(settings.resolved_database_url, pool_size=2)
    engine = create_async_engine(settings.resolved_database_url, pool_size=1, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def test_db(settings: Settings) -> TestDb:
    engine = inspection_engine(settings)
    return TestDb(engine, async_sessionmaker(engine, expire_on_commit=False))


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)
