"""The worker's life: caps per endpoint, batched results, a graceful stop."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from hookline.config import Settings
from hookline.delivery import worker as worker_module
from hookline.delivery.sender import Sender
from hookline.models import Attempt, Delivery
from hookline.store import Status, claims
from hookline.store.units import Unit
from tests.delivery.helpers import (
    attempts_of,
    deliveries_to,
    headers_of,
    publish_many,
    register_user,
    subscribe,
    wait_until,
    worker_running,
)
from tests.support.app import RunningApp, running_app
from tests.support.receiver import Receiver

SUCCEEDED, PENDING = Status.SUCCEEDED, Status.PENDING


async def publish_users(running: RunningApp, count: int) -> None:
    """`count` user_registered events in one unit of work (faster than as many POST /users)."""
    await publish_many(running.app.state.runtime.store, "user_registered", count)


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

    assert (done.status, done.lease_owner) == (SUCCEEDED, None)
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
        await publish_users(running, 30)
        async with worker_running(running) as (worker, task):
            await receiver.wait_for(30, path="/slow", timeout=5)
            worker.stop()
            async with asyncio.timeout(settings.delivery_timeout + 2):
                await task
        deliveries = await deliveries_to(sessionmaker, endpoint["id"])
        attempts = [await attempts_of(sessionmaker, d.id) for d in deliveries]

    assert {(d.status, d.lease_owner) for d in deliveries} == {(SUCCEEDED, None)}
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
            reclaimed = await running.app.state.runtime.store.write(
                claims.claim(owner="next-worker", limit=10, lease_seconds=30)
            )
        finally:
            await sender.close()

    assert drained < settings.delivery_timeout + 2
    assert (released.status, released.attempts_made) == (PENDING, 0)
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
        # An endpoint that has answered (here at another URL) gets its full cap when it hangs;
        # one the worker has never seen answer would get one attempt at a time.
        stuck = await subscribe(running.client, receiver.url("/answered"))
        await subscribe(running.client, receiver.url("/healthy"))
        await register_user(running.client, "first")
        await receiver.wait_for(1, path="/answered", timeout=timeout)
        await receiver.wait_for(1, path="/healthy", timeout=timeout)
        moved = await running.client.patch(
            f"/webhooks/{stuck['id']}", json={"url": receiver.url("/stuck")}
        )
        assert moved.status_code == 200, moved.text
        for n in range(5):
            await register_user(running.client, f"user{n}")
        await receiver.wait_for(6, path="/healthy", timeout=timeout)
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
        await subscribe(running.client, receiver.url("/slow"), "user_registered")
        await publish_users(running, 30)
        # Due after the whole backlog of the slow endpoint.
        await subscribe(running.client, receiver.url("/healthy"), "user_send_message")
        await publish_many(running.app.state.runtime.store, "user_send_message", 1)
        started = time.monotonic()
        async with worker_running(running):
            await receiver.wait_for(1, path="/healthy", timeout=10)
            waited = receiver.at("/healthy")[0].at - started
            slow_so_far = len(receiver.at("/slow"))

    # The backlog takes 1.5 s (30 at 0.1 s, two at a time); the healthy one must not wait for it.
    assert waited < 0.5, f"healthy endpoint waited {waited:.2f} s behind {slow_so_far} slow"


async def test_many_deliveries_are_recorded_in_batches_one_attempt_each(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = 200
    settings = make_settings(result_batch_size=50, result_flush_interval=1.0)
    batches: list[int] = []  # attempts per recording transaction
    record = worker_module.record

    def counted(owner: str, batch: Any, **options: Any) -> Unit[list[str]]:
        batches.append(len(batch))
        return (yield from record(owner, batch, **options))

    monkeypatch.setattr(worker_module, "record", counted)
    async with running_app(settings) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/hook"))
        await publish_users(running, count)
        async with worker_running(running):
            await receiver.wait_for(count, path="/hook", timeout=30)

            async def all_settled() -> bool:
                deliveries = await deliveries_to(sessionmaker, endpoint["id"])
                return all(d.status == SUCCEEDED for d in deliveries)

            await wait_until(all_settled, timeout=10, what="every delivery to succeed")
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
    assert sum(batches) == count
    assert len(batches) <= count // settings.result_batch_size + 2, batches
