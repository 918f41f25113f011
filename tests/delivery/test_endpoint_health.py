"""Retry-After, 410 Gone, and the clock that disables an endpoint failing too long."""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from hookline.config import Settings
from hookline.models import Delivery, utcnow
from tests.delivery.helpers import (
    attempts_of,
    deliveries_to,
    only_delivery,
    register_user,
    subscribe,
    wait_until,
)
from tests.support.app import running_app
from tests.support.db import SessionMaker
from tests.support.receiver import Receiver

# How late a retry may come: the worker polls every poll_interval, records every
# result_flush_interval.
RETRY_SLACK = 1.0


async def webhook(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    response = await client.get(f"/webhooks/{endpoint_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def disabled_webhook(
    client: httpx.AsyncClient, endpoint_id: str, *, timeout: float = 10
) -> dict[str, Any]:
    """Wait until GET /webhooks/{id} shows the endpoint disabled; return what it shows."""

    async def probe() -> dict[str, Any]:
        body = await webhook(client, endpoint_id)
        return {} if body["enabled"] else body

    return await wait_until(probe, timeout=timeout, what=f"{endpoint_id} to be disabled")


async def settled(
    sessionmaker: SessionMaker, endpoint_id: str, *, count: int, timeout: float = 10
) -> list[Delivery]:
    """Wait until the endpoint has `count` deliveries, none pending or leased; return them."""

    async def probe() -> list[Delivery]:
        found = await deliveries_to(sessionmaker, endpoint_id)
        done = [d for d in found if d.status != "pending" and d.lease_owner is None]
        return found if len(found) == count == len(done) else []

    return await wait_until(probe, timeout=timeout, what=f"{count} settled deliveries")


def instant(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


# Retry-After


@pytest.mark.parametrize(
    ("status", "retry_after", "schedule", "gap"),
    [
        pytest.param(503, "2", (0.2, 3.0), 2.0, id="503 asking for 2 s"),
        pytest.param(429, "2", (0.2, 3.0), 2.0, id="429 asking for 2 s"),
        pytest.param(503, "100", (0.2, 1.0), 1.0, id="100 s capped at the longest step"),
        pytest.param(500, "2", (0.2, 3.0), 0.2, id="500 with Retry-After is ignored"),
    ],
)
async def test_retry_after_sets_the_wait_before_the_next_attempt(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    status: int,
    retry_after: str,
    schedule: tuple[float, ...],
    gap: float,
) -> None:
    receiver.script("/busy", [status, 200], headers={"Retry-After": retry_after})
    async with running_app(make_settings(retry_schedule=schedule), run_worker=True) as running:
        endpoint = await subscribe(running.client, receiver.url("/busy"))
        await register_user(running.client, "alice")
        await only_delivery(running.app.state.test_db.sessions, endpoint["id"], status="succeeded")

    first, second = receiver.at("/busy")
    assert gap <= second.at - first.at < gap + RETRY_SLACK


async def test_retry_after_http_date_is_waited_for(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # HTTP dates have whole seconds: this one is 1 to 2 s ahead, far beyond the 0.2 s step.
    when = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
    header = format_datetime(when, usegmt=True)
    receiver.script("/busy", [503, 200], headers={"Retry-After": header})
    settings = make_settings(retry_schedule=(0.2, 3.0))
    async with running_app(settings, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, receiver.url("/busy"))
        await register_user(running.client, "alice")
        done = await only_delivery(sessionmaker, endpoint["id"], status="succeeded")
        first, second = await attempts_of(sessionmaker, done.id)

    assert header.endswith(" GMT")
    assert first.status_code == 503
    assert first.started_at < when - timedelta(seconds=0.5)
    assert second.started_at >= when
    assert second.started_at - first.started_at < timedelta(seconds=3.0 + RETRY_SLACK)


# 410 Gone


async def test_410_fails_the_delivery_and_disables_the_endpoint_at_once(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # The receiver holds its 410 half a second; one attempt at a time keeps the rest queued.
    receiver.script("/gone", [410], delay=0.5)
    async with running_app(make_settings(worker_per_endpoint=1), run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        gone = await subscribe(client, receiver.url("/gone"))
        await subscribe(client, receiver.url("/watch"), "webhook_disabled")
        await subscribe(client, receiver.url("/healthy"))
        await register_user(client, "alice")
        await receiver.wait_for(1, path="/gone")
        for name in ("bob", "carol", "dave"):
            await register_user(client, name)

        await receiver.wait_for(1, path="/watch")
        endpoint = await webhook(client, gone["id"])
        first, *others = await settled(sessionmaker, gone["id"], count=4)
        attempts = await attempts_of(sessionmaker, first.id)
        sent_to_gone = len(receiver.at("/gone"))

        await register_user(client, "erin")
        await receiver.wait_for(5, path="/healthy")
        after = await deliveries_to(sessionmaker, gone["id"])

    assert endpoint["enabled"] is False
    assert "410" in endpoint["disabled_reason"]
    assert endpoint["disabled_at"] is not None
    assert endpoint["stats"] == {"pending": 0, "succeeded": 0, "failed": 1, "cancelled": 3}

    assert (first.status, first.attempts_made) == ("failed", 1)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 410)]
    # One of them may have been in flight when the endpoint was disabled: it stays cancelled.
    assert [d.status for d in others] == ["cancelled"] * 3
    assert all(d.next_attempt_at is None and d.finished_at is not None for d in others)

    # erin's event made no delivery to it, and nothing more reached it.
    assert [d.id for d in after] == [first.id, *(d.id for d in others)]
    assert len(receiver.at("/gone")) == sent_to_gone <= 2

    [notice] = receiver.at("/watch")
    payload = json.loads(notice.body)
    assert payload["event"] == "webhook_disabled"
    assert set(payload["data"]) == {"id", "url", "reason", "disabled_at"}
    assert payload["data"]["id"] == gone["id"]
    assert payload["data"]["url"] == receiver.url("/gone")
    assert payload["data"]["reason"] == endpoint["disabled_reason"]
    assert instant(payload["data"]["disabled_at"]) == instant(endpoint["disabled_at"])


async def test_reenabled_endpoint_gets_new_events_again(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/gone", [410, 200])  # gone once, then fixed
    async with running_app(settings, run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        gone = await subscribe(client, receiver.url("/gone"))
        await register_user(client, "alice")
        before = await disabled_webhook(client, gone["id"])

        response = await client.patch(f"/webhooks/{gone['id']}", json={"enabled": True})
        assert response.status_code == 200, response.text
        enabled = response.json()
        await register_user(client, "bob")
        await receiver.wait_for(2, path="/gone")
        alices, bobs = await settled(sessionmaker, gone["id"], count=2)
        shown = await webhook(client, gone["id"])

    assert before["failing_since"] is not None
    assert enabled["enabled"] is True
    assert enabled["disabled_reason"] is None
    assert enabled["disabled_at"] is None
    assert enabled["failing_since"] is None  # a fresh clock
    assert (alices.status, alices.attempts_made) == ("failed", 1)  # not sent again
    assert (bobs.status, bobs.attempts_made) == ("succeeded", 1)
    assert json.loads(receiver.at("/gone")[1].body)["data"]["username"] == "bob"
    assert shown["enabled"] is True
    assert shown["failing_since"] is None


# The auto-disable clock


async def test_endpoint_failing_longer_than_disable_after_is_disabled(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    receiver.script("/down", [500])
    settings = make_settings(disable_after=1, retry_schedule=(0.3,) * 6)
    async with running_app(settings, run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        down = await subscribe(client, receiver.url("/down"))
        await subscribe(client, receiver.url("/watch"), "webhook_disabled")
        await register_user(client, "alice")

        async def failing() -> dict[str, Any]:
            body = await webhook(client, down["id"])
            return body if body["failing_since"] is not None else {}

        while_failing = await wait_until(failing, timeout=5, what="the failure clock to start")
        await register_user(client, "bob")
        await receiver.wait_for(1, path="/watch")
        endpoint = await webhook(client, down["id"])
        alices, bobs = await settled(sessionmaker, down["id"], count=2)
        attempts = await attempts_of(sessionmaker, alices.id)

    assert while_failing["enabled"] is True
    since = instant(while_failing["failing_since"])
    assert since == attempts[0].started_at  # the clock starts at the first failure
    assert instant(endpoint["failing_since"]) == since

    assert endpoint["enabled"] is False
    assert "failed for more than 1 s" in endpoint["disabled_reason"]
    assert instant(endpoint["disabled_at"]) - since >= timedelta(seconds=1)
    # Retried 0.3 s apart (later on a busy machine): at least one retry came before the clock
    # ran out, and the schedule (seven attempts) did not end first.
    assert 2 <= len(attempts) < 7
    assert {a.status_code for a in attempts} == {500}
    assert (alices.status, bobs.status) == ("cancelled", "cancelled")
    assert alices.next_attempt_at is None and bobs.next_attempt_at is None

    [notice] = receiver.at("/watch")
    payload = json.loads(notice.body)
    assert payload["event"] == "webhook_disabled"
    assert payload["data"]["id"] == down["id"]
    assert payload["data"]["url"] == receiver.url("/down")
    assert payload["data"]["reason"] == endpoint["disabled_reason"]


async def test_endpoint_failing_shorter_than_disable_after_stays_enabled(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    receiver.script("/down", [500])
    settings = make_settings(disable_after=2, retry_schedule=(0.2, 0.4))
    async with running_app(settings, run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        down = await subscribe(client, receiver.url("/down"))
        await register_user(client, "alice")
        failed = await only_delivery(sessionmaker, down["id"], status="failed")
        attempts = await attempts_of(sessionmaker, failed.id)
        endpoint = await webhook(client, down["id"])

    assert len(attempts) == 3
    assert endpoint["enabled"] is True
    assert endpoint["disabled_reason"] is None
    assert instant(endpoint["failing_since"]) == attempts[0].started_at


async def test_a_success_resets_the_failure_clock(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # Each event fails once and then succeeds; the last one fails twice. Failures span more
    # than disable_after, but never without a success in between.
    receiver.script("/flaky", [500, 200] * 4 + [500])
    settings = make_settings(disable_after=1, retry_schedule=(0.3,))
    async with running_app(settings, run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        flaky = await subscribe(client, receiver.url("/flaky"))
        await register_user(client, "user0")
        await receiver.wait_for(1, path="/flaky")

        async def failing() -> dict[str, Any]:
            body = await webhook(client, flaky["id"])
            return body if body["failing_since"] is not None else {}

        after_failure = await wait_until(failing, timeout=5, what="the failure clock to start")
        await settled(sessionmaker, flaky["id"], count=1)
        after_success = await webhook(client, flaky["id"])
        for n in range(1, 5):
            await register_user(client, f"user{n}")
            found = await settled(sessionmaker, flaky["id"], count=n + 1)
        endpoint = await webhook(client, flaky["id"])
        first_attempts = await attempts_of(sessionmaker, found[0].id)
        last_attempts = await attempts_of(sessionmaker, found[-1].id)

    assert instant(after_failure["failing_since"]) == first_attempts[0].started_at
    assert after_success["failing_since"] is None
    assert [d.status for d in found] == ["succeeded"] * 4 + ["failed"]
    assert last_attempts[-1].started_at - first_attempts[0].started_at > timedelta(seconds=1)
    assert endpoint["enabled"] is True
    assert endpoint["disabled_reason"] is None
    assert instant(endpoint["failing_since"]) == last_attempts[0].started_at


async def test_disabling_a_slow_failing_endpoint_leaves_others_alone(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # One attempt at a time per endpoint: the healthy one still has deliveries queued when the
    # failing one is disabled.
    receiver.script("/slow", [500], delay=0.3)
    receiver.script("/healthy", [200], delay=0.4)
    settings = make_settings(disable_after=1, retry_schedule=(0.3,) * 6, worker_per_endpoint=1)
    async with running_app(settings, run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        slow = await subscribe(client, receiver.url("/slow"))
        healthy = await subscribe(client, receiver.url("/healthy"))
        for n in range(5):
            await register_user(client, f"user{n}")
        disabled = await disabled_webhook(client, slow["id"])
        await register_user(client, "late")
        delivered = await settled(sessionmaker, healthy["id"], count=6)
        endpoint = await webhook(client, healthy["id"])
        slows = await deliveries_to(sessionmaker, slow["id"])

    assert max(d.finished_at for d in delivered if d.finished_at) > instant(disabled["disabled_at"])
    assert [(d.status, d.attempts_made) for d in delivered] == [("succeeded", 1)] * 6
    assert len(receiver.at("/healthy")) == 6
    assert endpoint["enabled"] is True
    assert endpoint["disabled_reason"] is None
    assert endpoint["failing_since"] is None
    assert endpoint["stats"] == {"pending": 0, "succeeded": 6, "failed": 0, "cancelled": 0}
    assert len(slows) == 5  # none for the late event
    assert disabled["stats"]["pending"] == 0


async def test_a_failed_ping_leaves_the_failure_clock_alone(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    """A ping is a probe; it does not count toward auto-disabling."""
    receiver.script("/down", [500])
    settings = make_settings(ping_on_create=True, disable_after=1)
    async with running_app(settings, run_worker=True) as running:
        client, sessionmaker = running.client, running.app.state.test_db.sessions
        down = await subscribe(client, receiver.url("/down"))
        ping = await only_delivery(sessionmaker, down["id"], status="failed")
        [attempt] = await attempts_of(sessionmaker, ping.id)
        endpoint = await webhook(client, down["id"])

    assert attempt.status_code == 500
    assert endpoint["failing_since"] is None
    assert endpoint["enabled"] is True
