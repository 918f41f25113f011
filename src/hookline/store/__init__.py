"""The store: the only code that writes outbox state, and the only code that knows the dialect.

Everything that touches the database hands the store a unit of work (`units.py`): `write` runs
it in a transaction and answers after the commit; `read` runs it on a reader. SQLite and
PostgreSQL each have a backend (`sqlite.py`, `postgres.py`).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from sqlalchemy import make_url

from hookline.config import Settings
from hookline.store.status import STATUSES, Status
from hookline.store.units import IntegrityError, StoreUnavailable, Unit

__all__ = ["STATUSES", "IntegrityError", "Status", "Store", "StoreUnavailable", "open_store"]

T = TypeVar("T")


class _Backend(Protocol):
    dialect: str

    async def write(self, unit: Unit[T], *, aside: bool = False) -> T: ...
    async def read(self, unit: Unit[T]) -> T: ...
    async def lookup(self, make_unit: Callable[[], Unit[T]]) -> T: ...
    async def close(self) -> None: ...


class Store:
    """Runs units of work; wakes the workers (`on_wake`) after a commit that made work due."""

    def __init__(self, make_backend: Callable[[Callable[[], None]], _Backend]) -> None:
        self._wake_callbacks: list[Callable[[], None]] = []
        self._backend = make_backend(self._woken)

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    @property
    def is_postgres(self) -> bool:
        return self._backend.dialect == "postgresql"

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in a transaction; return its result once that has committed."""
        return await self._backend.write(unit)

    async def write_aside(self, unit: Unit[T]) -> T:
        """`write` for a long unit (a batch of the prune): on SQLite, where the event loop
        commits its own units, the writer thread runs this one, so the loop is not held for it."""
        return await self._backend.write(unit, aside=True)

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit` on a reader, in one snapshot on SQLite; it must not write."""
        return await self._backend.read(unit)

    async def lookup(self, make_unit: Callable[[], Unit[T]]) -> T:
        """A single-row read by index, for every request's hot path (the caller's token): on
        SQLite run at once, without a hand-off to a thread. `make_unit` may be called twice."""
        return await self._backend.lookup(make_unit)

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every commit that made deliveries due (in this process)."""
        self._wake_callbacks.append(callback)

    def _woken(self) -> None:
        for callback in self._wake_callbacks:
            callback()

    async def close(self) -> None:
        await self._backend.close()


def sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.resolved_database_url).database
    if not database or database == ":memory:":
        raise ValueError("hookline needs a SQLite file, not an in-memory database")
    return Path(database)


def postgres_dsn(settings: Settings) -> str:
    """The URL asyncpg takes: the SQLAlchemy driver name dropped, the rest as given."""
    url = settings.resolved_database_url
    return "postgresql://" + url.split("://", 1)[1]


def open_store(settings: Settings) -> Store:
    """The store for the configured database; connections are opened when first used."""
    if settings.is_sqlite:
        from hookline.store.sqlite import SqliteBackend

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = sqlite_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        return Store(lambda wake: SqliteBackend(path, wake))
    from hookline.store.postgres import PostgresBackend

    dsn, pool_size = postgres_dsn(settings), settings.db_pool_size
    return Store(lambda wake: PostgresBackend(dsn, pool_size, wake))
