"""The delivery engine: leases recover dead workers, and a retry by hand while an
attempt is in flight takes effect. The store's side of leases, by itself, is in
tests/store/test_claims.py."""

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

from hookline.config import Settings
from hookline.store import Status, claims
from tests.delivery.helpers import (
    attempts_of,
    attempts_to,
    deliveries_to,
    only_delivery,
    register_user,
    subscribe,
    worker_running,
)
from tests.support.app import running_app
from tests.support.receiver import Receiver

DEAD_LEASE = 1.0


async def test_delivery_held_by_dead_worker_is_sent_once_its_lease_lapses(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings) as running:
        store, sessionmaker = running.app.state.runtime.store, running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/hook"))
        await register_user(running.client, "alice")
        claimed_at = time.monotonic()
        [held] = await store.write(
            claims.claim(owner="dead-worker", limit=10, lease_seconds=DEAD_LEASE)
        )
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


async def test_retry_posted_while_the_attempt_is_in_flight_sends_it_again_after_recording_it(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    """The in-flight result is recorded as an attempt, and the delivery is
    attempted again (not finished by the result that was already on its way)."""
    receiver.script("/slow", [200], delay=1.0)  # holds each request open a second
    async with running_app(make_settings(), run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/slow"))
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/slow", timeout=5)
        [in_flight] = await deliveries_to(sessionmaker, endpoint["id"])
        assert in_flight.lease_owner is not None  # the receiver holds the first attempt

        retried = await running.client.post(f"/deliveries/{in_flight.id}/retry")
        await receiver.wait_for(2, path="/slow", timeout=5)
        first, second = await attempts_to(sessionmaker, endpoint["id"], count=2)
        done = await only_delivery(sessionmaker, endpoint["id"], status="succeeded")
        await asyncio.sleep(0.3)  # room for a third attempt, had one been scheduled

    assert retried.status_code == 202, retried.text
    assert [(a.number, a.status_code) for a in (first, second)] == [(1, 200), (2, 200)]
    # The attempt in flight was the schedule's; the one the retry asked for is manual.
    assert [a.trigger for a in (first, second)] == ["scheduled", "manual"]
    assert not done.manual
    # The second attempt began once the first had been answered and recorded.
    assert second.started_at - first.started_at >= timedelta(milliseconds=first.duration_ms)
    assert (done.status, done.attempts_made, done.retry_requested_at) == (Status.SUCCEEDED, 2, None)
    assert len(receiver.at("/slow")) == 2
