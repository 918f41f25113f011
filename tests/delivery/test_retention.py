"""Retention: old events, deliveries and attempts are pruned in small batches."""

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hookline.config import Settings
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.ids import new_id
from hookline.models import Attempt, Delivery, Endpoint, Event, IdempotencyKey, utcnow
from hookline.store import Store, open_store, prune
from hookline.store.units import Unit
from tests.delivery.helpers import wait_until
from tests.support.db import inspection_engine as create_engine

OLD = timedelta(days=40)
RECENT = timedelta(days=1)
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """For arranging and inspecting rows; hookline prunes through its store."""
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


def counting(batches: list[int]) -> Callable[..., Unit[int]]:
    """prune.prune_batch, noting how many events each batch pruned."""
    prune_batch = prune.prune_batch

    def counted(*, before: datetime, batch_size: int) -> Unit[int]:
        pruned = yield from prune_batch(before=before, batch_size=batch_size)
        batches.append(pruned)
        return pruned

    return counted


async def add_endpoint(conn: AsyncConnection) -> str:
    endpoint_id = new_id("ep")
    values = {
        "id": endpoint_id,
        "url": f"https://example.com/{endpoint_id}",
        "secret": "whsec_test",
        "created_at": utcnow(),
    }
    await conn.execute(insert(Endpoint), values)
    return endpoint_id


async def add_events(
    conn: AsyncConnection,
    endpoint_id: str,
    *,
    count: int,
    age: timedelta,
    statuses: Sequence[str] = (),
    attempts: int = 2,
) -> list[str]:
    """`count` events created `age` ago, each with one delivery per status, with attempts."""
    created = utcnow() - age
    event_ids = [new_id("evt") for _ in range(count)]
    deliveries = [
        {
            "id": new_id("dlv"),
            "event_id": event_id,
            "endpoint_id": endpoint_id,
            "status": status,
            "attempts_made": attempts,
            "created_at": created,
        }
        for event_id in event_ids
        for status in statuses
    ]
    tries = [
        {"delivery_id": d["id"], "number": n, "started_at": created, "duration_ms": 5}
        for d in deliveries
        for n in range(1, attempts + 1)
    ]
    events = [
        {"id": event_id, "event": "user_registered", "payload": {}, "created_at": created}
        for event_id in event_ids
    ]
    await conn.execute(insert(Event), events)
    if deliveries:
        await conn.execute(insert(Delivery), deliveries)
    if tries:
        await conn.execute(insert(Attempt), tries)
    return event_ids


async def add_event(
    conn: AsyncConnection, endpoint_id: str, *, age: timedelta, statuses: Sequence[str]
) -> str:
    [event_id] = await add_events(conn, endpoint_id, count=1, age=age, statuses=statuses)
    return event_id


async def contents(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    """{event id: (its deliveries, their attempts)} for every event left."""
    per_delivery = (
        select(Delivery.event_id, func.count(Attempt.id).label("attempts"))
        .outerjoin(Attempt, Attempt.delivery_id == Delivery.id)
        .group_by(Delivery.id, Delivery.event_id)
        .subquery()
    )
    per_event = (
        select(Event.id, func.count(per_delivery.c.event_id), func.sum(per_delivery.c.attempts))
        .outerjoin(per_delivery, per_delivery.c.event_id == Event.id)
        .group_by(Event.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(per_event)).all()
        orphans = await conn.scalar(
            select(func.count())
            .select_from(Attempt)
            .where(Attempt.delivery_id.not_in(select(Delivery.id)))
        )
    assert orphans == 0
    return {event_id: (deliveries, int(attempts or 0)) for event_id, deliveries, attempts in rows}


async def test_old_finished_events_go_with_their_deliveries_and_attempts(
    engine: AsyncEngine, store: Store
) -> None:
    async with engine.begin() as conn:
        endpoint = await add_endpoint(conn)
        gone = [await add_event(conn, endpoint, age=OLD, statuses=(s,)) for s in FINISHED]
        gone.append(await add_event(conn, endpoint, age=OLD, statuses=FINISHED))
        gone.append(await add_event(conn, endpoint, age=OLD, statuses=()))
        recent = [
            await add_event(conn, endpoint, age=RECENT, statuses=("pending",)),
            await add_event(conn, endpoint, age=RECENT, statuses=FINISHED),
        ]

    pruned = await prune.prune(store, before=utcnow() - timedelta(days=30))

    assert pruned == len(gone)
    assert await contents(engine) == {recent[0]: (1, 2), recent[1]: (3, 6)}


async def test_old_event_with_a_pending_delivery_is_kept_whole(
    engine: AsyncEngine, store: Store
) -> None:
    async with engine.begin() as conn:
        endpoint = await add_endpoint(conn)
        # A failed delivery retried by hand is pending again, next to its finished siblings.
        retried = await add_event(conn, endpoint, age=OLD, statuses=("pending", *FINISHED))
        finished = await add_event(conn, endpoint, age=OLD, statuses=FINISHED)

    pruned = await store.write(prune.prune_batch(before=utcnow() - OLD / 2, batch_size=10))

    assert pruned == 1
    left = await contents(engine)
    assert left == {retried: (4, 8)}
    assert finished not in left


@pytest.mark.postgres
async def test_delivery_set_pending_while_a_batch_runs_keeps_its_event(
    empty_postgres: str, tmp_path: Path
) -> None:
    """PostgreSQL: the batch locks the deliveries it found, then reads their status again."""
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=empty_postgres)
    engine, store = create_engine(settings), open_store(settings)
    try:
        async with engine.begin() as conn:
            endpoint = await add_endpoint(conn)
            retried = await add_event(conn, endpoint, age=OLD, statuses=("failed",))
            finished = await add_event(conn, endpoint, age=OLD, statuses=("succeeded",))
        async with engine.connect() as retry:
            await retry.execute(
                update(Delivery).where(Delivery.event_id == retried).values(status="pending")
            )
            # The batch picks `retried` as finished, then waits on the row the retry holds.
            batch = asyncio.create_task(prune_one_batch(store))
            await wait_for_a_lock_wait(engine)
            await retry.commit()
            pruned = await batch
        left = await contents(engine)
    finally:
        await store.close()
        await engine.dispose()

    assert pruned == 1
    assert left == {retried: (1, 2)}
    assert finished not in left


async def prune_one_batch(store: Store) -> int:
    return await store.write(prune.prune_batch(before=utcnow() - OLD / 2, batch_size=10))


async def wait_for_a_lock_wait(engine: AsyncEngine) -> None:
    waiting = select(func.count()).select_from(text("pg_locks")).where(text("NOT granted"))
    async with asyncio.timeout(5):
        while True:
            async with engine.connect() as conn:
                if await conn.scalar(waiting):
                    return
            await asyncio.sleep(0.01)


async def test_events_created_at_or_after_the_cutoff_are_kept(
    engine: AsyncEngine, store: Store
) -> None:
    async with engine.begin() as conn:
        endpoint = await add_endpoint(conn)
        [event_id] = await add_events(conn, endpoint, count=1, age=OLD, statuses=FINISHED)
        created = await conn.scalar(select(Event.created_at).where(Event.id == event_id))
    assert created is not None

    assert await prune.prune(store, before=created) == 0
    assert await prune.prune(store, before=created + timedelta(microseconds=1)) == 1


async def test_prune_goes_batch_by_batch_until_a_batch_comes_up_short(
    engine: AsyncEngine, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.begin() as conn:
        endpoint = await add_endpoint(conn)
        await add_events(conn, endpoint, count=10, age=OLD, statuses=("succeeded",))
        recent = await add_event(conn, endpoint, age=RECENT, statuses=("succeeded",))
    batches: list[int] = []
    monkeypatch.setattr(prune, "prune_batch", counting(batches))

    pruned = await prune.prune(store, before=utcnow() - OLD / 2, batch_size=3, pause=0)

    assert pruned == 10
    assert batches == [3, 3, 3, 1]
    assert await contents(engine) == {recent: (1, 2)}


async def test_prune_on_an_empty_database_returns_zero_and_logs_nothing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hookline.retention"):
        assert await prune.prune(store, before=utcnow()) == 0
    assert caplog.records == []


async def test_prune_logs_how_many_it_pruned(
    engine: AsyncEngine, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async with engine.begin() as conn:
        endpoint = await add_endpoint(conn)
        await add_events(conn, endpoint, count=4, age=OLD, statuses=("failed",))

    with caplog.at_level(logging.INFO, logger="hookline.retention"):
        await prune.prune(store, before=utcnow() - OLD / 2)

    [record] = caplog.records
    assert record.name == "hookline.retention"
    assert record.levelno == logging.INFO
    assert "pruned 4 events" in record.getMessage()


async def test_prune_refuses_an_empty_batch(store: Store) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await prune.prune(store, before=utcnow(), batch_size=0)


NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (30, datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        (1, datetime(2026, 3, 30, 12, 0, tzinfo=UTC)),
        (365, datetime(2025, 3, 31, 12, 0, tzinfo=UTC)),
    ],
)
def test_cutoff_is_retention_days_before_now(days: int, expected: datetime) -> None:
    assert prune.cutoff(days, NOW) == expected


async def test_a_write_commits_between_batches_instead_of_waiting_for_the_whole_prune(
    tmp_path: Path, migrated_sqlite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: one connection, every transaction takes the write lock; prune must let go of it."""
    sqlite = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hookline.db'}",
    )
    shutil.copyfile(migrated_sqlite, tmp_path / "hookline.db")
    engine, store = create_engine(sqlite), open_store(sqlite)
    try:
        async with engine.begin() as conn:
            endpoint = await add_endpoint(conn)
            await add_events(conn, endpoint, count=2000, age=OLD, statuses=("succeeded",))
        # Open the store's writer before the writes below race it: its connection's
        # `PRAGMA journal_mode=WAL` fails at once, unretried, while another holds the lock.
        await store.write(prune.idempotency_keys(before=datetime(2000, 1, 1, tzinfo=UTC)))

        batches: list[int] = []
        monkeypatch.setattr(prune, "prune_batch", counting(batches))

        # (batches done when the write committed, how long it waited and ran)
        writes: list[tuple[int, float]] = []

        async def write_meanwhile(pruning: asyncio.Task[int]) -> None:
            while not pruning.done():
                started = time.monotonic()
                async with engine.begin() as conn:
                    await add_events(conn, endpoint, count=1, age=RECENT, statuses=("pending",))
                writes.append((len(batches), time.monotonic() - started))
                await asyncio.sleep(0.01)

        started = time.monotonic()
        pruning = asyncio.create_task(
            prune.prune(store, before=utcnow() - OLD / 2, batch_size=100, pause=0.05)
        )
        await write_meanwhile(pruning)
        pruned = await pruning
        took = time.monotonic() - started
    finally:
        await store.close()
        await engine.dispose()

    assert pruned == 2000
    total_batches = len(batches)
    assert total_batches == 21  # 20 full batches, then an empty one
    between = {done for done, _ in writes if 0 < done < total_batches}
    # Writes got in all along the prune, not once it was over.
    assert len(between) >= total_batches // 2, writes
    longest_wait = max(waited for _, waited in writes)
    assert longest_wait < took / 4, (longest_wait, took)


async def test_a_deleted_endpoint_goes_once_retention_has_pruned_its_deliveries(
    engine: AsyncEngine, store: Store
) -> None:
    async with engine.begin() as conn:
        old_only, recent_too, live = [await add_endpoint(conn) for _ in range(3)]
        await add_event(conn, old_only, age=OLD, statuses=FINISHED)
        await add_event(conn, recent_too, age=OLD, statuses=FINISHED)
        recent = await add_event(conn, recent_too, age=RECENT, statuses=("cancelled",))
        await conn.execute(
            update(Endpoint)
            .where(Endpoint.id.in_([old_only, recent_too]))
            .values(deleted_at=utcnow() - RECENT)
        )

    before = await store.write(prune.deleted_endpoints())
    await prune.prune(store, before=utcnow() - timedelta(days=30))
    after = await store.write(prune.deleted_endpoints())
    async with engine.connect() as conn:
        left = set((await conn.execute(select(Endpoint.id))).scalars())

    assert (before, after) == (0, 1)
    # A deleted one with a delivery left stays (its history is readable), a live one always.
    assert left == {recent_too, live}
    assert set(await contents(engine)) == {recent}


async def test_worker_prunes_old_events_and_expired_idempotency_keys_on_its_own(
    engine: AsyncEngine, store: Store, settings: Settings
) -> None:
    async with engine.begin() as conn:
        endpoint = await add_endpoint(conn)
        old = await add_event(conn, endpoint, age=OLD, statuses=FINISHED)
        recent = await add_event(conn, endpoint, age=RECENT, statuses=FINISHED)
        key_row = {"scope": "POST /users", "request_hash": "h", "status_code": 201, "response": {}}
        await conn.execute(
            insert(IdempotencyKey),
            [
                {**key_row, "key": "expired", "created_at": utcnow() - timedelta(hours=25)},
                {**key_row, "key": "fresh", "created_at": utcnow() - timedelta(hours=23)},
            ],
        )
    sender = Sender.from_settings(settings)
    await sender.start()
    worker = Worker(settings=settings, store=store, sender=sender, housekeeping_interval=0.05)
    task = asyncio.create_task(worker.run())

    async def pruned() -> bool:
        async with engine.connect() as conn:
            keys = set((await conn.execute(select(IdempotencyKey.key))).scalars())
        return keys == {"fresh"} and old not in await contents(engine)

    try:
        await wait_until(pruned, timeout=10, what="the worker's prune")
    finally:
        worker.stop()
        await task
        await sender.close()

    assert set(await contents(engine)) == {recent}
