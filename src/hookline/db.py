"""The engine and session factory, built from Settings; SQLite gets WAL and write-ahead locking."""

from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from hookline import sqlite_thread
from hookline.config import Settings

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The driver's arguments as the dialect reads them from the URL (path, uri, mode).
        parsed = make_url(url)
        args, kwargs = parsed.get_dialect()().create_connect_args(parsed)

        async def connect() -> sqlite_thread.Connection:
            return await sqlite_thread.Connection.open(*args, **{**kwargs, "timeout": 30})

        engine = create_async_engine(
            # One connection: SQLite has one writer, and queueing for the pool in asyncio is far
            # cheaper than SQLite's busy handler, which sleeps in steps of milliseconds.
            url,
            pool_size=1,
            max_overflow=0,
            async_creator=connect,
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN, not the driver.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred transaction that reads then writes can fail with SQLITE_BUSY when
        # another writer got in between; taking the write lock up front makes it wait instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
