"""The store by itself: units of work, group commit, savepoints, wake-ups, on both databases."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from hookline.config import Settings
from hookline.errors import Conflict
from hookline.store import Store, StoreUnavailable, units
from hookline.store.sql import sql, ts
from hookline.store.units import Unit

_ADD_USER = sql(
    "INSERT INTO users (id, username, token_hash, registered_at)"
    " VALUES (:id, :username, NULL, :at) ON CONFLICT DO NOTHING RETURNING id"
)
_ADD_USER_STRICT = sql(
    "INSERT INTO users (id, username, token_hash, registered_at) VALUES (:id, :username, NULL, :at)"
)
_USERNAMES = sql("SELECT username FROM users ORDER BY username")
_COUNT = sql("SELECT count(*) FROM users")
_NOW = sql("SELECT {now}")
_IN = sql("SELECT count(*) FROM users WHERE username {in:names}")
_AFTER = sql("SELECT {after:seconds}")


def add_user(name: str, *, then_fail: bool = False, pause: float = 0.0) -> Unit[str]:
    if pause:
        time.sleep(pause)  # runs where SQLite commits (the event loop): the units behind wait
    found = yield units.value(_ADD_USER, {"id": f"usr_{name}", "username": name, "at": _now()})
    if found is None:
        raise Conflict(f"{name} exists")
    if then_fail:
        raise ValueError(f"{name} changed its mind after writing")
    return str(found)


def add_user_strict(name: str) -> Unit[str]:
    yield units.execute(_ADD_USER_STRICT, {"id": f"usr_{name}", "username": name, "at": _now()})
    return name


def usernames() -> Unit[list[str]]:
    found = yield units.rows(_USERNAMES)
    return [row[0] for row in found]


def _now() -> datetime:
    return datetime.now(UTC)


async def test_one_failing_unit_among_many_rolls_back_alone(store: Store) -> None:
    names = [f"user{i:02d}" for i in range(40)]
    results = await asyncio.gather(
        store.write(add_user("first", pause=0.1)),  # holds the writer while the rest queue
        *(store.write(add_user(name, then_fail=name == "user17")) for name in names),
        return_exceptions=True,
    )
    failed = {names[i]: r for i, r in enumerate(results[1:]) if isinstance(r, BaseException)}
    assert list(failed) == ["user17"]
    assert isinstance(failed["user17"], ValueError)
    assert await store.read(usernames()) == sorted({"first", *names} - {"user17"})


async def test_each_unit_gets_its_own_error_and_the_rest_commit(store: Store) -> None:
    await store.write(add_user("taken"))
    results = await asyncio.gather(
        store.write(add_user("blocker", pause=0.1)),
        store.write(add_user("a")),
        store.write(add_user("taken")),  # a conflict this unit turns into a 409
        store.write(add_user_strict("taken")),  # a constraint error nobody catches
        store.write(add_user("b")),
        return_exceptions=True,
    )
    assert results[0] == "usr_blocker" and results[1] == "usr_a" and results[4] == "usr_b"
    assert isinstance(results[2], Conflict)
    assert isinstance(results[3], units.IntegrityError)
    assert await store.read(usernames()) == ["a", "b", "blocker", "taken"]


def add_twice_guarded(name: str) -> Unit[bool]:
    yield units.execute(_ADD_USER_STRICT, {"id": f"usr_{name}", "username": name, "at": _now()})
    try:
        yield units.execute(
            _ADD_USER_STRICT, {"id": f"usr_{name}2", "username": name, "at": _now()}, guarded=True
        )
    except units.IntegrityError:
        # Caught inside the unit: the first insert stands and the unit goes on.
        yield units.execute(
            _ADD_USER_STRICT, {"id": f"usr_{name}3", "username": f"{name}-x", "at": _now()}
        )
        return True
    return False


async def test_a_guarded_violation_is_raised_into_the_unit_which_may_go_on(store: Store) -> None:
    assert await store.write(add_twice_guarded("g")) is True
    assert await store.read(usernames()) == ["g", "g-x"]


async def test_a_commit_that_fails_answers_no_unit_of_its_group_with_success(
    settings: Settings, store: Store
) -> None:
    """Nobody is acknowledged before the commit that holds its unit: a constraint checked only
    at COMMIT fails the group (SQLite) or the unit (PostgreSQL), and nothing is stored."""
    table = "deferred_check"
    create = sql(
        f"CREATE TABLE {table} (id TEXT PRIMARY KEY, user_id TEXT REFERENCES users (id)"
        " DEFERRABLE INITIALLY DEFERRED)"
    )
    drop = sql(f"DROP TABLE {table}")
    orphan = sql(f"INSERT INTO {table} (id, user_id) VALUES (:id, 'usr_nobody')")

    def run(statement: Any, params: dict[str, Any] | None = None) -> Unit[None]:
        yield units.execute(statement, params)

    def violate() -> Unit[str]:
        yield units.execute(orphan, {"id": "x"})  # accepted now, refused at COMMIT
        return "violated"

    await store.write(run(create))
    try:
        results = await asyncio.gather(
            store.write(add_user("blocker", pause=0.1)),
            store.write(add_user("c1")),
            store.write(violate()),
            store.write(add_user("c2")),
            return_exceptions=True,
        )
        assert isinstance(results[2], StoreUnavailable | units.IntegrityError)
        stored = await store.read(usernames())
        for name, result in (("blocker", results[0]), ("c1", results[1]), ("c2", results[3])):
            # Answered with success if and only if it is stored.
            assert (result == f"usr_{name}") == (name in stored), (name, result, stored)
            assert result == f"usr_{name}" or isinstance(result, StoreUnavailable)
        if settings.is_sqlite:
            # Queued together, they were one group, one transaction: none of it committed.
            assert stored == []
        else:  # one transaction each: only the violating one failed
            assert stored == ["blocker", "c1", "c2"]
    finally:
        await store.write(run(drop))


async def test_wake_callbacks_run_after_commits_that_asked_for_them(store: Store) -> None:
    woken: list[int] = []
    store.on_wake(lambda: woken.append(len(woken)))

    def quiet() -> Unit[None]:
        yield units.value(_COUNT)

    def waking(then_fail: bool) -> Unit[None]:
        yield units.value(_COUNT)
        yield units.wake()
        if then_fail:
            raise ValueError("rolled back")

    await store.write(quiet())
    assert woken == []
    with pytest.raises(ValueError):
        await store.write(waking(then_fail=True))
    assert woken == []
    await store.write(waking(then_fail=False))
    assert len(woken) == 1


async def test_now_is_the_database_clock_on_postgres(settings: Settings, store: Store) -> None:
    def read_now() -> Unit[Any]:
        return (yield units.value(_NOW))

    before = _now()
    found = ts(await store.read(read_now()))
    assert found is not None
    # PostgreSQL's now() and this process share the machine here: close, and an aware time.
    assert abs((found - before).total_seconds()) < 5
    if not settings.is_sqlite:
        assert isinstance(await store.read(read_now()), datetime)


async def test_list_membership_and_later_times_on_both_databases(store: Store) -> None:
    await store.write(add_user("m1"))
    await store.write(add_user("m2"))

    def count(names: list[str]) -> Unit[int]:
        return int((yield units.value(_IN, {"names": names})))

    def after(seconds: float | None) -> Unit[Any]:
        return (yield units.value(_AFTER, {"seconds": seconds}))

    assert await store.read(count(["m1", "m2", "zz"])) == 2
    assert await store.read(count([])) == 0
    later = ts(await store.read(after(3600.0)))
    assert later is not None
    assert timedelta(minutes=59) < later - _now() < timedelta(minutes=61)
    assert await store.read(after(None)) is None


async def test_units_handed_over_in_one_turn_are_one_group_on_sqlite(
    settings: Settings, store: Store
) -> None:
    """SQLite's writer takes the units an event loop handed over in one turn together (one
    transaction, so a failed COMMIT fails them all), whatever the writer was doing meanwhile;
    on PostgreSQL a COMMIT that fails fails its own unit only."""
    table = "deferred_check_turn"
    await store.write(
        _run(
            sql(
                f"CREATE TABLE {table} (id TEXT PRIMARY KEY, user_id TEXT"
                " REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    )
    orphan = sql(f"INSERT INTO {table} (id, user_id) VALUES ('x', 'usr_nobody')")
    try:
        results = await asyncio.gather(
            *(store.write(add_user(f"t{i}")) for i in range(20)),
            store.write(_run(orphan)),
            return_exceptions=True,
        )
        if settings.is_sqlite:
            assert all(isinstance(r, StoreUnavailable) for r in results), results
            assert await store.read(usernames()) == []
        else:  # PostgreSQL runs each unit in its own transaction: the failed one fails alone
            assert [type(r) for r in results[:20]] == [str] * 20, results
            assert isinstance(results[20], units.IntegrityError), results[20]
            assert len(await store.read(usernames())) == 20
    finally:
        await store.write(_run(sql(f"DROP TABLE {table}")))


async def test_units_handed_over_just_before_close_are_still_answered(store: Store) -> None:
    late = asyncio.create_task(store.write(add_user("late")))
    await asyncio.sleep(0)  # the task hands its unit over; the turn has not ended
    await store.close()
    assert await late == "usr_late"


def _run(statement: Any) -> Unit[None]:
    yield units.execute(statement)


async def test_a_closed_store_refuses_work(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.write(add_user("late"))
    with pytest.raises(StoreUnavailable):
        await store.read(usernames())


# A COMMIT whose answer is lost (PostgreSQL restarting, a connection cut): the store asks the
# server what became of the transaction instead of answering "nothing was written".


async def test_the_store_tells_a_committed_transaction_from_an_aborted_one(
    empty_postgres: str,
) -> None:
    from hookline.store.postgres import PostgresBackend

    backend = PostgresBackend(empty_postgres, 2, lambda: None)
    conn = await asyncpg.connect(empty_postgres)
    try:
        async with conn.transaction():
            committed = await conn.fetchval("SELECT txid_current()")
        transaction = conn.transaction()
        await transaction.start()
        aborted = await conn.fetchval("SELECT txid_current()")
        await transaction.rollback()
    finally:
        await conn.close()

    assert await backend._committed(committed) is True
    assert await backend._committed(aborted) is False
    await backend.close()
