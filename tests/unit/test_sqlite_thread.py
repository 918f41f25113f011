"""hookline's SQLite connection: one hand-off per statement, and the event loop never waits."""

import asyncio
import itertools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from hookline import sqlite_thread
from hookline.config import Settings
from tests.support.db import inspection_engine as create_engine


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path)


class CountingRun:
    def __init__(self, connection: sqlite_thread.Connection) -> None:
        self.inner = connection.run
        self.calls: list[str] = []

    async def __call__(self, function: Any, *args: Any) -> Any:
        self.calls.append(getattr(function, "__name__", repr(function)))
        return await self.inner(function, *args)


async def test_a_statement_is_one_hand_off_and_its_rows_come_with_it(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT)"))
            await conn.execute(
                text("INSERT INTO t (n, s) VALUES (:n, :s)"),
                [{"n": n, "s": f"row {n}"} for n in range(500)],
            )
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert isinstance(driver, sqlite_thread.Connection)
            counting = CountingRun(driver)
            driver.run = counting  # type: ignore[method-assign]
            try:
                rows = (await conn.execute(text("SELECT n, s FROM t ORDER BY n"))).all()
                one = (await conn.execute(text("SELECT s FROM t WHERE n = 7"))).scalar_one()
                none = (await conn.execute(text("SELECT s FROM t WHERE n = -1"))).first()
                changed = await conn.execute(text("UPDATE t SET s = 'x' WHERE n < 10"))
                await conn.commit()
            finally:
                del driver.run
    finally:
        await engine.dispose()

    assert [tuple(r) for r in rows] == [(n, f"row {n}") for n in range(500)]
    assert (one, none, changed.rowcount) == ("row 7", None, 10)
    # BEGIN IMMEDIATE, the four statements, the commit: one trip each to the thread.
    assert counting.calls == ["_execute"] * 5 + ["commit"]


async def test_driver_errors_reach_sqlalchemy_as_its_own_errors(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(OperationalError, match="no such table"):
            async with engine.begin() as conn:
                await conn.execute(text("SELECT * FROM missing"))
        async with engine.connect() as conn:  # the connection is still good after both
            count = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
    finally:
        await engine.dispose()
    assert count == 1


async def test_the_event_loop_runs_on_while_sqlite_waits_for_another_writer(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
    holding, held_for = threading.Event(), 0.6

    def other_writer() -> None:
        # Another process's writer, as far as SQLite can tell: its own connection.
        db = sqlite3.connect(settings.data_dir / "hookline.db", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (1)")
        holding.set()
        time.sleep(held_for)
        db.execute("COMMIT")
        db.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    try:
        await asyncio.to_thread(holding.wait, 5)
        ticking = asyncio.create_task(ticker())
        began = time.monotonic()
        async with engine.begin() as conn:  # BEGIN IMMEDIATE waits for the other writer
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        waited = time.monotonic() - began
        ticking.cancel()
        async with engine.connect() as conn:
            values = (await conn.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
    finally:
        writer.join()
        await engine.dispose()

    assert waited >= held_for - 0.2
    assert values == [1, 2]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) >= 20 and max(gaps) < 0.2  # the loop kept ticking while SQLite waited


async def test_a_closed_connection_refuses_work_and_closing_twice_is_harmless(
    tmp_path: Path,
) -> None:
    connection = await sqlite_thread.Connection.open(str(tmp_path / "x.db"))
    cursor = await connection.cursor().execute("SELECT 1, 'a' UNION ALL SELECT 2, 'b'")
    first = await cursor.fetchone()
    rest = await cursor.fetchmany(5)
    await connection.close()
    await connection.close()
    with pytest.raises(ValueError, match="closed"):
        await connection.cursor().execute("SELECT 1")
    assert (first, rest) == ((1, "a"), [(2, "b")])
