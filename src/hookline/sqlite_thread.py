"""SQLite for asyncio in one hand-off per statement: what aiosqlite does in three or four.

SQLAlchemy's aiosqlite dialect drives aiosqlite's connection, which runs every driver call in
the connection's thread: making a cursor, executing, fetching and closing each cross to that
thread and back (~0.06 ms of CPU each, more than SQLite spends on a small statement). This
connection offers the same interface, but a cursor's `execute` runs the statement and fetches
all its rows in one call to the thread; the rest is answered from memory. SQLAlchemy fetches
every row of a non-streaming result at once anyway, and hookline streams none.

It is still a thread (not the event loop) that waits on SQLite's busy handler and on long
statements, so the event loop never blocks on the database.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")

_Rows = list[Any]
_Description = tuple[tuple[Any, ...], ...] | None


def _execute(
    raw: sqlite3.Connection, sql: str, parameters: Any, many: bool = False
) -> tuple[_Description, int, int | None, _Rows]:
    """Run one statement (or one executemany) and fetch all it returns, in one call."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class Cursor:
    """aiosqlite's cursor interface, over results fetched whole by one hand-off."""

    arraysize = 1

    def __init__(self, connection: "Connection") -> None:
        self._connection = connection
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: _Rows = []

    async def __aenter__(self) -> "Cursor":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> "Cursor":
        raw = self._connection.raw
        done = await self._connection.run(_execute, raw, sql, parameters)
        self.description, self.rowcount, self.lastrowid, self._rows = done
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> "Cursor":
        raw = self._connection.raw
        done = await self._connection.run(_execute, raw, sql, list(seq_of_parameters), True)
        self.description, self.rowcount, self.lastrowid, self._rows = done
        return self

    async def fetchall(self) -> _Rows:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> _Rows:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_: Any) -> None:
        return None

    async def close(self) -> None:
        self._rows = []


class _RunNow:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's dialect uses (only) to set
    the isolation level: runs the request at once, as setting it does no I/O."""

    def put_nowait(self, request: tuple["asyncio.Future[Any]", Callable[[], Any]]) -> None:
        future, function = request
        try:
            future.set_result(function())
        except Exception as error:
            future.set_exception(error)


class Connection:
    """aiosqlite's connection interface, as SQLAlchemy's aiosqlite dialect uses it."""

    def __init__(self, raw: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self.raw = raw
        self._conn = raw  # the name SQLAlchemy's dialect reaches for
        self._executor = executor
        self._open = True
        self._tx = _RunNow()

    @classmethod
    async def open(cls, *args: Any, **kwargs: Any) -> "Connection":
        executor = ThreadPoolExecutor(1, thread_name_prefix="hookline-sqlite")
        connect = partial(sqlite3.connect, *args, **{**kwargs, "check_same_thread": False})
        try:
            raw = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(raw, executor)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` in the connection's thread: one hand-off."""
        if not self._open:
            raise ValueError("Connection closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self.raw if self._open else None

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def commit(self) -> None:
        await self.run(self.raw.commit)

    async def rollback(self) -> None:
        await self.run(self.raw.rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(partial(self.raw.create_function, *args, **kwargs))

    async def close(self) -> None:
        if not self._open:
            return
        try:
            await self.run(self.raw.close)
        finally:
            self._open = False
            self._executor.shutdown(wait=False)

    def stop(self) -> None:
        """Drop the connection without waiting (SQLAlchemy's terminate)."""
        self._open = False
        self._executor.submit(self.raw.close)
        self._executor.shutdown(wait=False)
