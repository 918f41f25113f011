"""Helpers for the delivery tests: subscribe and publish through the API, arrange rows, read
the queue, wait."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.ids import new_id
from hookline.models import Attempt, Delivery, Endpoint, Event, utcnow
from hookline.store import Store, outbox
from tests.support.app import RunningApp
from tests.support.db import SessionMaker
from tests.support.receiver import Received

T = TypeVar("T")


async def subscribe(
    client: httpx.AsyncClient, url: str, event: str = "user_registered"
) -> dict[str, Any]:
    """POST /webhook; the answer carries the endpoint's id and secret."""
    response = await client.post("/webhook", json={"event": event, "url": url})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def register_user(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    """POST /users, which fires `user_registered`."""
    response = await client.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def publish_many(
    store: Store, event: str, count: int, *, data: dict[str, Any] | None = None
) -> list[str]:
    """`count` events in one unit of work (faster than as many POST /users); their ids."""

    def publish() -> Any:
        ids = []
        for n in range(count):
            ids.append((yield from outbox.publish(event=event, data=data or {"n": n})).event_id)
        return ids

    published: list[str] = await store.write(publish())
    return published


# (seconds from now the delivery falls due, its status)
Plan = dict[str, list[tuple[float, str]]]


async def seed_due(
    sessionmaker: SessionMaker, plan: Plan, *, event: str = "user_registered"
) -> dict[str, list[str]]:
    """Endpoints named in `plan`, with deliveries of one event; delivery ids in plan order."""
    now = utcnow()
    ids: dict[str, list[str]] = {}
    async with sessionmaker.begin() as session:
        published = Event(id=new_id("evt"), event=event, payload={"n": 1}, created_at=now)
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


def headers_of(received: Received) -> dict[str, str]:
    return {name.lower(): value for name, value in received.headers.items()}


async def deliveries_to(sessionmaker: SessionMaker, endpoint_id: str) -> list[Delivery]:
    async with sessionmaker() as session:
        query = select(Delivery).where(Delivery.endpoint_id == endpoint_id).order_by(Delivery.id)
        return list((await session.execute(query)).scalars())


async def delivery(sessionmaker: SessionMaker, delivery_id: str) -> Delivery:
    async with sessionmaker() as session:
        found = await session.get(Delivery, delivery_id)
        assert found is not None
        return found


async def attempts_of(sessionmaker: SessionMaker, delivery_id: str) -> list[Attempt]:
    async with sessionmaker() as session:
        query = select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.number)
        return list((await session.execute(query)).scalars())


async def wait_until(probe: Callable[[], Awaitable[T]], *, timeout: float, what: str) -> T:
    """Poll `probe` until it returns something truthy, and return that."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = await probe()
                if result:
                    return result
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"waited {timeout} s for {what}")


async def only_delivery(
    sessionmaker: SessionMaker, endpoint_id: str, *, status: str, timeout: float = 10
) -> Delivery:
    """Wait until the endpoint's one delivery has `status`; return it."""

    async def probe() -> Delivery | None:
        found = await deliveries_to(sessionmaker, endpoint_id)
        assert len(found) <= 1, found
        return found[0] if found and found[0].status == status else None

    return await wait_until(probe, timeout=timeout, what=f"a {status} delivery to {endpoint_id}")


async def attempts_to(
    sessionmaker: SessionMaker, endpoint_id: str, *, count: int, timeout: float = 10
) -> list[Attempt]:
    """Wait until the endpoint's one delivery has `count` attempts recorded; return them."""

    async def probe() -> list[Attempt]:
        found = await deliveries_to(sessionmaker, endpoint_id)
        if not found:
            return []
        attempts = await attempts_of(sessionmaker, found[0].id)
        return attempts if len(attempts) >= count else []

    return await wait_until(probe, timeout=timeout, what=f"{count} attempts to {endpoint_id}")


@asynccontextmanager
async def worker_running(
    running: RunningApp, *, sender: Sender | None = None
) -> AsyncIterator[tuple[Worker, "asyncio.Task[None]"]]:
    """A worker on the app's store, woken by its commits; stopped (if the test did not) at exit."""
    runtime = running.app.state.runtime
    worker = Worker(settings=running.settings, store=runtime.store, sender=sender or runtime.sender)
    runtime.store.on_wake(worker.wake)
    task = asyncio.create_task(worker.run())
    try:
        yield worker, task
    finally:
        worker.stop()
        async with asyncio.timeout(running.settings.delivery_timeout + 5):
            await task
