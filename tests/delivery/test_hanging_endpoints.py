"""Hanging receivers (CONTRACT §7: a slow or dead endpoint never delays deliveries to healthy
ones): endpoints whose attempts time out share a small slow lane, so however many hang, the
healthy ones keep the worker's other slots. A real worker and real receivers on 127.0.0.1."""

import time

from hookline.config import Settings
from tests.delivery.helpers import subscribe
from tests.support.app import running_app
from tests.support.receiver import Receiver

HANGING, HEALTHY, USERS = 32, 3, 100


async def test_thirty_two_hanging_endpoints_do_not_starve_three_healthy_ones(
    make_settings, receiver: Receiver
) -> None:
    settings: Settings = make_settings(delivery_timeout=1.0, retry_schedule=(0.2, 0.4))
    async with running_app(settings, run_worker=True) as running:
        for n in range(HANGING):
            receiver.hang(f"/hang{n}")
            await subscribe(running.client, receiver.url(f"/hang{n}"))
        for n in range(HEALTHY):
            await subscribe(running.client, receiver.url(f"/ok{n}"))
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
