"""What a receiver gets, checked on real deliveries to a local receiver."""

import json
import re
import time
from datetime import datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookline import __version__
from hookline.config import Settings
from tests.delivery.helpers import headers_of, register_user, subscribe
from tests.support.app import running_app
from tests.support.receiver import Received, Receiver

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def assert_compact_envelope(received: Received, event: str) -> dict[str, object]:
    """The body is compact UTF-8 JSON with exactly id, event, timestamp, data, in that order."""
    payload = json.loads(received.body)
    assert list(payload) == ["id", "event", "timestamp", "data"]
    compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert received.body == compact
    assert payload["event"] == event
    assert payload["id"].startswith("evt_")
    assert TIMESTAMP.fullmatch(payload["timestamp"])
    return dict(payload)


def assert_standard_headers(received: Received, *, event_id: str, sent: tuple[int, int]) -> None:
    headers = headers_of(received)
    assert headers["webhook-id"] == event_id
    assert sent[0] <= int(headers["webhook-timestamp"]) <= sent[1]
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"hookline/{__version__}"
    # Answers are stored as they come (only the first 4 KiB): never ask for a compressed one.
    assert headers.get("accept-encoding", "identity") == "identity"


async def test_user_registered_arrives_as_signed_compact_envelope(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        endpoint = await subscribe(running.client, receiver.url("/hook"))
        before = int(time.time())
        user = await register_user(running.client, "Alice")
        await receiver.wait_for(1, path="/hook", timeout=5)
        after = int(time.time()) + 1

    [received] = receiver.at("/hook")
    payload = assert_compact_envelope(received, "user_registered")
    assert payload["data"] == {
        "id": user["id"],
        "username": "alice",
        "registered_at": user["registered_at"],
    }
    # The envelope's timestamp is when the event happened, right after the registration.
    happened = datetime.fromisoformat(str(payload["timestamp"]))
    registered = datetime.fromisoformat(user["registered_at"])
    assert 0 <= (happened - registered).total_seconds() < 5
    assert_standard_headers(received, event_id=str(payload["id"]), sent=(before, after))
    assert Webhook(endpoint["secret"]).verify(received.body, received.headers) == payload


async def test_user_send_message_arrives_with_message_fields_signed_by_the_one_secret(
    settings: Settings, receiver: Receiver
) -> None:
    text = 'Grüße 👋\nsaid "hi" \\ bye'
    async with running_app(settings, run_worker=True) as running:
        first = await subscribe(running.client, receiver.url("/hook"), "user_registered")
        second = await subscribe(running.client, receiver.url("/hook"), "user_send_message")
        await register_user(running.client, "alice")
        await register_user(running.client, "bob")
        before = int(time.time())
        response = await running.client.post(
            "/users/messages",
            json={"sender": "Alice", "recipient": "bob", "subject": "Hello", "message": text},
        )
        assert response.status_code == 201, response.text
        message = response.json()
        await receiver.wait_for(3, path="/hook", timeout=5)
        after = int(time.time()) + 1

    # One URL subscribed to two events is one endpoint: one id, one secret.
    assert (second["id"], second["secret"]) == (first["id"], first["secret"])
    webhook = Webhook(first["secret"])
    for received in receiver.at("/hook"):
        webhook.verify(received.body, received.headers)
    [received] = [r for r in receiver.at("/hook") if b'"user_send_message"' in r.body]
    payload = assert_compact_envelope(received, "user_send_message")
    assert payload["data"] == {
        "id": message["id"],
        "sender": "alice",
        "recipient": "bob",
        "subject": "Hello",
        "message": text,
        "received_at": message["received_at"],
    }
    assert_standard_headers(received, event_id=str(payload["id"]), sent=(before, after))


async def test_delivery_does_not_verify_with_another_endpoints_secret(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        await subscribe(running.client, receiver.url("/hook"))
        other = await subscribe(running.client, receiver.url("/other"), "user_send_message")
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    [received] = receiver.at("/hook")
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(received.body, received.headers)
