"""DESIGN "The delivery engine": leases recover dead workers, and a lost lease cannot write."""

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update

from hookline.config import Settings
from hookline.delivery import queue
from hookline.delivery.sender import Outcome
from hookline.ids import new_id
from hookline.models import Delivery, Endpoint, Event, utcnow
from tests.delivery.helpers import (
    attempts_of,
    delivery,
    only_delivery,
    register_user,
    subscribe,
    worker_running,
)
from tests.support.app import running_app
from tests.support.db import SessionMaker
from tests.support.receiver import Receiver

DEAD_LEASE = 1.0


async def claim(
    sessionmaker: SessionMaker, owner: str, *, lease_seconds: float, limit: int = 10
) -> list[queue.Claimed]:
    async with sessionmaker.begin() as session:
        return await queue.claim(session, owner=owner, limit=limit, lease_seconds=lease_seconds)


def answered(item: queue.Claimed, status: str) -> queue.Finished:
    """A first attempt that got a 200, as its sender would hand it to complete()."""
    outcome = Outcome(started_at=utcnow(), duration_ms=3, status_code=200, response_body="ok")
    return queue.Finished(item.delivery_id, item.attempts_made + 1, outcome.as_row(), status, None)


async def test_delivery_held_by_dead_worker_is_sent_once_its_lease_lapses(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/hook"))
        await register_user(running.client, "alice")
        claimed_at = time.monotonic()
        [held] = await claim(sessionmaker, "dead-worker", lease_seconds=DEAD_LEASE)
        # "dead-worker" never completes; a live worker starts beside it.
        async with worker_running(running):
            await receiver.wait_for(1, path="/hook", timeout=DEAD_LEASE + 5)
            done = await only_delivery(sessionmaker, endpoint["id"], status="succeeded")
        attempts = await attempts_of(sessionmaker, done.id)

    assert done.id == held.delivery_id
    waited = receiver.at("/hook")[0].at - claimed_at
    assert DEAD_LEASE - 0.05 <= waited < DEAD_LEASE + 2
    assert [(a.number, a.status_code) for a in attempts] == [(1, 200)]
    assert done.lease_owner is None
    assert len(receiver.at("/hook")) == 1


async def test_worker_that_lost_its_lease_cannot_overwrite_the_new_holder(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        await subscribe(running.client, receiver.url("/hook"))
        await register_user(running.client, "alice")
        [stale] = await claim(sessionmaker, "slow-worker", lease_seconds=0.05)
        await asyncio.sleep(0.1)
        [fresh] = await claim(sessionmaker, "new-worker", lease_seconds=30)
        assert fresh.delivery_id == stale.delivery_id

        async with sessionmaker.begin() as session:
            late = [answered(stale, queue.SUCCEEDED)]
            recorded = await queue.complete(session, owner="slow-worker", finished=late)
            await queue.release(session, owner="slow-worker", delivery_ids=[stale.delivery_id])
        untouched = await delivery(sessionmaker, stale.delivery_id)
        attempts_after_late = await attempts_of(sessionmaker, stale.delivery_id)

        async with sessionmaker.begin() as session:
            mine = [answered(fresh, queue.SUCCEEDED)]
            recorded_by_holder = await queue.complete(session, owner="new-worker", finished=mine)
        done = await delivery(sessionmaker, fresh.delivery_id)

    assert recorded == []
    assert attempts_after_late == []
    assert untouched.status == queue.PENDING
    assert untouched.attempts_made == 0
    assert untouched.finished_at is None
    assert untouched.lease_owner == "new-worker"
    assert untouched.lease_until is not None and untouched.lease_until > utcnow()
    assert len(recorded_by_holder) == 1
    assert (done.status, done.attempts_made, done.lease_owner) == (queue.SUCCEEDED, 1, None)


async def test_concurrent_claims_never_return_the_same_delivery(
    settings: Settings, receiver: Receiver
) -> None:
    claimers, per_claim = 4, 12
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        for n in range(3):
            await subscribe(running.client, receiver.url(f"/hook{n}"))
        for n in range(10):
            await register_user(running.client, f"user{n}")

        async def claim_and_hold(owner: str) -> list[str]:
            async with sessionmaker.begin() as session:
                claimed = await queue.claim(session, owner=owner, limit=per_claim, lease_seconds=30)
                # Hold the transaction (and its row locks) while the others claim.
                await asyncio.sleep(0.1)
            return [item.delivery_id for item in claimed]

        owners = [f"worker-{n}" for n in range(claimers)]
        async with asyncio.timeout(10):
            results = await asyncio.gather(*(claim_and_hold(owner) for owner in owners))
        owners_now = {
            delivery_id: (await delivery(sessionmaker, delivery_id)).lease_owner
            for claimed in results
            for delivery_id in claimed
        }

    claimed_ids = [delivery_id for claimed in results for delivery_id in claimed]
    assert len(claimed_ids) == len(set(claimed_ids)) == 30
    for owner, claimed in zip(owners, results, strict=True):
        assert all(owners_now[delivery_id] == owner for delivery_id in claimed)


async def test_claim_takes_other_rows_while_another_claim_holds_its_own(
    settings: Settings, receiver: Receiver
) -> None:
    """On PostgreSQL (SKIP LOCKED) the second claim does not wait; SQLite has one writer."""
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        await subscribe(running.client, receiver.url("/hook"))
        for n in range(10):
            await register_user(running.client, f"user{n}")
        async with sessionmaker.begin() as session:
            first = await queue.claim(session, owner="first", limit=5, lease_seconds=30)
            second_claim = asyncio.create_task(claim(sessionmaker, "second", lease_seconds=30))
            done, _ = await asyncio.wait([second_claim], timeout=0.5)
            answered_while_held = bool(done)
        async with asyncio.timeout(5):
            second = await second_claim

    assert answered_while_held is not settings.is_sqlite
    first_ids = {item.delivery_id for item in first}
    second_ids = {item.delivery_id for item in second}
    assert len(first_ids) == len(second_ids) == 5
    assert not first_ids & second_ids


async def test_delivery_cancelled_while_in_flight_records_its_attempt_and_stays_cancelled(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        url = receiver.url("/hook")
        await subscribe(running.client, url)
        await register_user(running.client, "alice")
        [in_flight] = await claim(sessionmaker, "worker", lease_seconds=30)
        removed = await running.client.request(
            "DELETE", "/webhook", json={"event": "user_registered", "url": url}
        )
        assert removed.status_code == 204

        failed_once = Outcome(
            started_at=utcnow(), duration_ms=3, status_code=500, error_kind="http_status"
        )
        retry_at = utcnow()
        async with sessionmaker.begin() as session:
            recorded = await queue.complete(
                session,
                owner="worker",
                finished=[
                    queue.Finished(
                        in_flight.delivery_id, 1, failed_once.as_row(), queue.PENDING, retry_at
                    )
                ],
            )
        after = await delivery(sessionmaker, in_flight.delivery_id)
        attempts = await attempts_of(sessionmaker, in_flight.delivery_id)

    assert len(recorded) == 1
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500)]
    assert (after.status, after.attempts_made, after.lease_owner) == ("cancelled", 1, None)
    assert after.next_attempt_at is None
    assert after.finished_at is not None


async def test_claim_takes_at_most_the_cap_per_endpoint_and_fills_up_from_others(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        busy = await subscribe(running.client, receiver.url("/busy"))
        for n in range(20):
            await register_user(running.client, f"user{n}")
        quiet = await subscribe(running.client, receiver.url("/quiet"))
        await register_user(running.client, "late")
        async with sessionmaker.begin() as session:
            claimed = await queue.claim(
                session, owner="w", limit=5, lease_seconds=30, per_endpoint=2
            )
        async with sessionmaker.begin() as session:
            skipping = await queue.claim(
                session,
                owner="w",
                limit=5,
                lease_seconds=30,
                per_endpoint=2,
                skip_endpoints=[busy["id"]],
            )

    by_endpoint = [c.endpoint_id for c in claimed]
    assert by_endpoint.count(busy["id"]) == 2
    assert [c.endpoint_id for c in skipping] == [quiet["id"]]


async def _seed_due(
    sessionmaker: SessionMaker, plan: dict[str, list[tuple[float, str]]]
) -> dict[str, list[str]]:
    """Endpoints with deliveries (seconds from now they fall due, status), ids in plan order."""
    now = utcnow()
    ids: dict[str, list[str]] = {}
    async with sessionmaker.begin() as session:
        published = Event(id=new_id("evt"), event="user_registered", payload={}, created_at=now)
        session.add(published)
        for name, deliveries in plan.items():
            endpoint = Endpoint(
                id=new_id("wh"), url=f"http://127.0.0.1:9/{name}", secret="s", created_at=now
            )
            session.add(endpoint)
            await session.flush()
            ids[name] = []
            for offset, status in deliveries:
                row = Delivery(
                    id=new_id("dlv"),
                    event_id=published.id,
                    endpoint_id=endpoint.id,
                    status=status,
                    next_attempt_at=now + timedelta(seconds=offset),
                    created_at=now,
                )
                session.add(row)
                ids[name].append(row.id)
            await session.flush()
    return ids


async def test_claim_passing_over_full_endpoints_takes_each_other_endpoints_oldest_due(
    settings: Settings,
) -> None:
    """With endpoints skipped the claim probes each other endpoint (not the due backlog)."""
    plan: dict[str, list[tuple[float, str]]] = {
        "hanging": [(-1000 + n, queue.PENDING) for n in range(200)],
        "a": [(-50, queue.PENDING), (-40, queue.PENDING), (-30, queue.PENDING), (-5, "failed")],
        "b": [(-45, queue.PENDING), (60, queue.PENDING)],  # the second is not due yet
        "c": [(-35, queue.PENDING), (-20, queue.PENDING)],
        "skipped_too": [(-900, queue.PENDING)],
    }
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        ids = await _seed_due(sessionmaker, plan)
        # c's oldest is leased to a live worker: not due for anyone else.
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == ids["c"][0])
                .values(lease_owner="other", lease_until=utcnow() + timedelta(seconds=30))
            )
        endpoint_of = {i: name for name, rows in ids.items() for i in rows}

        async def claim_skipping(owner: str, limit: int) -> list[str]:
            async with sessionmaker.begin() as session:
                claimed = await queue.claim(
                    session,
                    owner=owner,
                    limit=limit,
                    lease_seconds=30,
                    per_endpoint=2,
                    skip_endpoints=[
                        (await delivery(sessionmaker, ids[name][0])).endpoint_id
                        for name in ("hanging", "skipped_too")
                    ],
                )
            return [item.delivery_id for item in claimed]

        first = await claim_skipping("w1", limit=3)
        rest = await claim_skipping("w2", limit=10)
        leased = {i: (await delivery(sessionmaker, i)).lease_owner for i in first + rest}

    # Oldest due first across endpoints, at most 2 of each.
    assert first == [ids["a"][0], ids["b"][0], ids["a"][1]]
    # The second claim: a's leased two no longer count, c's oldest is leased elsewhere, b's
    # second is not due, nothing of the skipped endpoints, nothing not pending.
    assert rest == [ids["a"][2], ids["c"][1]]
    assert {endpoint_of[i] for i in first + rest} == {"a", "b", "c"}
    assert [leased[i] for i in first + rest] == ["w1"] * 3 + ["w2"] * 2


@contextmanager
def leasing_statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """The lease UPDATEs (and their parameters) run while the block runs."""
    executed: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("UPDATE deliveries SET lease_owner"):
            executed.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        yield executed
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)


async def _claim_skipping(
    sessionmaker: SessionMaker, skip: list[str], *, limit: int
) -> list[queue.Claimed]:
    async with sessionmaker.begin() as session:
        return await queue.claim(
            session, owner="w", limit=limit, lease_seconds=30, per_endpoint=2, skip_endpoints=skip
        )


# PostgreSQL's planner picks by table statistics; bench/p5_claim_cost.py measures it there.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_claim_passing_over_a_backlog_probes_endpoints_through_their_index(
    settings: Settings,
) -> None:
    """A plan check (SQLite's, which is deterministic): the skipped backlog is never walked."""
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        ids = await _seed_due(
            sessionmaker,
            {"hanging": [(-100 + n, queue.PENDING) for n in range(50)], "ok": [(-1, "pending")]},
        )
        hanging = (await delivery(sessionmaker, ids["hanging"][0])).endpoint_id
        engine = running.app.state.test_db.engine
        with leasing_statements(engine) as executed:
            claimed = await _claim_skipping(sessionmaker, [hanging], limit=5)
        [(probe, parameters)] = executed
        async with engine.connect() as connection:
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {probe}", parameters)
            details = " | ".join(str(row[-1]) for row in plan)

    assert [c.delivery_id for c in claimed] == ids["ok"]
    assert "ix_deliveries_endpoint_pending" in details
    assert "ix_deliveries_due" not in details


async def test_claims_passing_over_an_endpoint_take_other_rows_while_another_holds_its_own(
    settings: Settings,
) -> None:
    """The probing claim, concurrently: no row twice, no waiting on PostgreSQL (SKIP LOCKED),
    and each claim's share per endpoint kept."""
    plan: dict[str, list[tuple[float, str]]] = {
        "hanging": [(-100 + n, queue.PENDING) for n in range(30)],
        **{f"e{k}": [(-50 + n, queue.PENDING) for n in range(4)] for k in range(4)},
    }
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        ids = await _seed_due(sessionmaker, plan)
        hanging = (await delivery(sessionmaker, ids["hanging"][0])).endpoint_id
        endpoint_of = {i: name for name, rows in ids.items() for i in rows}

        async def claim_as(session: Any, owner: str) -> list[str]:
            claimed = await queue.claim(
                session,
                owner=owner,
                limit=6,
                lease_seconds=30,
                per_endpoint=2,
                skip_endpoints=[hanging],
            )
            return [item.delivery_id for item in claimed]

        async def second_claim() -> list[str]:
            async with sessionmaker.begin() as session:
                return await claim_as(session, "second")

        async with sessionmaker.begin() as session:
            first = await claim_as(session, "first")
            second_task = asyncio.create_task(second_claim())
            done, _ = await asyncio.wait([second_task], timeout=0.5)
            answered_while_held = bool(done)
        async with asyncio.timeout(5):
            second = await second_task

    assert answered_while_held is not settings.is_sqlite
    assert len(first) == len(second) == 6
    assert not set(first) & set(second)
    for claimed in (first, second):
        names = [endpoint_of[i] for i in claimed]
        assert "hanging" not in names
        assert max(names.count(name) for name in set(names)) <= 2
