"""Hanging receivers (a slow or dead endpoint never delays deliveries to healthy
ones): an endpoint the worker has not seen answer gets one attempt at a time, and endpoints
whose attempts time out share a small slow lane, so however many hang, the healthy ones keep
the worker's other slots. A real worker and real receivers on 127.0.0.1."""

import time

import httpx
import pytest

from hookline.config import Settings
from tests.delivery.helpers import publish_many, subscribe
from tests.support.app import running_app
from tests.support.receiver import Receiver

HANGING, HEALTHY, USERS = 32, 3, 100
EVENTS = 50  # to each endpoint


async def subscribe_hanging_then_healthy(client: httpx.AsyncClient, receiver: Receiver) -> None:
    """HANGING endpoints that never answer (/hang0…), then HEALTHY ones (/ok0…)."""
    for n in range(HANGING):
        receiver.hang(f"/hang{n}")
        await subscribe(client, receiver.url(f"/hang{n}"))
    for n in range(HEALTHY):
        await subscribe(client, receiver.url(f"/ok{n}"))


async def test_thirty_two_hanging_endpoints_do_not_starve_three_healthy_ones(
    make_settings, receiver: Receiver
) -> None:
    settings: Settings = make_settings(delivery_timeout=1.0, retry_schedule=(0.2, 0.4))
    async with running_app(settings, run_worker=True) as running:
        await subscribe_hanging_then_healthy(running.client, receiver)
        started = time.monotonic()
        for n in range(USERS):
            response = await running.client.post("/users", json={"username": f"user{n}"})
            assert response.status_code == 201, response.text
        healthy = [receiver.url(f"/ok{n}").rsplit("/", 1)[1] for n in range(HEALTHY)]
        for path in healthy:
            await receiver.wait_for(USERS, path=f"/{path}", timeout=30)
        took = time.monotonic() - started

    # Without the slow lane the hanging endpoints hold every slot a second at a time and the
    # healthy ones get a few deliveries a second (about 50 s for these 300); the bound is loose.
    assert took < 12, f"the healthy endpoints took {took:.1f} s"


@pytest.mark.serial
async def test_hanging_endpoints_do_not_starve_healthy_ones_before_their_first_timeout(
    make_settings, receiver: Receiver
) -> None:
    # A long timeout, as in production (15 s): the worker cannot wait to learn which endpoints
    # hang. The hanging ones come first, so that among deliveries due at the same moment a
    # claim meets theirs first.
    settings: Settings = make_settings(delivery_timeout=10.0, lease_seconds=30.0)
    async with running_app(settings, run_worker=True) as running:
        await subscribe_hanging_then_healthy(running.client, receiver)
        started = time.monotonic()
        await publish_many(running.app.state.runtime.store, "user_registered", EVENTS)
        for n in range(HEALTHY):
            await receiver.wait_for(EVENTS, path=f"/ok{n}", timeout=30)
        took = time.monotonic() - started
        hung = sum(len(receiver.at(f"/hang{n}")) for n in range(HANGING))
        receiver.release()  # so that the worker's stop need not wait out the timeout

    # Before, the hanging endpoints took every slot (4 attempts each wanted, 64 slots) and the
    # healthy ones waited for the first timeouts: over 10 s. Now each hanging one holds one.
    assert took < 5, f"the healthy endpoints took {took:.1f} s"
    assert hung == HANGING


@pytest.mark.serial
async def test_an_endpoint_gets_one_attempt_at_a_time_until_it_answers_then_its_cap(
    make_settings, receiver: Receiver
) -> None:
    settings: Settings = make_settings(worker_per_endpoint=4, delivery_timeout=3.0)
    receiver.script("/hook", [200], delay=0.4)
    async with running_app(settings, run_worker=True) as running:
        await subscribe(running.client, receiver.url("/hook"))
        await publish_many(running.app.state.runtime.store, "user_registered", 9)
        await receiver.wait_for(9, path="/hook", timeout=10)

    arrived = [r.at - receiver.at("/hook")[0].at for r in receiver.at("/hook")]
    # The first attempt alone (its answer takes 0.4 s); then four at a time.
    assert arrived[1] >= 0.35, arrived
    assert max(arrived[1:5]) - arrived[1] < 0.2, arrived
    assert arrived[5] >= arrived[1] + 0.35, arrived
