"""The worker's life (STYLE §9): caps per endpoint, batched results, a graceful stop."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select

from hookline.config import Settings
from hookline.delivery import queue
from hookline.delivery.sender import Sender
from hookline.events import service as events
from hookline.models import Attempt, Delivery
from tests.delivery.helpers import (
    attempts_of,
    deliveries_to,
    headers_of,
    register_user,
    subscribe,
    wait_until,
    worker_running,
)
from tests.support.app import running_app
from tests.support.db import SessionMaker
from tests.support.receiver import Receiver


async def publish_users(sessionmaker: SessionMaker, count: int) -> None:
    """`count` user_registered events in one transaction (faster than as many POST /users)."""
    async with sessionmaker.begin() as session:
        for n in range(count):
            data = {"id": f"usr_{n}", "username": f"user{n}", "registered_at": "2026-01-01"}
            await events.publish(session=session, event=events.USER_REGISTERED, data=data)


async def test_stop_lets_attempt_in_flight_finish_and_records_it(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/slow", [200], delay=0.5)
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/slow"))
        await register_user(running.client, "alice")
        async with worker_running(running) as (worker, task):
            await receiver.wait_for(1, path="/slow", timeout=5)
            worker.stop()
            async with asyncio.timeout(settings.delivery_timeout + 2):
                await task
        [done] = await deliveries_to(sessionmaker, endpoint["id"])
        attempts = await attempts_of(sessionmaker, done.id)

    assert (done.status, done.lease_owner) == (queue.SUCCEEDED, None)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 200)]
    assert attempts[0].duration_ms >= 450


async def test_stop_records_every_attempt_that_finishes_while_draining(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # Flushing every millisecond keeps a flush under way whenever the drain ends, which is
    # when a stop that cancels the flusher would lose the batch it holds.
    settings = make_settings(worker_per_endpoint=30, result_flush_interval=0.001)
    receiver.script("/slow", [200], delay=0.3)
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/slow"))
        await publish_users(sessionmaker, 30)
        async with worker_running(running) as (worker, task):
            await receiver.wait_for(30, path="/slow", timeout=5)
            worker.stop()
            async with asyncio.timeout(settings.delivery_timeout + 2):
                await task
        deliveries = await deliveries_to(sessionmaker, endpoint["id"])
        attempts = [await attempts_of(sessionmaker, d.id) for d in deliveries]

    assert {(d.status, d.lease_owner) for d in deliveries} == {(queue.SUCCEEDED, None)}
    assert [len(a) for a in attempts] == [1] * 30


async def test_stop_releases_attempt_that_outlives_the_drain(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(delivery_timeout=0.5)
    receiver.hang("/stuck")
    # A sender whose timeout outlasts the drain (delivery_timeout + 1) stands for an attempt
    # that overruns its bound: the drain must give up on it and hand the delivery back.
    async with running_app(settings) as running:
        sender = Sender(
            timeout=30,
            concurrency=4,
            allow_private_networks=True,
            box=running.app.state.runtime.box,
        )
        await sender.start()
        try:
            sessionmaker = running.app.state.test_db.sessions
            endpoint = await subscribe(running.client, receiver.url("/stuck"))
            await register_user(running.client, "alice")
            async with worker_running(running, sender=sender) as (worker, task):
                await receiver.wait_for(1, path="/stuck", timeout=5)
                stopped = time.monotonic()
                worker.stop()
                async with asyncio.timeout(settings.delivery_timeout + 3):
                    await task
                drained = time.monotonic() - stopped
            [released] = await deliveries_to(sessionmaker, endpoint["id"])
            attempts = await attempts_of(sessionmaker, released.id)
            # Released, not left to lapse: another worker can claim it at once.
            async with sessionmaker.begin() as session:
                reclaimed = await queue.claim(
                    session, owner="next-worker", limit=10, lease_seconds=30
                )
        finally:
            await sender.close()

    assert drained < settings.delivery_timeout + 2
    assert (released.status, released.attempts_made) == (queue.PENDING, 0)
    assert (released.lease_owner, released.lease_until) == (None, None)
    assert attempts == []
    assert [item.delivery_id for item in reclaimed] == [released.id]


async def test_hanging_endpoint_holds_at_most_its_cap_while_healthy_one_gets_everything(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(worker_per_endpoint=2, delivery_timeout=1.0)
    cap, timeout = settings.worker_per_endpoint, settings.delivery_timeout
    receiver.hang("/stuck")
    async with running_app(settings, run_worker=True) as running:
        await subscribe(running.client, receiver.url("/stuck"))
        await subscribe(running.client, receiver.url("/healthy"))
        for n in range(5):
            await register_user(running.client, f"user{n}")
        await receiver.wait_for(5, path="/healthy", timeout=timeout)
        # The third request to the stuck endpoint has to wait for one of the first two.
        await receiver.wait_for(cap + 2, path="/stuck", timeout=timeout + 3)

    stuck = receiver.at("/stuck")
    healthy = receiver.at("/healthy")
    assert max(r.at for r in healthy) < stuck[0].at + timeout
    in_first_timeout = [r for r in stuck if r.at < stuck[0].at + timeout * 0.9]
    assert len(in_first_timeout) == cap
    for earlier, later in zip(stuck, stuck[cap:], strict=False):
        assert later.at - earlier.at >= timeout * 0.9


async def test_backlog_of_slow_endpoint_does_not_starve_healthy_one(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(worker_concurrency=4, worker_per_endpoint=2)
    receiver.script("/slow", [200], delay=0.1)
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        await subscribe(running.client, receiver.url("/slow"), "user_registered")
        await publish_users(sessionmaker, 30)
        # Due after the whole backlog of the slow endpoint.
        await subscribe(running.client, receiver.url("/healthy"), "user_send_message")
        async with sessionmaker.begin() as session:
            await events.publish(session=session, event=events.USER_SEND_MESSAGE, data={})
        started = time.monotonic()
        async with worker_running(running):
            await receiver.wait_for(1, path="/healthy", timeout=10)
            waited = receiver.at("/healthy")[0].at - started
            slow_so_far = len(receiver.at("/slow"))

    # The backlog takes 1.5 s (30 at 0.1 s, two at a time); the healthy one must not wait for it.
    assert waited < 0.5, f"healthy endpoint waited {waited:.2f} s behind {slow_so_far} slow"


async def test_many_deliveries_are_recorded_in_batches_one_attempt_each(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    count = 200
    settings = make_settings(result_batch_size=50, result_flush_interval=1.0)
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/hook"))
        await publish_users(sessionmaker, count)
        inserts: list[int] = []

        def count_attempt_inserts(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if statement.lstrip().upper().startswith("INSERT INTO ATTEMPTS"):
                inserts.append(len(parameters) if isinstance(parameters, list) else 1)

        engine = running.app.state.test_db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count_attempt_inserts)
        try:
            async with worker_running(running):
                await receiver.wait_for(count, path="/hook", timeout=30)

                async def all_settled() -> bool:
                    deliveries = await deliveries_to(sessionmaker, endpoint["id"])
                    return all(d.status == queue.SUCCEEDED for d in deliveries)

                await wait_until(all_settled, timeout=10, what="every delivery to succeed")
        finally:
            event.remove(engine, "before_cursor_execute", count_attempt_inserts)
        async with sessionmaker() as session:
            numbers = (
                await session.execute(
                    select(Delivery.id, Delivery.attempts_made, Attempt.number).join(
                        Attempt, Attempt.delivery_id == Delivery.id
                    )
                )
            ).all()

    assert len(numbers) == count
    assert {(made, number) for _, made, number in numbers} == {(1, 1)}
    assert len({delivery_id for delivery_id, _, _ in numbers}) == count
    assert len({headers_of(r)["webhook-id"] for r in receiver.at("/hook")}) == count
    assert sum(inserts) == count
    assert len(inserts) <= count // settings.result_batch_size + 2, inserts
