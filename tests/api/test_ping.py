"""POST /ping: signed pings to every subscribed URL at once, and their report."""

import asyncio
import json
import re
import socket
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from hookline.models import Attempt, Delivery, Event
from tests.support.app import running_app
from tests.support.receiver import Receiver

DEFAULT_DATA = {"message": "Ping from User Notification Webhook Service"}


def closed_port_url():
    """A loopback URL nothing listens on: the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def subscribe(client, event, url):
    response = await client.post("/webhook", json={"event": event, "url": url})
    assert response.status_code == 201, response.text
    return response.json()


async def ping(client, **kwargs):
    response = await client.post("/ping", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def sent_ping_id(report):
    return report["successful_webhooks"][0]["payload"]["id"]


def pings_received(receiver, path, event_id):
    """The envelopes of ping `event_id` that arrived at `path`, each with its request."""
    found = []
    for request in receiver.at(path):
        body = json.loads(request.body)
        if body.get("id") == event_id:
            found.append((body, request))
    return found


def says_counts(message, succeeded, failed):
    """Whether the report's message states both counts next to the right words."""
    return bool(
        re.search(rf"\b{succeeded}\b[^0-9]*succe", message, re.IGNORECASE)
        and re.search(rf"\b{failed}\b[^0-9]*fail", message, re.IGNORECASE)
    )


@pytest.fixture
async def three_receivers(api, receiver):
    """user_registered -> /ok (200) and /broken (500); user_send_message -> a closed port."""
    receiver.script("/broken", [500])
    urls = {
        "ok": receiver.url("/ok"),
        "broken": receiver.url("/broken"),
        "closed": closed_port_url(),
    }
    await subscribe(api.client, "user_registered", urls["ok"])
    await subscribe(api.client, "user_registered", urls["broken"])
    await subscribe(api.client, "user_send_message", urls["closed"])
    return urls


async def test_ping_reports_each_url_as_succeeded_or_failed(api, three_receivers):
    urls = three_receivers

    report = await ping(api.client)

    assert set(report) == {
        "successful_webhooks_count",
        "successful_webhooks",
        "failed_webhooks_count",
        "failed_webhooks",
        "message",
    }
    assert report["successful_webhooks_count"] == 1
    assert report["failed_webhooks_count"] == 2
    [ok] = report["successful_webhooks"]
    assert (ok["event"], ok["url"], ok["status_code"]) == ("user_registered", urls["ok"], 200)
    assert "error" not in ok
    failed = {entry["url"]: entry for entry in report["failed_webhooks"]}
    assert set(failed) == {urls["broken"], urls["closed"]}
    assert failed[urls["broken"]]["event"] == "user_registered"
    assert failed[urls["broken"]]["status_code"] == 500
    assert failed[urls["closed"]]["event"] == "user_send_message"
    assert failed[urls["closed"]].get("status_code") is None
    assert all(entry["error"] and "payload" not in entry for entry in failed.values())
    assert says_counts(report["message"], 1, 2), report["message"]


async def test_the_success_payload_is_the_ping_envelope_that_was_sent(api, receiver):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))

    report = await ping(api.client)

    [entry] = report["successful_webhooks"]
    payload = entry["payload"]
    assert set(payload) == {"id", "event", "timestamp", "data"}
    assert payload["event"] == "ping"
    assert payload["id"].startswith("evt_")
    assert payload["data"] == DEFAULT_DATA
    [(received, _)] = pings_received(receiver, "/ok", payload["id"])
    assert received == payload


async def test_the_receiver_gets_a_signed_ping_envelope(api, receiver):
    secret = (await subscribe(api.client, "user_registered", receiver.url("/ok")))["secret"]
    before = time.time()

    report = await ping(api.client)

    [(body, request)] = pings_received(receiver, "/ok", sent_ping_id(report))
    assert set(body) == {"id", "event", "timestamp", "data"}
    assert (body["event"], body["data"]) == ("ping", DEFAULT_DATA)
    assert body["timestamp"].endswith("Z")
    sent_at = datetime.fromisoformat(body["timestamp"]).astimezone(UTC).timestamp()
    assert before - 1 <= sent_at <= time.time() + 1
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["webhook-id"] == body["id"]
    assert abs(int(headers["webhook-timestamp"]) - before) < 5
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"].startswith("application/json")
    assert Webhook(secret).verify(request.body, headers) == body


async def test_a_ping_is_not_a_user_registration(api, receiver):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))

    await ping(api.client)

    events = [json.loads(r.body)["event"] for r in receiver.at("/ok")]
    assert events and set(events) == {"ping"}


async def test_a_json_object_body_is_sent_as_data(api, receiver):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))
    data = {"hello": "world", "nested": {"n": [1, 2.5, None, True]}, "ünï": "✓"}

    report = await ping(api.client, json=data)

    assert report["successful_webhooks"][0]["payload"]["data"] == data
    [(received, _)] = pings_received(receiver, "/ok", sent_ping_id(report))
    assert received["data"] == data


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="no-body"),
        pytest.param(
            {"content": b"null", "headers": {"content-type": "application/json"}}, id="null"
        ),
    ],
)
async def test_without_data_the_default_message_is_sent(api, receiver, kwargs):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))

    report = await ping(api.client, **kwargs)

    assert report["successful_webhooks"][0]["payload"]["data"] == DEFAULT_DATA
    [(received, _)] = pings_received(receiver, "/ok", sent_ping_id(report))
    assert received["data"] == DEFAULT_DATA


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([1, 2, 3], id="list"),
        pytest.param("hello", id="string"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_422(api, receiver, body):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))
    before = len(receiver.requests)

    response = await api.client.post("/ping", json=body)

    assert response.status_code == 422
    assert len(receiver.requests) == before


async def test_a_url_registered_for_two_events_gets_an_entry_per_event(api, receiver):
    url = receiver.url("/both")
    await subscribe(api.client, "user_registered", url)
    await subscribe(api.client, "user_send_message", url)

    report = await ping(api.client)

    assert report["successful_webhooks_count"] == 2
    entries = sorted((e["event"], e["url"]) for e in report["successful_webhooks"])
    assert entries == [("user_registered", url), ("user_send_message", url)]
    assert report["failed_webhooks"] == []
    assert says_counts(report["message"], 2, 0), report["message"]


async def test_a_wildcard_subscription_is_pinged(api, receiver):
    await subscribe(api.client, "*", receiver.url("/all"))

    report = await ping(api.client)

    assert [(e["event"], e["url"]) for e in report["successful_webhooks"]] == [
        ("*", receiver.url("/all"))
    ]


async def test_the_event_filter_pings_only_that_events_urls(api, receiver):
    await subscribe(api.client, "user_registered", receiver.url("/registered"))
    await subscribe(api.client, "user_send_message", receiver.url("/messages"))

    report = await ping(api.client, params={"event_filter": "USER_Send_Message"})

    assert [(e["event"], e["url"]) for e in report["successful_webhooks"]] == [
        ("user_send_message", receiver.url("/messages"))
    ]
    assert report["failed_webhooks_count"] == 0
    assert pings_received(receiver, "/registered", sent_ping_id(report)) == []
    assert len(pings_received(receiver, "/messages", sent_ping_id(report))) == 1


async def test_with_nothing_registered_the_ping_reports_nothing(api):
    report = await ping(api.client)

    assert report["successful_webhooks_count"] == report["failed_webhooks_count"] == 0
    assert report["successful_webhooks"] == report["failed_webhooks"] == []
    assert says_counts(report["message"], 0, 0), report["message"]


@pytest.mark.parametrize("event_filter", ["ping", "Nope"])
async def test_pinging_an_unknown_event_is_404(api, receiver, event_filter):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))
    before = len(receiver.requests)

    response = await api.client.post("/ping", params={"event_filter": event_filter})

    assert response.status_code == 404
    assert response.json() == {"detail": f"Event '{event_filter}' not found."}
    assert len(receiver.requests) == before


async def test_pinging_an_event_without_urls_is_404(api, receiver):
    await subscribe(api.client, "user_registered", receiver.url("/ok"))
    before = len(receiver.requests)

    response = await api.client.post("/ping", params={"event_filter": "webhook_disabled"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Event 'webhook_disabled' has no registered URLs."}
    assert len(receiver.requests) == before


@pytest.mark.usefixtures("three_receivers")
async def test_pings_are_recorded_like_any_delivery(api):
    report = await ping(api.client)

    event_id = report["successful_webhooks"][0]["payload"]["id"]
    async with api.app.state.test_db.sessions() as session:
        event = await session.get(Event, event_id)
        deliveries = (
            await session.execute(select(Delivery).where(Delivery.event_id == event_id))
        ).scalars()
        statuses = sorted(d.status for d in deliveries)
        attempts = (
            await session.execute(
                select(Attempt).join(Delivery).where(Delivery.event_id == event_id)
            )
        ).scalars()
        codes = sorted(a.status_code or 0 for a in attempts)
    assert event is not None
    assert (event.event, event.payload) == ("ping", DEFAULT_DATA)
    assert statuses == ["failed", "failed", "succeeded"]
    assert codes == [0, 200, 500]


async def test_a_hanging_receiver_times_out_alone(make_settings, receiver):
    receiver.hang("/slow")
    async with running_app(make_settings(delivery_timeout=1)) as app:
        for path in ("/slow", "/ok", "/also-ok"):
            await subscribe(app.client, "user_registered", receiver.url(path))

        started = time.monotonic()
        report = await ping(app.client)
        elapsed = time.monotonic() - started

    assert elapsed < 2.5
    assert sorted(e["url"] for e in report["successful_webhooks"]) == [
        receiver.url("/also-ok"),
        receiver.url("/ok"),
    ]
    [timed_out] = report["failed_webhooks"]
    assert timed_out["url"] == receiver.url("/slow")
    assert timed_out.get("status_code") is None
    assert re.search(r"time|within", timed_out["error"], re.IGNORECASE), timed_out["error"]
    assert says_counts(report["message"], 2, 1), report["message"]


async def test_pings_go_out_concurrently(make_settings, receiver):
    async with Receiver() as second, running_app(make_settings(delivery_timeout=1)) as app:
        receiver.hang("/slow")
        second.hang("/slow")
        for url in (receiver.url("/slow"), second.url("/slow"), receiver.url("/ok")):
            await subscribe(app.client, "user_registered", url)

        started = time.monotonic()
        report = await ping(app.client)
        elapsed = time.monotonic() - started

    # One after the other, the two hanging receivers would take two timeouts.
    assert elapsed < 1.8
    assert report["successful_webhooks_count"] == 1
    assert report["failed_webhooks_count"] == 2


async def test_a_ping_in_flight_does_not_hold_up_other_requests(make_settings, receiver):
    receiver.hang("/slow")
    async with running_app(make_settings(delivery_timeout=1)) as app:
        await subscribe(app.client, "user_registered", receiver.url("/slow"))
        pinging = asyncio.create_task(app.client.post("/ping"))
        await receiver.wait_for(1, path="/slow", timeout=2)

        started = time.monotonic()
        registered = await app.client.post("/users", json={"username": "alice"})
        elapsed = time.monotonic() - started
        report = (await pinging).json()

    assert registered.status_code == 201
    assert elapsed < 0.5
    assert report["failed_webhooks_count"] == 1
