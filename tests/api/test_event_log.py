"""The event log, the delivery log, and sending deliveries again by hand.

Every answer of these routes is checked to reveal no secret, no user token and no queue
internals (the `Log` client below does it on each call).
"""

import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from hookline.config import Settings
from hookline.models import Delivery, Event
from tests.delivery.helpers import (
    deliveries_to,
    headers_of,
    register_user,
    subscribe,
    wait_until,
    worker_running,
)
from tests.support.app import RunningApp, running_app
from tests.support.db import SessionMaker
from tests.support.receiver import Receiver

# Nothing listens there, and no worker runs in the tests that use it.
NOWHERE = "http://127.0.0.1:9/hook"
HIDDEN_KEYS = {"lease_owner", "lease_until", "secret", "old_secret", "token_hash"}
DELIVERY_KEYS = {
    "id",
    "event_id",
    "event",
    "endpoint_id",
    "url",
    "status",
    "attempts_made",
    "next_attempt_at",
    "created_at",
    "finished_at",
}
ATTEMPT_KEYS = {
    "number",
    "started_at",
    "duration_ms",
    "trigger",
    "request_headers",
    "status_code",
    "response_headers",
    "response_body",
    "error_kind",
    "error",
}


def keys_in(value: Any) -> Iterator[str]:
    """Every key of every object, however deeply nested."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_in(item)


class Log:
    """The API, each answer checked to reveal no secret, token or queue column."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.hidden: list[str] = []

    def hide(self, secret: str) -> None:
        self.hidden += [secret, secret.removeprefix("whsec_")]

    async def subscribe(self, url: str, event: str = "user_registered") -> dict[str, Any]:
        endpoint = await subscribe(self.client, url, event)
        self.hide(endpoint["secret"])
        return endpoint

    async def register(self, username: str) -> dict[str, Any]:
        user = await register_user(self.client, username)
        self.hide(user["token"])
        return user

    async def get(self, path: str, *, expect: int = 200, **params: Any) -> Any:
        query = {name: value for name, value in params.items() if value is not None}
        return self._checked(await self.client.get(path, params=query), expect)

    async def post(self, path: str, body: Any = None, *, expect: int = 202) -> Any:
        return self._checked(await self.client.post(path, json=body), expect)

    async def deliveries(self, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
        page = await self.get(f"/webhooks/{endpoint_id}/deliveries", **params)
        found: list[dict[str, Any]] = page["data"]
        return found

    async def delivery_when(
        self, delivery_id: str, done: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        """Poll GET /deliveries/{id} until `done` holds for it; return it."""

        async def probe() -> dict[str, Any] | None:
            found: dict[str, Any] = await self.get(f"/deliveries/{delivery_id}")
            return found if done(found) else None

        return await wait_until(probe, timeout=10, what=f"delivery {delivery_id} {what}")

    async def delivery_with_status(self, delivery_id: str, status: str) -> dict[str, Any]:
        return await self.delivery_when(delivery_id, lambda d: d["status"] == status, status)

    def _checked(self, response: httpx.Response, expect: int) -> Any:
        assert response.status_code == expect, response.text
        body = response.json()
        assert not HIDDEN_KEYS & set(keys_in(body)), body
        for secret in self.hidden:
            assert secret not in response.text
        return body


async def only_delivery_id(log: Log, endpoint_id: str) -> str:
    [found] = await log.deliveries(endpoint_id)
    delivery_id: str = found["id"]
    return delivery_id


def at(value: str | None) -> datetime:
    assert value is not None
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None, value
    return moment


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# GET /events and GET /events/{id}


async def test_events_are_listed_newest_first_with_the_data_receivers_got(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        await log.subscribe(receiver.url("/hook"), "*")
        await log.register("alice")
        await log.register("bob")
        sent = await running.client.post(
            "/users/messages",
            json={"sender": "alice", "recipient": "bob", "subject": "Hi", "message": "Grüße"},
        )
        assert sent.status_code == 201, sent.text
        await receiver.wait_for(3, path="/hook", timeout=5)
        page = await log.get("/events")

    assert page["next_cursor"] is None
    events = page["data"]
    assert [e["event"] for e in events] == [
        "user_send_message",
        "user_registered",
        "user_registered",
    ]
    assert [e["data"].get("username") for e in events[1:]] == ["bob", "alice"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)
    received = {p["id"]: p for p in (json.loads(r.body) for r in receiver.at("/hook"))}
    assert set(received) == set(ids)
    for event in events:
        assert set(event) == {"id", "event", "created_at", "data"}
        got = received[event["id"]]
        assert (event["event"], event["data"]) == (got["event"], got["data"])
        assert at(event["created_at"]) == at(got["timestamp"])


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("user_registered", ["user_registered", "user_registered"]),
        ("USER_REGISTERED", ["user_registered", "user_registered"]),
        ("User_Send_Message", ["user_send_message"]),
        ("webhook_disabled", []),
        ("ping", []),
    ],
)
async def test_event_filter_is_case_insensitive_and_keeps_only_that_event(
    api: RunningApp, spelling: str, expected: list[str]
) -> None:
    log = Log(api.client)
    await log.register("alice")
    await log.register("bob")
    sent = await api.client.post(
        "/users/messages",
        json={"sender": "alice", "recipient": "bob", "subject": "", "message": "hi"},
    )
    assert sent.status_code == 201, sent.text

    page = await log.get("/events", event=spelling)

    assert [e["event"] for e in page["data"]] == expected
    assert page["next_cursor"] is None


@pytest.mark.parametrize("name", ["user_deleted", "*", "Nope"])
async def test_event_filter_with_an_unknown_name_is_404(api: RunningApp, name: str) -> None:
    log = Log(api.client)
    await log.register("alice")

    body = await log.get("/events", expect=404, event=name)

    assert set(body) == {"detail"}
    assert name in body["detail"]


async def test_one_event_shows_one_delivery_per_subscribed_enabled_endpoint(
    api: RunningApp,
) -> None:
    log = Log(api.client)
    direct = await log.subscribe("http://127.0.0.1:9/direct", "user_registered")
    wildcard = await log.subscribe("http://127.0.0.1:9/all", "*")
    await log.subscribe("http://127.0.0.1:9/messages", "user_send_message")
    disabled = await log.subscribe("http://127.0.0.1:9/off", "user_registered")
    turned_off = await log.client.patch(f"/webhooks/{disabled['id']}", json={"enabled": False})
    assert turned_off.status_code == 200, turned_off.text
    alice = await log.register("alice")
    [listed] = (await log.get("/events", event="user_registered"))["data"]

    event = await log.get(f"/events/{listed['id']}")

    assert set(event) == {"id", "event", "created_at", "data", "deliveries"}
    assert {k: event[k] for k in listed} == listed
    assert event["data"] == {
        "id": alice["id"],
        "username": "alice",
        "registered_at": alice["registered_at"],
    }
    deliveries = event["deliveries"]
    assert sorted((d["endpoint_id"], d["url"]) for d in deliveries) == sorted(
        [(direct["id"], direct["url"]), (wildcard["id"], wildcard["url"])]
    )
    for delivery in deliveries:
        assert set(delivery) == DELIVERY_KEYS
        assert delivery["id"].startswith("dlv_")
        assert (delivery["event_id"], delivery["event"]) == (event["id"], "user_registered")
        assert (delivery["status"], delivery["attempts_made"]) == ("pending", 0)


async def test_unknown_event_id_is_404(api: RunningApp) -> None:
    body = await Log(api.client).get("/events/evt_01NOSUCHEVENT0000000000000", expect=404)

    assert set(body) == {"detail"}


# GET /deliveries/{id}: attempts and statuses


async def test_delivery_shows_every_attempt_in_order_after_500_500_200(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/flaky", [500, 500, 200], body="receiver says hello")
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/flaky"))
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        done = await log.delivery_with_status(delivery_id, "succeeded")

    assert set(done) == DELIVERY_KEYS | {"attempts"}
    assert (done["attempts_made"], done["next_attempt_at"]) == (3, None)
    assert at(done["finished_at"]) >= at(done["created_at"])
    attempts = done["attempts"]
    assert all(set(a) == ATTEMPT_KEYS for a in attempts)
    assert [a["number"] for a in attempts] == [1, 2, 3]
    started = [at(a["started_at"]) for a in attempts]
    assert started == sorted(started)
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert [a["status_code"] for a in attempts] == [500, 500, 200]
    assert [a["response_body"] for a in attempts] == ["receiver says hello"] * 3
    assert [a["error_kind"] for a in attempts] == ["http_status", "http_status", None]
    assert all("500" in a["error"] for a in attempts[:2])
    assert attempts[2]["error"] is None


async def test_attempts_show_their_trigger_and_the_headers_sent_and_received(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/hook", [503, 200], headers={"X-Receiver": "seen", "Retry-After": "0"})
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/hook"))
        patched = await running.client.patch(
            f"/endpoints/{endpoint['id']}", json={"headers": {"X-Team": "payments"}}
        )
        assert patched.status_code == 200, patched.text
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        await log.delivery_with_status(delivery_id, "succeeded")
        await log.post(f"/deliveries/{delivery_id}/retry")
        done = await log.delivery_when(
            delivery_id, lambda d: len(d["attempts"]) == 3, "attempted three times"
        )

    attempts = done["attempts"]
    assert [a["trigger"] for a in attempts] == ["scheduled", "scheduled", "manual"]
    assert [a["status_code"] for a in attempts] == [503, 200, 200]
    arrivals = receiver.at("/hook")
    assert len(arrivals) == 3
    for attempt, arrival in zip(attempts, arrivals, strict=True):
        sent = attempt["request_headers"]
        got = headers_of(arrival)
        # As the receiver got them: the signature (never the secret); the custom header's name,
        # its value (often a credential, sealed at rest) redacted.
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            assert sent[name] == got[name], name
        assert (got["x-team"], sent["x-team"]) == ("payments", "(redacted)")
        assert sent["content-type"] == "application/json"
        assert sent["user-agent"].startswith("hookline/")
        assert sent["webhook-signature"].startswith("v1,")
        Webhook(endpoint["secret"]).verify(arrival.body, sent)
        received = attempt["response_headers"]
        assert received["x-receiver"] == "seen"
        assert received["content-length"] == str(len(attempt["response_body"]))
        assert all(name == name.lower() for name in {**sent, **received})


async def test_an_attempt_that_got_no_answer_has_request_headers_but_no_response_headers(
    settings: Settings,
) -> None:
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(f"http://127.0.0.1:{closed_port()}/hook")
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        tried = await log.delivery_when(delivery_id, lambda d: d["attempts"], "attempted")

    first = tried["attempts"][0]
    assert first["error_kind"] == "connection_error"
    assert first["trigger"] == "scheduled"
    assert first["request_headers"]["webhook-id"] == tried["event_id"]
    assert first["response_headers"] is None


async def test_long_answer_is_kept_as_its_first_4096_bytes(
    settings: Settings, receiver: Receiver
) -> None:
    chatty = "".join(f"{n:05d}," for n in range(1800))  # 10,800 bytes
    receiver.script("/chatty", [200], body=chatty)
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/chatty"))
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        done = await log.delivery_with_status(delivery_id, "succeeded")

    [attempt] = done["attempts"]
    assert attempt["response_body"] == chatty[:4096]


async def test_long_answer_cut_inside_a_character_stays_within_4096_bytes(
    settings: Settings, receiver: Receiver
) -> None:
    # One ASCII byte, then two-byte characters: byte 4096 is the first half of one.
    accented = "a" + "é" * 5000
    receiver.script("/accented", [200], body=accented)
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/accented"))
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        done = await log.delivery_with_status(delivery_id, "succeeded")

    [attempt] = done["attempts"]
    stored = attempt["response_body"]
    assert len(stored.encode()) <= 4096
    assert accented.startswith(stored)


async def test_refused_connection_is_an_attempt_with_no_status_code(settings: Settings) -> None:
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(f"http://127.0.0.1:{closed_port()}/hook")
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        tried = await log.delivery_when(delivery_id, lambda d: d["attempts"], "attempted")

    first = tried["attempts"][0]
    assert (first["status_code"], first["response_body"]) == (None, None)
    assert first["error_kind"] == "connection_error"
    assert first["error"]


async def test_hanging_receiver_is_an_attempt_that_timed_out_and_is_due_again(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(delivery_timeout=1.0, retry_schedule=(30.0,))
    receiver.hang("/stuck")
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/stuck"))
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        tried = await log.delivery_when(delivery_id, lambda d: d["attempts"], "attempted")

    [attempt] = tried["attempts"]
    assert (attempt["status_code"], attempt["response_body"]) == (None, None)
    assert attempt["error_kind"] == "timeout"
    assert attempt["error"]
    assert attempt["duration_ms"] >= 900
    # Still pending: the next attempt is due one schedule step after this one.
    assert (tried["status"], tried["attempts_made"], tried["finished_at"]) == ("pending", 1, None)
    wait = at(tried["next_attempt_at"]) - at(attempt["started_at"])
    assert timedelta(seconds=30) <= wait <= timedelta(seconds=33)


async def test_new_delivery_is_pending_and_due_now(api: RunningApp) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    before = datetime.now(UTC)
    await log.register("alice")

    found = await log.get(f"/deliveries/{await only_delivery_id(log, endpoint['id'])}")

    assert (found["status"], found["attempts_made"], found["attempts"]) == ("pending", 0, [])
    assert found["finished_at"] is None
    assert before <= at(found["next_attempt_at"]) <= datetime.now(UTC)


async def test_delivery_that_never_succeeds_ends_failed_with_nothing_due(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/down", [500])
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/down"))
        await log.register("alice")
        failed = await log.delivery_with_status(
            await only_delivery_id(log, endpoint["id"]), "failed"
        )

    assert failed["attempts_made"] == len(settings.retry_schedule) + 1
    assert [a["number"] for a in failed["attempts"]] == [1, 2, 3]
    assert failed["next_attempt_at"] is None
    assert at(failed["finished_at"]) >= at(failed["attempts"][-1]["started_at"])


@pytest.mark.parametrize(
    ("way", "request_args"),
    [
        pytest.param(
            "disabling the endpoint",
            ("PATCH", "/webhooks/{id}", {"enabled": False}),
            id="disabled",
        ),
        pytest.param(
            "unsubscribing from its event",
            ("DELETE", "/webhook", {"event": "user_registered", "url": NOWHERE}),
            id="unsubscribed",
        ),
        pytest.param(
            "changing its events",
            ("PATCH", "/webhooks/{id}", {"events": ["user_send_message"]}),
            id="events-changed",
        ),
    ],
)
async def test_cancelled_delivery_is_finished_with_nothing_due(
    api: RunningApp, way: str, request_args: tuple[str, str, dict[str, Any]]
) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    await log.register("alice")
    delivery_id = await only_delivery_id(log, endpoint["id"])
    method, path, body = request_args
    changed = await api.client.request(method, path.format(id=endpoint["id"]), json=body)
    assert changed.status_code in (200, 204), (way, changed.text)

    cancelled = await log.get(f"/deliveries/{delivery_id}")

    assert (cancelled["status"], cancelled["attempts_made"]) == ("cancelled", 0)
    assert cancelled["finished_at"] is not None
    assert cancelled["next_attempt_at"] is None


async def test_unknown_delivery_id_is_404(api: RunningApp) -> None:
    body = await Log(api.client).get("/deliveries/dlv_01NOSUCHDELIVERY00000000000", expect=404)

    assert set(body) == {"detail"}


async def test_no_route_reveals_secrets_tokens_or_lease_columns(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/hook"), "*")
        rotated = await running.client.post(f"/webhooks/{endpoint['id']}/secret/rotate")
        assert rotated.status_code == 200, rotated.text
        log.hide(rotated.json()["secret"])  # the old one still signs: both are hidden now
        await log.register("alice")
        await receiver.wait_for(1, path="/hook", timeout=5)
        delivery_id = await only_delivery_id(log, endpoint["id"])
        await log.delivery_with_status(delivery_id, "succeeded")
        [event] = (await log.get("/events"))["data"]
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

        # Each of these is checked by the Log client; these are all the log's routes.
        await log.get("/events", event="user_registered", limit=1)
        await log.get(f"/events/{event['id']}")
        await log.get(f"/deliveries/{delivery_id}")
        await log.get(f"/webhooks/{endpoint['id']}/deliveries", status="succeeded")
        await log.get("/deliveries", endpoint_id=endpoint["id"])
        await log.post(f"/deliveries/{delivery_id}/retry")
        await log.post(f"/webhooks/{endpoint['id']}/recover", {"since": since})
        await log.get("/events", expect=404, event="nope")
        await log.get("/deliveries/dlv_nope", expect=404)

    assert len(log.hidden) == 6  # two secrets and a token, each also without its prefix


# Pagination


async def walk(log: Log, path: str, limit: int) -> list[dict[str, Any]]:
    """Follow next_cursor from the first page to the last; every page but the last is full."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        page = await log.get(path, limit=limit, cursor=cursor)
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert 1 <= len(page["data"]) <= limit
            return items
        assert len(page["data"]) == limit
    pytest.fail(f"{path} never ended")


def assert_newest_first_without_repeats(items: list[dict[str, Any]]) -> None:
    ids = [item["id"] for item in items]
    assert all(newer > older for newer, older in pairwise(ids))
    created = [at(item["created_at"]) for item in items]
    assert created == sorted(created, reverse=True)


async def test_walking_600_events_and_deliveries_page_by_page_sees_each_once_newest_first(
    api: RunningApp,
) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    usernames = [f"user{n:03d}" for n in range(600)]
    for username in usernames:
        await register_user(api.client, username)  # 600 tokens would slow every check
    sessionmaker: SessionMaker = api.app.state.test_db.sessions
    async with sessionmaker() as session:
        event_ids = set((await session.execute(select(Event.id))).scalars())
    delivery_ids = {d.id for d in await deliveries_to(sessionmaker, endpoint["id"])}
    assert len(event_ids) == len(delivery_ids) == 600

    for limit in (250, 200):
        events = await walk(log, "/events", limit)
        assert {e["id"] for e in events} == event_ids
        assert len(events) == 600
        assert_newest_first_without_repeats(events)
        assert {e["event"] for e in events} == {"user_registered"}
        assert [e["data"]["username"] for e in events] == usernames[::-1]

    for path, limit in [
        (f"/webhooks/{endpoint['id']}/deliveries", 7),
        (f"/webhooks/{endpoint['id']}/deliveries", 250),
        (f"/webhooks/{endpoint['id']}/deliveries", 200),
        ("/deliveries", 250),
        ("/deliveries", 7),
    ]:
        deliveries = await walk(log, path, limit)
        assert {d["id"] for d in deliveries} == delivery_ids
        assert len(deliveries) == 600
        assert_newest_first_without_repeats(deliveries)
        assert [d["event_id"] for d in deliveries] == [e["id"] for e in events]
        assert {d["status"] for d in deliveries} == {"pending"}


@pytest.mark.parametrize("limit", [0, -1, 251])
@pytest.mark.parametrize("path", ["/events", "/webhooks/{id}/deliveries", "/deliveries"])
async def test_limit_outside_1_to_250_is_422(api: RunningApp, path: str, limit: int) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)

    await log.get(path.format(id=endpoint["id"]), expect=422, limit=limit)


async def test_cursor_past_the_end_gives_an_empty_last_page(api: RunningApp) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    for name in ("alice", "bob", "carol"):
        await log.register(name)
    oldest_event = (await log.get("/events"))["data"][-1]["id"]
    oldest_delivery = (await log.deliveries(endpoint["id"]))[-1]["id"]

    for path, cursor in [
        ("/events", oldest_event),
        ("/events", "evt_0"),
        (f"/webhooks/{endpoint['id']}/deliveries", oldest_delivery),
        (f"/webhooks/{endpoint['id']}/deliveries", "dlv_0"),
        ("/deliveries", oldest_delivery),
        ("/deliveries", "dlv_0"),
    ]:
        page = await log.get(path, cursor=cursor)
        assert page == {"data": [], "next_cursor": None}, (path, cursor)


async def test_deliveries_filtered_by_status_page_through_only_those(
    api: RunningApp, receiver: Receiver
) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(receiver.url("/hook"))
    async with worker_running(api):
        await log.register("alice")
        delivered = await only_delivery_id(log, endpoint["id"])
        await log.delivery_with_status(delivered, "succeeded")
    await log.register("bob")
    await log.register("carol")

    first = await log.get(f"/webhooks/{endpoint['id']}/deliveries", status="pending", limit=1)
    second = await log.get(
        f"/webhooks/{endpoint['id']}/deliveries",
        status="pending",
        limit=1,
        cursor=first["next_cursor"],
    )
    succeeded = await log.deliveries(endpoint["id"], status="succeeded")
    failed = await log.get(f"/webhooks/{endpoint['id']}/deliveries", status="failed")

    pending = first["data"] + second["data"]
    assert [d["status"] for d in pending] == ["pending", "pending"]
    assert second["next_cursor"] is None
    assert [d["id"] for d in succeeded] == [delivered]
    assert delivered not in {d["id"] for d in pending}
    assert failed == {"data": [], "next_cursor": None}


# GET /deliveries: across endpoints


async def test_deliveries_across_endpoints_newest_first_filtered_by_status_event_and_endpoint(
    api: RunningApp, receiver: Receiver
) -> None:
    log = Log(api.client)
    ok = await log.subscribe(receiver.url("/ok"), "*")
    down = await log.subscribe(f"http://127.0.0.1:{closed_port()}/down", "user_registered")
    async with worker_running(api):
        await log.register("alice")
        await log.register("bob")
        sent = await api.client.post(
            "/users/messages", json={"sender": "alice", "recipient": "bob", "message": "hi"}
        )
        assert sent.status_code == 201, sent.text

        async def settled() -> list[dict[str, Any]]:
            found = (await log.get("/deliveries"))["data"]
            return found if all(d["status"] != "pending" for d in found) else []

        every = await wait_until(settled, timeout=10, what="every delivery settled")

    assert len(every) == 5  # three to the wildcard one, two registrations to the other
    assert_newest_first_without_repeats(every)
    assert all(set(d) == DELIVERY_KEYS for d in every)
    by_endpoint = Counter(d["endpoint_id"] for d in every)
    assert by_endpoint == {ok["id"]: 3, down["id"]: 2}

    async def ids(**query: Any) -> list[str]:
        return [d["id"] for d in (await log.get("/deliveries", **query))["data"]]

    def where(**wanted: str) -> list[str]:
        return [d["id"] for d in every if all(d[k] == v for k, v in wanted.items())]

    assert await ids(status="succeeded") == where(status="succeeded")
    assert len(where(status="succeeded")) == 3
    assert await ids(status="failed") == where(endpoint_id=down["id"])
    assert await ids(event="USER_REGISTERED") == where(event="user_registered")
    assert await ids(event="user_send_message") == where(event="user_send_message")
    assert await ids(endpoint_id=down["id"]) == where(endpoint_id=down["id"])
    assert await ids(endpoint_id=ok["id"], event="user_registered", status="succeeded") == where(
        endpoint_id=ok["id"], event="user_registered"
    )
    assert await ids(endpoint_id=down["id"], status="succeeded") == []
    assert await ids(endpoint_id="wh_nope") == []
    assert await ids(status="cancelled") == []
    first = await log.get("/deliveries", event="user_registered", limit=3)
    rest = await log.get(
        "/deliveries", event="user_registered", limit=3, cursor=first["next_cursor"]
    )
    assert [d["id"] for d in first["data"] + rest["data"]] == where(event="user_registered")
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    "query", [{"status": "done"}, {"status": "FAILED"}, {"endpoint_id": ""}, {"cursor": ""}]
)
async def test_deliveries_across_endpoints_with_a_bad_filter_is_422(
    api: RunningApp, query: dict[str, str]
) -> None:
    response = await api.client.get("/deliveries", params=query)

    assert response.status_code == 422, response.text


@pytest.mark.parametrize("name", ["user_deleted", "*"])
async def test_deliveries_across_endpoints_of_an_unknown_event_is_404(
    api: RunningApp, name: str
) -> None:
    body = await Log(api.client).get("/deliveries", expect=404, event=name)

    assert set(body) == {"detail"}


@pytest.mark.parametrize("status", ["done", "retrying"])
async def test_deliveries_filtered_by_an_unknown_status_is_422(
    api: RunningApp, status: str
) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)

    await log.get(f"/webhooks/{endpoint['id']}/deliveries", expect=422, status=status)


async def test_deliveries_of_an_unknown_webhook_is_404(api: RunningApp) -> None:
    body = await Log(api.client).get("/webhooks/wh_nope/deliveries", expect=404)

    assert set(body) == {"detail"}


# POST /deliveries/{id}/retry


async def test_retrying_a_succeeded_delivery_sends_it_again_with_same_id_and_fresh_signature(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/hook"))
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        await log.delivery_with_status(delivery_id, "succeeded")

        queued = await log.post(f"/deliveries/{delivery_id}/retry")
        await receiver.wait_for(2, path="/hook", timeout=5)
        again = await log.delivery_when(
            delivery_id, lambda d: len(d["attempts"]) == 2, "attempted twice"
        )

    assert (queued["id"], queued["status"], queued["finished_at"]) == (delivery_id, "pending", None)
    assert queued["next_attempt_at"] is not None
    assert [a["number"] for a in queued["attempts"]] == [1]
    assert (again["status"], again["attempts_made"]) == ("succeeded", 2)
    assert [a["number"] for a in again["attempts"]] == [1, 2]
    first, second = receiver.at("/hook")
    first_headers, second_headers = headers_of(first), headers_of(second)
    assert second_headers["webhook-id"] == first_headers["webhook-id"] == again["event_id"]
    assert int(second_headers["webhook-timestamp"]) >= int(first_headers["webhook-timestamp"])
    payload = Webhook(endpoint["secret"]).verify(second.body, second.headers)
    assert payload == json.loads(first.body)


async def test_retrying_a_failed_delivery_once_the_receiver_recovered_succeeds(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/down", [500])
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/down"))
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        await log.delivery_with_status(delivery_id, "failed")
        receiver.script("/down", [200])

        queued = await log.post(f"/deliveries/{delivery_id}/retry")
        done = await log.delivery_with_status(delivery_id, "succeeded")

    assert queued["status"] == "pending"
    assert [a["status_code"] for a in done["attempts"]] == [500, 500, 500, 200]
    assert [a["number"] for a in done["attempts"]] == [1, 2, 3, 4]
    assert done["next_attempt_at"] is None
    arrivals = receiver.at("/down")
    assert len(arrivals) == 4
    assert {headers_of(r)["webhook-id"] for r in arrivals} == {done["event_id"]}
    Webhook(endpoint["secret"]).verify(arrivals[-1].body, arrivals[-1].headers)


async def test_retrying_a_delivery_of_a_disabled_webhook_is_409_telling_to_enable_it(
    api: RunningApp,
) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    await log.register("alice")
    delivery_id = await only_delivery_id(log, endpoint["id"])
    disabled = await api.client.patch(f"/webhooks/{endpoint['id']}", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text

    body = await log.post(f"/deliveries/{delivery_id}/retry", expect=409)

    assert set(body) == {"detail"}
    assert "enable" in body["detail"].lower()
    assert (await log.get(f"/deliveries/{delivery_id}"))["status"] == "cancelled"


async def test_retrying_an_unknown_delivery_is_404(api: RunningApp) -> None:
    body = await Log(api.client).post("/deliveries/dlv_nope/retry", expect=404)

    assert set(body) == {"detail"}


# POST /webhooks/{id}/recover


async def test_recover_requeues_failed_deliveries_which_then_arrive_with_their_webhook_ids(
    settings: Settings, receiver: Receiver
) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/flaky"))
        recover = f"/webhooks/{endpoint['id']}/recover"
        await log.register("early")
        early = await log.delivery_with_status(
            await only_delivery_id(log, endpoint["id"]), "succeeded"
        )
        receiver.script("/flaky", [500])
        for name in ("alice", "bob", "carol"):
            await log.register(name)

        async def all_failed() -> list[dict[str, Any]]:
            failed = await log.deliveries(endpoint["id"], status="failed")
            return failed if len(failed) == 3 else []

        failed = await wait_until(all_failed, timeout=10, what="three failed deliveries")
        receiver.script("/flaky", [200])

        first = await log.post(recover, {"since": since})
        right_after = await log.post(recover, {"since": since})
        done = [await log.delivery_with_status(d["id"], "succeeded") for d in failed]
        once_done = await log.post(recover, {"since": since})

    assert first == {"requeued": 3}
    assert right_after == once_done == {"requeued": 0}
    tries = len(settings.retry_schedule) + 1
    assert [d["attempts_made"] for d in done] == [tries + 1] * 3
    assert [d["attempts"][-1]["status_code"] for d in done] == [200] * 3
    # Each failed one came once more under its own webhook-id; the succeeded one not again.
    sent = Counter(headers_of(arrival)["webhook-id"] for arrival in receiver.at("/flaky"))
    assert sent == Counter({early["event_id"]: 1} | {d["event_id"]: tries + 1 for d in done})


BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
PLUS_TWO = timezone(timedelta(hours=2))


def hour(n: float, tz: timezone = UTC) -> str:
    return (BASE + timedelta(hours=n)).astimezone(tz).isoformat()


@pytest.mark.parametrize(
    ("window", "requeued"),
    [
        ({"since": hour(1)}, {1, 2, 3}),
        ({"since": hour(2)}, {2, 3}),
        ({"since": hour(1), "until": hour(3)}, {1, 2}),
        ({"since": hour(2), "until": hour(3)}, {2}),
        ({"since": hour(2, PLUS_TWO), "until": hour(3, PLUS_TWO)}, {2}),
        ({"since": hour(1.5), "until": hour(2.5)}, {2}),
        ({"since": hour(0), "until": hour(1)}, set()),
        ({"since": hour(3.5)}, set()),
    ],
)
async def test_recover_requeues_only_failed_deliveries_created_in_the_window(
    api: RunningApp, window: dict[str, str], requeued: set[int]
) -> None:
    # Failed deliveries created at hours 1, 2 and 3, and one of each other status at hour 2.
    layout = [
        ("failed", 1),
        ("failed", 2),
        ("failed", 3),
        ("succeeded", 2),
        ("pending", 2),
        ("cancelled", 2),
    ]
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    for n in range(len(layout)):
        await register_user(api.client, f"user{n}")
    sessionmaker: SessionMaker = api.app.state.test_db.sessions
    ids = [d.id for d in await deliveries_to(sessionmaker, endpoint["id"])]
    async with sessionmaker() as session:
        for delivery_id, (status, created) in zip(ids, layout, strict=True):
            created_at = BASE + timedelta(hours=created)
            finished = None if status == "pending" else created_at + timedelta(minutes=1)
            next_at = created_at if status == "pending" else None
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(
                    status=status,
                    created_at=created_at,
                    finished_at=finished,
                    next_attempt_at=next_at,
                )
            )
        await session.commit()
    before = datetime.now(UTC)

    answer = await log.post(f"/webhooks/{endpoint['id']}/recover", window)

    assert answer == {"requeued": len(requeued)}
    after = {d["id"]: d for d in await log.deliveries(endpoint["id"])}
    for delivery_id, (status, created) in zip(ids, layout, strict=True):
        found = after[delivery_id]
        if status == "failed" and created in requeued:
            assert (found["status"], found["finished_at"]) == ("pending", None)
            assert before <= at(found["next_attempt_at"]) <= datetime.now(UTC)
        else:
            assert found["status"] == status, (status, created)


async def arrange(api: RunningApp, layout: list[tuple[str, float]]) -> tuple[Log, str, list[str]]:
    """An endpoint with one delivery per (status, hours after BASE it was created)."""
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    for n in range(len(layout)):
        await register_user(api.client, f"user{n}")
    sessionmaker: SessionMaker = api.app.state.test_db.sessions
    ids = [d.id for d in await deliveries_to(sessionmaker, endpoint["id"])]
    async with sessionmaker() as session:
        for delivery_id, (status, created) in zip(ids, layout, strict=True):
            created_at = BASE + timedelta(hours=created)
            finished = None if status == "pending" else created_at + timedelta(minutes=1)
            # A pending one waits for a retry hours away.
            next_at = datetime.now(UTC) + timedelta(hours=3) if status == "pending" else None
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(
                    status=status,
                    created_at=created_at,
                    finished_at=finished,
                    next_attempt_at=next_at,
                    attempts_made=0 if status == "pending" else 1,
                )
            )
        await session.commit()
    return log, endpoint["id"], ids


EACH_STATUS = [("failed", 2), ("succeeded", 2), ("pending", 2), ("cancelled", 2), ("failed", 0)]


@pytest.mark.parametrize(
    ("statuses", "requeued"),
    [
        (None, {"failed"}),
        (["failed"], {"failed"}),
        (["cancelled"], {"cancelled"}),
        (["pending"], {"pending"}),
        (["pending", "failed", "pending"], {"pending", "failed"}),
        (["failed", "cancelled", "pending"], {"failed", "cancelled", "pending"}),
    ],
)
async def test_recover_requeues_the_deliveries_of_the_statuses_asked_for_in_the_window(
    api: RunningApp, statuses: list[str] | None, requeued: set[str]
) -> None:
    log, endpoint_id, ids = await arrange(api, EACH_STATUS)
    body: dict[str, Any] = {"since": hour(1)}
    if statuses is not None:
        body["statuses"] = statuses
    before = datetime.now(UTC)

    answer = await log.post(f"/endpoints/{endpoint_id}/recover", body)

    assert answer == {"requeued": len(requeued)}
    after = {d["id"]: d for d in await log.deliveries(endpoint_id)}
    for delivery_id, (status, created) in zip(ids, EACH_STATUS, strict=True):
        found = after[delivery_id]
        if status in requeued and created >= 1:
            assert (found["status"], found["finished_at"]) == ("pending", None)
            # Due now, a pending one too (it was waiting three hours for its retry).
            assert before <= at(found["next_attempt_at"]) <= datetime.now(UTC)
        else:
            assert found["status"] == status, (status, created)
            if status == "pending":
                assert at(found["next_attempt_at"]) > datetime.now(UTC) + timedelta(hours=2)


@pytest.mark.parametrize(
    "statuses",
    [[], ["succeeded"], ["nope"], ["FAILED"], "failed", [None]],
    ids=["empty", "succeeded", "unknown", "capitals", "not-a-list", "null"],
)
async def test_recover_with_statuses_it_cannot_send_again_is_422(
    api: RunningApp, statuses: Any
) -> None:
    log, endpoint_id, _ = await arrange(api, EACH_STATUS)

    answer = await log.post(
        f"/endpoints/{endpoint_id}/recover",
        {"since": hour(-1), "statuses": statuses},
        expect=422,
    )

    assert "statuses" in json.dumps(answer["detail"])
    assert {d["status"] for d in await log.deliveries(endpoint_id)} == {
        "failed",
        "succeeded",
        "pending",
        "cancelled",
    }


async def test_recover_with_pending_sends_a_delivery_waiting_hours_for_its_retry_now(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    receiver.script("/later", [500, 200])
    settings = make_settings(retry_schedule=(7200.0,))  # the retry would come in two hours
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    async with running_app(settings, run_worker=True) as running:
        log = Log(running.client)
        endpoint = await log.subscribe(receiver.url("/later"))
        recover = f"/endpoints/{endpoint['id']}/recover"
        await log.register("alice")
        delivery_id = await only_delivery_id(log, endpoint["id"])
        waiting = await log.delivery_when(delivery_id, lambda d: d["attempts"], "attempted")
        assert waiting["status"] == "pending"
        assert at(waiting["next_attempt_at"]) > datetime.now(UTC) + timedelta(hours=1)

        by_default = await log.post(recover, {"since": since})
        answer = await log.post(recover, {"since": since, "statuses": ["pending"]})
        done = await log.delivery_with_status(delivery_id, "succeeded")

    assert by_default == {"requeued": 0}  # failed ones only: it is not failed
    assert answer == {"requeued": 1}
    assert [(a["status_code"], a["trigger"]) for a in done["attempts"]] == [
        (500, "scheduled"),
        (200, "manual"),
    ]
    arrivals = receiver.at("/later")
    assert len(arrivals) == 2
    assert {headers_of(r)["webhook-id"] for r in arrivals} == {done["event_id"]}


async def test_recover_with_cancelled_sends_what_disabling_cancelled_once_re_enabled(
    api: RunningApp, receiver: Receiver
) -> None:
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    log = Log(api.client)
    endpoint = await log.subscribe(receiver.url("/back"))
    recover = f"/endpoints/{endpoint['id']}/recover"
    await log.register("alice")  # no worker runs yet: it stays pending
    delivery_id = await only_delivery_id(log, endpoint["id"])
    off = await api.client.patch(f"/endpoints/{endpoint['id']}", json={"enabled": False})
    assert off.status_code == 200, off.text
    assert (await log.get(f"/deliveries/{delivery_id}"))["status"] == "cancelled"

    refused = await log.post(recover, {"since": since, "statuses": ["cancelled"]}, expect=409)
    on = await api.client.patch(f"/endpoints/{endpoint['id']}", json={"enabled": True})
    assert on.status_code == 200, on.text
    answer = await log.post(recover, {"since": since, "statuses": ["cancelled"]})
    async with worker_running(api):
        done = await log.delivery_with_status(delivery_id, "succeeded")

    assert "enable" in refused["detail"].lower()
    assert answer == {"requeued": 1}
    [attempt] = done["attempts"]
    assert (attempt["status_code"], attempt["trigger"]) == (200, "manual")
    [arrival] = receiver.at("/back")
    Webhook(endpoint["secret"]).verify(arrival.body, arrival.headers)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"since": "2026-01-01T00:00:00"}, id="naive-since"),
        pytest.param(
            {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00"}, id="naive-until"
        ),
        pytest.param(
            {"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, id="until-equal"
        ),
        pytest.param(
            {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, id="until-before"
        ),
        pytest.param(
            {"since": "2026-01-01T02:00:00+02:00", "until": "2026-01-01T00:00:00Z"},
            id="until-equal-in-other-zone",
        ),
        pytest.param({}, id="no-since"),
    ],
)
async def test_recover_with_a_bad_window_is_422(api: RunningApp, body: dict[str, str]) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)

    answer = await log.post(f"/webhooks/{endpoint['id']}/recover", body, expect=422)

    assert "detail" in answer


async def test_recover_on_a_disabled_webhook_is_409_and_requeues_nothing(api: RunningApp) -> None:
    log = Log(api.client)
    endpoint = await log.subscribe(NOWHERE)
    await log.register("alice")
    delivery_id = await only_delivery_id(log, endpoint["id"])
    sessionmaker: SessionMaker = api.app.state.test_db.sessions
    async with sessionmaker() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="failed", next_attempt_at=None, finished_at=datetime.now(UTC))
        )
        await session.commit()
    disabled = await api.client.patch(f"/webhooks/{endpoint['id']}", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    body = await log.post(f"/webhooks/{endpoint['id']}/recover", {"since": since}, expect=409)

    assert set(body) == {"detail"}
    assert "enable" in body["detail"].lower()
    assert (await log.get(f"/deliveries/{delivery_id}"))["status"] == "failed"


async def test_recover_on_an_unknown_webhook_is_404(api: RunningApp) -> None:
    since = datetime.now(UTC).isoformat()

    body = await Log(api.client).post("/webhooks/wh_nope/recover", {"since": since}, expect=404)

    assert set(body) == {"detail"}


async def test_recover_leaves_failed_pings_alone(api: RunningApp) -> None:
    log = Log(api.client)
    registered = await api.client.post("/webhook", json={"event": "*", "url": NOWHERE})
    hook = registered.json()
    ping = await log.post(f"/webhooks/{hook['id']}/ping", expect=200)
    assert ping["attempt"]["error_kind"] == "connection_error"
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    body = await log.post(f"/webhooks/{hook['id']}/recover", {"since": since})
    delivery = await log.get(f"/deliveries/{ping['delivery_id']}")

    assert body == {"requeued": 0}
    assert (delivery["status"], delivery["attempts_made"]) == ("failed", 1)
