"""The outbox behind the original routes: each change writes its event and
one delivery per subscribed endpoint in its own transaction, and never waits for a receiver."""

import time
from datetime import datetime

import pytest
from sqlalchemy import func, select

from hookline.models import Delivery, Event, Message, User
from tests.support.app import running_app

HOOK = "http://127.0.0.1:9/hook"


async def subscribe(client, event, url):
    response = await client.post("/webhook", json={"event": event, "url": url})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def register(client, username):
    response = await client.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    return response.json()


async def send(client, sender, recipient):
    response = await client.post(
        "/users/messages",
        json={"sender": sender, "recipient": recipient, "subject": "Hi", "message": "Hello"},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def events_of(api, name):
    """The stored events called `name`, oldest first, each with its deliveries."""
    async with api.app.state.test_db.sessions() as session:
        events = (
            await session.execute(select(Event).where(Event.event == name).order_by(Event.id))
        ).scalars()
        found = []
        for event in events:
            deliveries = (
                await session.execute(select(Delivery).where(Delivery.event_id == event.id))
            ).scalars()
            found.append((event, list(deliveries)))
        return found


def instant(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def count(api, model):
    async with api.app.state.test_db.sessions() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_registering_writes_the_event_and_a_pending_delivery_per_endpoint(api):
    first = await subscribe(api.client, "user_registered", "http://127.0.0.1:9/first")
    second = await subscribe(api.client, "user_registered", "http://127.0.0.1:9/second")

    user = await register(api.client, "Alice")

    [(event, deliveries)] = await events_of(api, "user_registered")
    assert event.id.startswith("evt_")
    assert set(event.payload) == {"id", "username", "registered_at"}
    assert (event.payload["id"], event.payload["username"]) == (user["id"], "alice")
    assert instant(event.payload["registered_at"]) == instant(user["registered_at"])
    assert sorted(d.endpoint_id for d in deliveries) == sorted([first, second])
    assert all(d.id.startswith("dlv_") for d in deliveries)
    assert {(d.status, d.attempts_made) for d in deliveries} == {("pending", 0)}


async def test_sending_a_message_writes_its_event_with_the_message_as_data(api):
    endpoint = await subscribe(api.client, "user_send_message", HOOK)
    await register(api.client, "alice")
    await register(api.client, "bob")

    sent = await send(api.client, "Alice", "BOB")

    [(event, deliveries)] = await events_of(api, "user_send_message")
    assert event.payload["id"] == sent["id"]
    assert {k: event.payload[k] for k in ("sender", "recipient", "subject", "message")} == {
        "sender": "alice",
        "recipient": "bob",
        "subject": "Hi",
        "message": "Hello",
    }
    assert set(event.payload) == {"id", "sender", "recipient", "subject", "message", "received_at"}
    assert instant(event.payload["received_at"]) == instant(sent["received_at"])
    assert [d.endpoint_id for d in deliveries] == [endpoint]


@pytest.mark.parametrize(
    ("subscriptions", "registration_deliveries", "message_deliveries"),
    [
        pytest.param(["user_registered"], 1, 0, id="user_registered"),
        pytest.param(["user_send_message"], 0, 1, id="user_send_message"),
        pytest.param(["webhook_disabled"], 0, 0, id="webhook_disabled"),
        pytest.param(["*"], 1, 1, id="wildcard"),
        pytest.param(["user_registered", "*"], 1, 1, id="event-and-wildcard"),
        pytest.param(["user_registered", "user_send_message"], 1, 1, id="both-events"),
    ],
)
async def test_an_endpoint_gets_one_delivery_per_event_it_subscribes_to(
    api, subscriptions, registration_deliveries, message_deliveries
):
    for event in subscriptions:
        await subscribe(api.client, event, HOOK)

    await register(api.client, "alice")
    await register(api.client, "bob")
    await send(api.client, "alice", "bob")

    registrations = await events_of(api, "user_registered")
    [(_, message_delivered)] = await events_of(api, "user_send_message")
    assert [len(deliveries) for _, deliveries in registrations] == [registration_deliveries] * 2
    assert len(message_delivered) == message_deliveries


async def test_an_event_without_subscribers_is_still_stored(api):
    await register(api.client, "alice")

    [(_, deliveries)] = await events_of(api, "user_registered")
    assert deliveries == []


async def test_a_removed_subscription_gets_no_new_deliveries(api):
    await subscribe(api.client, "user_registered", HOOK)
    await register(api.client, "alice")
    removed = await api.client.request(
        "DELETE", "/webhook", json={"event": "user_registered", "url": HOOK}
    )
    assert removed.status_code == 204

    await register(api.client, "bob")

    [(_, before), (_, after)] = await events_of(api, "user_registered")
    assert len(before) == 1
    assert after == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        pytest.param("/users", {"username": "ALICE"}, 409, id="duplicate-user"),
        pytest.param("/users", {"username": "not valid"}, 422, id="invalid-user"),
        pytest.param(
            "/users/messages",
            {"sender": "mallory", "recipient": "alice", "subject": "", "message": "x"},
            404,
            id="unknown-sender",
        ),
        pytest.param(
            "/users/messages",
            {"sender": "alice", "recipient": "ALICE", "subject": "", "message": "x"},
            422,
            id="message-to-oneself",
        ),
        pytest.param(
            "/users/messages",
            {"sender": "alice", "recipient": "alice2", "subject": "", "message": ""},
            422,
            id="empty-message",
        ),
    ],
)
async def test_a_refused_request_writes_no_event(api, path, body, status):
    await subscribe(api.client, "*", HOOK)
    await register(api.client, "alice")
    await register(api.client, "alice2")
    stored = (await count(api, Event), await count(api, Delivery))
    rows = (await count(api, User), await count(api, Message))

    response = await api.client.post(path, json=body)

    assert response.status_code == status
    assert (await count(api, Event), await count(api, Delivery)) == stored
    assert (await count(api, User), await count(api, Message)) == rows


async def test_registration_does_not_wait_for_a_hanging_receiver(api, receiver):
    receiver.hang("/slow")
    await subscribe(api.client, "*", receiver.url("/slow"))

    started = time.monotonic()
    await register(api.client, "alice")
    await register(api.client, "bob")
    await send(api.client, "alice", "bob")

    assert time.monotonic() - started < 1


async def test_the_api_answers_at_once_while_the_worker_waits_on_a_hanging_receiver(
    settings, receiver
):
    receiver.hang("/slow")
    async with running_app(settings, run_worker=True) as app:
        await subscribe(app.client, "*", receiver.url("/slow"))
        await register(app.client, "alice")
        await receiver.wait_for(1, path="/slow", timeout=5)

        started = time.monotonic()
        await register(app.client, "bob")
        await send(app.client, "alice", "bob")
        users = await app.client.get("/users")
        elapsed = time.monotonic() - started

    assert settings.delivery_timeout >= 2
    assert elapsed < 1
    assert [u["username"] for u in users.json()] == ["alice", "bob"]
