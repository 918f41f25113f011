"""SQLite's group commit from the event loop: groups as large as the loop's bursts, and a
write lock held elsewhere waited for in the writer thread, never in the loop."""

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from hookline.config import Settings
from hookline.store import Store, StoreUnavailable, units
from hookline.store.sql import sql
from tests.store.test_units import add_user, usernames


def _run(statement: str) -> units.Unit[None]:
    yield units.execute(sql(statement))


def database_file(settings: Settings) -> Path:
    return Path(settings.database_url.split("///", 1)[1])


@pytest.fixture
def database_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """SQLite's alone: a new migrated file (not the suite's choice of both databases)."""
    path = tmp_path / "hookline.db"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite+aiosqlite:///{path}"


async def test_units_that_keep_coming_turn_after_turn_are_one_group(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units handed over in successive turns of the loop, each turn bringing one more, are
    held and committed together: one transaction, so a COMMIT that fails fails them all."""
    # The hold's time cap (2 ms) is not what this asks about: on a loaded machine eight turns
    # of the loop can take longer than that, and the group would be cut short by it.
    monkeypatch.setattr("hookline.store.sqlite.HOLD_SECONDS", 5.0)
    table = "deferred_check_turns"
    await store.write(
        _run(
            f"CREATE TABLE {table} (id TEXT PRIMARY KEY, user_id TEXT"
            " REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    )

    async def after_turns(turns: int, unit: units.Unit[object]) -> object:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await store.write(unit)

    orphan = f"INSERT INTO {table} (id, user_id) VALUES ('x', 'usr_nobody')"
    try:
        results = await asyncio.gather(
            *(after_turns(turn, add_user(f"t{turn}")) for turn in range(8)),
            after_turns(4, _run(orphan)),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert await store.read(usernames()) == []
    finally:
        await store.write(_run(f"DROP TABLE {table}"))


def ran_in() -> units.Unit[int]:
    """The thread the unit ran in."""
    yield units.execute(sql("SELECT 1"))
    return threading.get_ident()


async def test_the_event_loop_commits_its_own_units_when_the_lock_is_free(store: Store) -> None:
    assert await store.write(ran_in()) == threading.get_ident()


async def test_a_write_lock_held_elsewhere_is_waited_for_beside_the_loop(
    settings: Settings, store: Store
) -> None:
    """Another connection holds the write lock: the unit waits for it (in the writer thread)
    while the event loop goes on, and commits once the lock is let go."""
    await store.write(add_user("first"))  # the loop's own connection is open
    other = sqlite3.connect(database_file(settings), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(store.write(add_user("waiting")))
        elsewhere = asyncio.create_task(store.write(ran_in()))
        began = time.monotonic()
        ticks = 0
        while time.monotonic() - began < 0.5:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        # The loop kept turning: ~50 sleeps of 10 ms in half a second, not one long stall.
        assert ticks >= 20, ticks
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 5) == "usr_waiting"
        assert await elsewhere != threading.get_ident()  # the writer thread waited for it
    finally:
        other.close()
    assert await store.read(usernames()) == ["first", "waiting"]


async def test_a_lone_unit_is_committed_after_a_quiet_turn_not_the_whole_hold(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group is held only while turns bring more: a lone unit goes after the next turn."""
    monkeypatch.setattr("hookline.store.sqlite.HOLD_SECONDS", 5.0)
    began = time.monotonic()
    for n in range(5):
        await store.write(add_user(f"u{n}"))
    assert time.monotonic() - began < 2.5  # held for the whole 5 s, one would take 25
    assert await store.read(usernames()) == [f"u{n}" for n in range(5)]


async def test_a_unit_written_aside_runs_beside_the_loop(store: Store) -> None:
    """A long unit (a prune batch) goes to the writer thread: the loop is not held for it."""
    assert await store.write_aside(ran_in()) != threading.get_ident()
    assert await store.write_aside(add_user("aside")) == "usr_aside"
    assert await store.read(usernames()) == ["aside"]
