"""The store as the queue, by itself: claims lease due deliveries
fairly and never twice, a lapsed lease is due again, and only the lease's holder records."""

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import update

from hookline import models
from hookline.config import Settings
from hookline.models import Delivery, Endpoint, utcnow
from hookline.store import Status, Store, claims, open_store, postgres_dsn, redelivery, units
from hookline.store.claims import Claimed, Finished
from hookline.store.postgres import _drive
from hookline.store.sql import sql, sqlite_value, ts_required
from hookline.store.units import Unit
from tests.delivery.helpers import attempts_of, delivery, seed_due
from tests.support import db as support
from tests.support.db import SessionMaker

PENDING, SUCCEEDED, FAILED = Status.PENDING, Status.SUCCEEDED, Status.FAILED
_NOW = sql("SELECT {now}")


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[support.TestDb]:
    """For arranging and inspecting rows behind the store's back."""
    found = support.test_db(settings)
    try:
        yield found
    finally:
        await found.engine.dispose()


@pytest.fixture
def rows(db: support.TestDb) -> SessionMaker:
    return db.sessions


async def claim(store: Store, owner: str, **options: Any) -> list[Claimed]:
    options = {"limit": 10, "lease_seconds": 30.0, **options}
    return await store.write(claims.claim(owner=owner, **options))


def answered(item: Claimed, status: Status = SUCCEEDED, delay: float | None = None) -> Finished:
    """Its first attempt, answered 200 (or as `status` says), as the worker hands it over."""
    attempt = {
        "started_at": utcnow(),
        "duration_ms": 3,
        "status_code": 200 if status == SUCCEEDED else 500,
        "response_body": "ok",
        "error_kind": None if status == SUCCEEDED else "http_status",
        "error": None,
    }
    number = item.attempts_made + 1
    return Finished(item.delivery_id, item.endpoint_id, number, attempt, status, delay)


async def complete(store: Store, owner: str, *finished: Finished) -> list[Finished]:
    return await store.write(claims.complete(owner=owner, finished=finished))


async def database_now(store: Store) -> datetime:
    def read() -> Unit[Any]:
        return (yield units.value(_NOW))

    return ts_required(await store.read(read()))


def one_due(rows_plan: int = 1) -> dict[str, list[tuple[float, str]]]:
    return {"e": [(-1 - n, "pending") for n in range(rows_plan)]}


# Leasing


async def test_claim_leases_due_deliveries_with_what_sending_needs(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(rows, {"e": [(-2, "pending"), (-1, "pending"), (60, "pending")]})
    before = await database_now(store)

    claimed = await claim(store, "w1", lease_seconds=30)
    first = await delivery(rows, ids["e"][0])

    assert [c.delivery_id for c in claimed] == ids["e"][:2]  # oldest first; the third not due
    item = claimed[0]
    assert (item.attempts_made, item.event, item.data) == (0, "user_registered", {"n": 1})
    assert item.url.endswith("/e") and item.secrets == ("s",) and item.headers is None
    assert item.event_created_at.tzinfo is not None
    assert first.lease_owner == "w1"
    assert first.lease_until is not None
    assert timedelta(seconds=29) < first.lease_until - before < timedelta(seconds=31)


async def test_claimed_delivery_carries_the_old_secret_only_while_the_rotation_lasts(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(rows, {"rotating": [(-1, "pending")], "rotated": [(-1, "pending")]})
    now = utcnow()
    endpoint_of = {name: (await delivery(rows, ids[name][0])).endpoint_id for name in ids}
    async with rows.begin() as session:
        for name, until in (("rotating", now + timedelta(hours=1)), ("rotated", now)):
            endpoint_id = endpoint_of[name]
            await session.execute(
                update(Endpoint)
                .where(Endpoint.id == endpoint_id)
                .values(secret="new", old_secret="old", old_secret_until=until)
            )

    claimed = {c.delivery_id: c.secrets for c in await claim(store, "w")}

    assert claimed == {ids["rotating"][0]: ("new", "old"), ids["rotated"][0]: ("new",)}


async def test_a_lapsed_lease_is_due_again_and_a_live_one_is_not(
    store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, one_due(2))
    [short] = await claim(store, "dies-soon", limit=1, lease_seconds=0.2)
    [long] = await claim(store, "lives", limit=1, lease_seconds=30)
    assert await claim(store, "other") == []
    await asyncio.sleep(0.3)

    [again] = await claim(store, "other")

    assert again.delivery_id == short.delivery_id != long.delivery_id
    assert (await delivery(rows, short.delivery_id)).lease_owner == "other"


async def test_claim_takes_at_most_the_cap_per_endpoint_and_fills_up_from_others(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(
        rows, {"busy": [(-100 + n, "pending") for n in range(20)], "quiet": [(-1, "pending")]}
    )
    busy = (await delivery(rows, ids["busy"][0])).endpoint_id

    capped = await claim(store, "w", limit=5, per_endpoint=2)
    skipping = await claim(store, "w", limit=5, per_endpoint=2, skip_endpoints=[busy])

    # The claim looks at a window of the oldest due rows: busy's backlog fills it.
    assert [c.delivery_id for c in capped] == ids["busy"][:2]
    assert [c.delivery_id for c in skipping] == ids["quiet"]


async def test_claim_passing_over_full_endpoints_takes_each_other_endpoints_oldest_due(
    store: Store, rows: SessionMaker
) -> None:
    """With endpoints skipped the claim probes each other endpoint (not the due backlog)."""
    ids = await seed_due(
        rows,
        {
            "hanging": [(-1000 + n, "pending") for n in range(200)],
            "a": [(-50, "pending"), (-40, "pending"), (-30, "pending"), (-5, "failed")],
            "b": [(-45, "pending"), (60, "pending")],  # the second is not due yet
            "c": [(-35, "pending"), (-20, "pending")],
            "skipped_too": [(-900, "pending")],
        },
    )
    # c's oldest is leased to a live worker: not due for anyone else.
    async with rows.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids["c"][0])
            .values(lease_owner="other", lease_until=utcnow() + timedelta(seconds=30))
        )
    skip = [(await delivery(rows, ids[n][0])).endpoint_id for n in ("hanging", "skipped_too")]
    endpoint_of = {i: name for name, found in ids.items() for i in found}

    options = {"per_endpoint": 2, "skip_endpoints": skip}
    first = [c.delivery_id for c in await claim(store, "w1", limit=3, **options)]
    rest = [c.delivery_id for c in await claim(store, "w2", limit=10, **options)]
    leased = {i: (await delivery(rows, i)).lease_owner for i in first + rest}

    # Oldest due first across endpoints, at most 2 of each.
    assert first == [ids["a"][0], ids["b"][0], ids["a"][1]]
    # The second claim: a's leased two no longer count, c's oldest is leased elsewhere, b's
    # second is not due, nothing of the skipped endpoints, nothing not pending.
    assert rest == [ids["a"][2], ids["c"][1]]
    assert {endpoint_of[i] for i in first + rest} == {"a", "b", "c"}
    assert [leased[i] for i in first + rest] == ["w1"] * 3 + ["w2"] * 2


# PostgreSQL's planner picks by table statistics; bench/p5_claim_cost.py measures it there.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_claim_passing_over_a_backlog_probes_endpoints_through_their_index(
    store: Store, rows: SessionMaker, db: support.TestDb
) -> None:
    """A plan check (SQLite's, which is deterministic): the skipped backlog is never walked."""
    ids = await seed_due(
        rows, {"hanging": [(-100 + n, "pending") for n in range(50)], "ok": [(-1, "pending")]}
    )
    hanging = (await delivery(rows, ids["hanging"][0])).endpoint_id
    options: dict[str, Any] = {"per_endpoint": 2, "skip_endpoints": [hanging]}
    # The statement claim() runs, as it hands it to the store.
    unit = claims.claim(owner="w", limit=5, lease_seconds=30, **options)
    next(unit)  # which endpoints are paced: none here
    lease = unit.send([])
    assert lease.statement is not None
    now = utcnow()
    parameters = {k: sqlite_value(v) for k, v in lease.params.items()}
    parameters |= {"now": sqlite_value(now), "lease_seconds__at": sqlite_value(now)}
    async with db.engine.connect() as connection:
        plan = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {lease.statement.sqlite}", parameters
        )
        details = " | ".join(str(row[-1]) for row in plan)

    claimed = await claim(store, "w", limit=5, **options)

    assert [c.delivery_id for c in claimed] == ids["ok"]
    assert "ix_deliveries_endpoint_pending" in details
    assert "ix_deliveries_due" not in details


# Concurrent claims


def claim_then_hold(seconds: float, owner: str, **options: Any) -> Unit[list[Claimed]]:
    """SQLite: a claim that keeps the writer (and so every other claim) waiting a while."""
    claimed = yield from claims.claim(owner=owner, lease_seconds=30, **options)
    time.sleep(seconds)  # in SQLite's writer thread
    return claimed


@asynccontextmanager
async def claimed_in_open_transaction(
    settings: Settings, owner: str, **options: Any
) -> AsyncIterator[list[Claimed]]:
    """PostgreSQL: a claim whose transaction, with its row locks, stays open in the block."""
    conn = await asyncpg.connect(postgres_dsn(settings))
    try:
        async with conn.transaction():
            claimed, _ = await _drive(conn, claims.claim(owner=owner, lease_seconds=30, **options))
            yield claimed
    finally:
        await conn.close()


async def claims_beside_a_held_one(
    settings: Settings, store: Store, others: int, **options: Any
) -> tuple[list[Claimed], list[list[Claimed]], bool]:
    """A first claim held open while `others` claims run; whether they answered meanwhile."""
    if settings.is_sqlite:
        # The event loop commits the first, and is held with it.
        first_task = asyncio.create_task(store.write(claim_then_hold(0.3, "first", **options)))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(claim(store, f"w{n}", **options)) for n in range(others)]
        done, _ = await asyncio.wait(tasks, timeout=0.2)
        first = await first_task
    else:
        async with claimed_in_open_transaction(settings, "first", **options) as first:
            tasks = [asyncio.create_task(claim(store, f"w{n}", **options)) for n in range(others)]
            done, _ = await asyncio.wait(tasks, timeout=0.5)
    async with asyncio.timeout(5):
        rest = list(await asyncio.gather(*tasks))
    return first, rest, len(done) == others


async def test_concurrent_claims_never_return_the_same_delivery(
    settings: Settings, store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, {f"e{n}": [(-50 + k, "pending") for k in range(10)] for n in range(3)})

    first, rest, answered_while_held = await claims_beside_a_held_one(settings, store, 3, limit=8)
    every = [c.delivery_id for c in first] + [c.delivery_id for r in rest for c in r]
    owners = {i: (await delivery(rows, i)).lease_owner for i in every}

    # On PostgreSQL (SKIP LOCKED) the others do not wait. SQLite has one writer: the held
    # claim holds the event loop that commits it, so the others cannot even start.
    assert answered_while_held or settings.is_sqlite
    assert len(every) == len(set(every)) == 30
    assert all(owners[c.delivery_id] == "first" for c in first)
    for n, claimed in enumerate(rest):
        assert all(owners[c.delivery_id] == f"w{n}" for c in claimed)


async def test_claims_passing_over_an_endpoint_take_other_rows_while_another_holds_its_own(
    settings: Settings, store: Store, rows: SessionMaker
) -> None:
    """The probing claim, concurrently: no row twice, no waiting on PostgreSQL (SKIP LOCKED),
    and each claim's share per endpoint kept."""
    ids = await seed_due(
        rows,
        {
            "hanging": [(-100 + n, "pending") for n in range(30)],
            **{f"e{k}": [(-50 + n, "pending") for n in range(4)] for k in range(4)},
        },
    )
    hanging = (await delivery(rows, ids["hanging"][0])).endpoint_id
    endpoint_of = {i: name for name, found in ids.items() for i in found}

    first, [second], answered_while_held = await claims_beside_a_held_one(
        settings, store, 1, limit=6, per_endpoint=2, skip_endpoints=[hanging]
    )

    assert answered_while_held or settings.is_sqlite
    assert len(first) == len(second) == 6
    assert not {c.delivery_id for c in first} & {c.delivery_id for c in second}
    for claimed in (first, second):
        names = [endpoint_of[c.delivery_id] for c in claimed]
        assert "hanging" not in names
        assert max(names.count(name) for name in set(names)) <= 2


# Completing and releasing


async def test_complete_finishes_or_reschedules_by_the_database_clock_and_records_attempts(
    store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, one_due(3))
    ok, retried, failed = await claim(store, "w")
    before = await database_now(store)

    recorded = await complete(
        store,
        "w",
        answered(ok),
        answered(retried, PENDING, delay=60),
        answered(failed, FAILED),
    )
    after = await database_now(store)
    done, again, given_up = [await delivery(rows, c.delivery_id) for c in (ok, retried, failed)]
    attempts = [await attempts_of(rows, c.delivery_id) for c in (ok, retried, failed)]

    assert len(recorded) == 3
    assert (done.status, done.attempts_made, done.next_attempt_at) == (SUCCEEDED, 1, None)
    assert (given_up.status, given_up.next_attempt_at) == (FAILED, None)
    assert done.finished_at is not None and given_up.finished_at is not None
    assert (again.status, again.attempts_made, again.finished_at) == (PENDING, 1, None)
    assert again.next_attempt_at is not None
    assert before + timedelta(seconds=60) <= again.next_attempt_at
    assert again.next_attempt_at <= after + timedelta(seconds=60)
    assert {(d.lease_owner, d.lease_until) for d in (done, again, given_up)} == {(None, None)}
    assert [[(a.number, a.status_code) for a in found] for found in attempts] == [
        [(1, 200)],
        [(1, 500)],
        [(1, 500)],
    ]


async def test_worker_that_lost_its_lease_cannot_overwrite_the_new_holder(
    store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, one_due())
    [stale] = await claim(store, "slow-worker", lease_seconds=0.05)
    await asyncio.sleep(0.1)
    [fresh] = await claim(store, "new-worker", lease_seconds=30)
    assert fresh.delivery_id == stale.delivery_id

    recorded = await complete(store, "slow-worker", answered(stale))
    released = await store.write(
        claims.release(owner="slow-worker", delivery_ids=[stale.delivery_id])
    )
    untouched = await delivery(rows, stale.delivery_id)
    attempts_after_late = await attempts_of(rows, stale.delivery_id)
    recorded_by_holder = await complete(store, "new-worker", answered(fresh))
    done = await delivery(rows, fresh.delivery_id)

    assert (recorded, released, attempts_after_late) == ([], 0, [])
    assert (untouched.status, untouched.attempts_made, untouched.finished_at) == (PENDING, 0, None)
    assert untouched.lease_owner == "new-worker"
    assert untouched.lease_until is not None and untouched.lease_until > utcnow()
    assert len(recorded_by_holder) == 1
    assert (done.status, done.attempts_made, done.lease_owner) == (SUCCEEDED, 1, None)


async def test_released_delivery_is_claimable_at_once_and_unchanged(
    store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, one_due())
    [held] = await claim(store, "stopping")

    released = await store.write(claims.release(owner="stopping", delivery_ids=[held.delivery_id]))
    back = await delivery(rows, held.delivery_id)
    [again] = await claim(store, "next")

    assert released == 1
    assert (back.status, back.attempts_made, back.lease_owner, back.lease_until) == (
        PENDING,
        0,
        None,
        None,
    )
    assert again.delivery_id == held.delivery_id


async def test_delivery_cancelled_while_in_flight_records_its_attempt_and_stays_cancelled(
    store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, one_due())
    [in_flight] = await claim(store, "w")
    await store.write(redelivery.cancel([in_flight.endpoint_id]))

    recorded = await complete(store, "w", answered(in_flight, PENDING, delay=0.1))
    after = await delivery(rows, in_flight.delivery_id)
    attempts = await attempts_of(rows, in_flight.delivery_id)

    assert len(recorded) == 1
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500)]
    assert (after.status, after.attempts_made, after.lease_owner) == ("cancelled", 1, None)
    assert after.next_attempt_at is None
    assert after.finished_at is not None


# A manual retry while the attempt is in flight


async def test_retry_while_in_flight_records_the_attempt_and_leaves_the_delivery_due_now(
    store: Store, rows: SessionMaker
) -> None:
    await seed_due(rows, one_due())
    [in_flight] = await claim(store, "w")
    assert await store.write(redelivery.retry_now(in_flight.delivery_id)) == 1

    await complete(store, "w", answered(in_flight))  # the attempt in flight succeeded
    after = await delivery(rows, in_flight.delivery_id)
    [again] = await claim(store, "w")
    await complete(store, "w", answered(again))
    done = await delivery(rows, in_flight.delivery_id)
    attempts = await attempts_of(rows, in_flight.delivery_id)

    assert (after.status, after.attempts_made, after.finished_at) == (PENDING, 1, None)
    assert after.next_attempt_at is not None and after.next_attempt_at <= utcnow()
    assert (after.lease_owner, after.retry_requested_at) == (None, None)
    assert (again.delivery_id, again.attempts_made) == (in_flight.delivery_id, 1)
    assert (done.status, done.attempts_made) == (SUCCEEDED, 2)
    assert [a.number for a in attempts] == [1, 2]


async def test_retry_asked_before_an_attempt_is_answered_by_that_attempt(
    store: Store, rows: SessionMaker
) -> None:
    """A retry remembered for a lease that lapsed: the next claim is the attempt it asked for."""
    await seed_due(rows, one_due())
    [lapsing] = await claim(store, "dead", lease_seconds=0.05)
    await store.write(redelivery.retry_now(lapsing.delivery_id))
    await asyncio.sleep(0.1)
    [taken_over] = await claim(store, "alive")

    await complete(store, "alive", answered(taken_over))
    done = await delivery(rows, lapsing.delivery_id)

    assert (done.status, done.attempts_made, done.retry_requested_at) == (SUCCEEDED, 1, None)


# The clock: on PostgreSQL the database's, whatever the worker's says


@pytest.fixture
def skew_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Set hookline's own clock (`utcnow`, in every module that reads it) off by some hours,
    as on a worker machine whose clock is badly synced; PostgreSQL's clock stays right."""
    real = models.utcnow
    offset = [timedelta(0)]
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "hookline" and getattr(module, "utcnow", None) is real:
            monkeypatch.setattr(module, "utcnow", lambda: real() + offset[0])

    def skew(by: timedelta) -> None:
        offset[0] = by

    return skew


@asynccontextmanager
async def postgres_store(url: str, tmp_path: Path) -> AsyncIterator[tuple[Store, SessionMaker]]:
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)
    store, db = open_store(settings), support.test_db(settings)
    try:
        yield store, db.sessions
    finally:
        await store.close()
        await db.engine.dispose()


@pytest.mark.postgres
async def test_a_worker_whose_clock_runs_fast_takes_no_live_lease_and_no_row_early(
    empty_postgres: str, tmp_path: Path, skew_clock: Callable[[timedelta], None]
) -> None:
    async with postgres_store(empty_postgres, tmp_path) as (store, rows):
        ids = await seed_due(rows, {"held": [(-60, "pending")], "later": [(3600, "pending")]})
        [held] = await claim(store, "on-time", lease_seconds=30)

        # By its clock the lease ran out and the later delivery is due.
        skew_clock(timedelta(hours=3))
        taken = await claim(store, "fast")
        owners = [(await delivery(rows, i)).lease_owner for i in (held.delivery_id, *ids["later"])]

    assert taken == []
    assert owners == ["on-time", None]


@pytest.mark.postgres
async def test_leases_and_retries_written_by_a_slow_worker_hold_for_the_others(
    empty_postgres: str, tmp_path: Path, skew_clock: Callable[[timedelta], None]
) -> None:
    async with postgres_store(empty_postgres, tmp_path) as (store, rows):
        await seed_due(rows, {"due": [(-5 * 3600, "pending")]})  # due even by its clock

        # The lease it writes, and the time it sets for the retry, would lie three hours in
        # the past by every other worker's clock.
        skew_clock(timedelta(hours=-3))
        [held] = await claim(store, "slow", lease_seconds=30)
        skew_clock(timedelta(0))
        while_leased = await claim(store, "on-time")
        skew_clock(timedelta(hours=-3))
        await complete(store, "slow", answered(held, PENDING, delay=60))
        skew_clock(timedelta(0))
        while_waiting = await claim(store, "on-time")
        after = await delivery(rows, held.delivery_id)
        now = await database_now(store)

    assert (while_leased, while_waiting) == ([], [])
    assert after.next_attempt_at is not None
    assert timedelta(seconds=55) < after.next_attempt_at - now <= timedelta(seconds=60)
