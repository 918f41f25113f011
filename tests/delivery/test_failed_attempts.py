"""Anything but a 2xx is a failed attempt, recorded and retried on the schedule."""

import asyncio
import socket
import time
from collections.abc import Callable
from itertools import pairwise

from hookline.config import Settings
from hookline.delivery.sender import RESPONSE_BODY_LIMIT
from tests.delivery.helpers import (
    attempts_of,
    attempts_to,
    headers_of,
    only_delivery,
    register_user,
    subscribe,
)
from tests.support.app import running_app
from tests.support.receiver import Receiver

# How late a retry may come: the worker polls every poll_interval, records results every
# result_flush_interval; anything near lease_seconds would mean a lapsed lease, not a retry.
RETRY_SLACK = 1.0


async def test_receiver_that_fails_twice_gets_third_attempt_on_schedule(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/flaky", [500, 500, 200])
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/flaky"))
        await register_user(running.client, "alice")
        done = await only_delivery(sessionmaker, endpoint["id"], status="succeeded")
        attempts = await attempts_of(sessionmaker, done.id)

    assert done.attempts_made == 3
    assert done.finished_at is not None
    assert done.lease_owner is None
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.response_body for a in attempts] == ["nope", "nope", "ok"]
    assert [a.error_kind for a in attempts] == ["http_status", "http_status", None]
    assert all(a.duration_ms >= 0 for a in attempts)
    assert [a.started_at for a in attempts] == sorted(a.started_at for a in attempts)

    arrivals = receiver.at("/flaky")
    assert len(arrivals) == 3
    assert len({headers_of(r)["webhook-id"] for r in arrivals}) == 1
    gaps = [later.at - earlier.at for earlier, later in pairwise(arrivals)]
    for gap, step in zip(gaps, settings.retry_schedule, strict=True):
        assert step <= gap < step + RETRY_SLACK


async def test_receiver_that_always_fails_gets_schedule_length_plus_one_attempts(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/down", [500])
    tries = len(settings.retry_schedule) + 1
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/down"))
        await register_user(running.client, "alice")
        failed = await only_delivery(sessionmaker, endpoint["id"], status="failed")
        attempts = await attempts_of(sessionmaker, failed.id)
        # Room for one more attempt, had one been scheduled after the last step.
        await asyncio.sleep(max(settings.retry_schedule) + 2 * settings.poll_interval)

    assert failed.attempts_made == tries
    assert failed.finished_at is not None
    assert failed.next_attempt_at is None
    assert failed.lease_owner is None
    assert [a.number for a in attempts] == list(range(1, tries + 1))
    assert {(a.status_code, a.error_kind) for a in attempts} == {(500, "http_status")}
    assert len(receiver.at("/down")) == tries


async def test_hanging_endpoint_times_out_without_delaying_healthy_one(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(delivery_timeout=1.0)
    receiver.hang("/stuck")
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        stuck = await subscribe(running.client, receiver.url("/stuck"))
        await subscribe(running.client, receiver.url("/healthy"))
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/stuck", timeout=5)
        # While the stuck endpoint holds its first attempt, the next event reaches the other.
        published = time.monotonic()
        await register_user(running.client, "bob")
        await receiver.wait_for(2, path="/healthy", timeout=settings.delivery_timeout)
        arrived = receiver.at("/healthy")[1].at
        [timed_out, *_] = await attempts_to(sessionmaker, stuck["id"], count=1)

    assert arrived - published < settings.delivery_timeout / 2
    assert arrived < receiver.at("/stuck")[0].at + settings.delivery_timeout
    assert timed_out.error_kind == "timeout"
    assert timed_out.status_code is None
    assert timed_out.response_body is None
    assert timed_out.duration_ms >= settings.delivery_timeout * 1000 * 0.9


async def test_redirect_is_not_followed_and_counts_as_failed_attempt(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.redirect("/moved", "/elsewhere")
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/moved"))
        await register_user(running.client, "alice")
        [first, *_] = await attempts_to(sessionmaker, endpoint["id"], count=1)

    assert first.status_code == 307
    assert first.error_kind == "http_status"
    assert receiver.at("/elsewhere") == []


async def test_refused_connection_is_recorded_and_retried(
    settings: Settings, receiver: Receiver
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, url)
        await register_user(running.client, "alice")
        failed = await only_delivery(sessionmaker, endpoint["id"], status="failed")
        attempts = await attempts_of(sessionmaker, failed.id)

    assert len(attempts) == len(settings.retry_schedule) + 1
    assert {(a.status_code, a.error_kind) for a in attempts} == {(None, "connection_error")}
    assert all(a.error for a in attempts)


async def test_response_body_is_stored_up_to_4096_characters(
    settings: Settings, receiver: Receiver
) -> None:
    chatty = "".join(f"{n:05d}," for n in range(2000))  # 12,000 characters
    receiver.script("/chatty", [200], body=chatty)
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/chatty"))
        await register_user(running.client, "alice")
        done = await only_delivery(sessionmaker, endpoint["id"], status="succeeded")
        [attempt] = await attempts_of(sessionmaker, done.id)

    assert RESPONSE_BODY_LIMIT == 4096
    assert attempt.response_body == chatty[:4096]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
