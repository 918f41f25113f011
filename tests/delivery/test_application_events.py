"""Application events and users' own endpoints, delivered for real: a worker,
real receivers on 127.0.0.1, Standard Webhooks signatures checked as a receiver checks them."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import jsonschema_rs
import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from hookline.config import Settings
from hookline.models import Delivery, Event
from tests.delivery.helpers import subscribe
from tests.support.app import RunningApp, running_app
from tests.support.receiver import Receiver

ORDER = "order.created"
ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "total"],
    "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
}


@dataclass
class Shop:
    running: RunningApp
    receiver: Receiver
    tokens: dict[str, str]

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.running.client

    async def as_user(self, who: str, method: str, url: str, **options: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.admin.request(method, url, headers=headers, **options)

    async def endpoint_of(self, who: str, path: str, events: list[str]) -> dict[str, Any]:
        response = await self.as_user(
            who, "POST", "/endpoints", json={"url": self.receiver.url(path), "events": events}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def count(self, model: Any) -> int:
        async with self.running.app.state.test_db.sessions() as session:
            found: int = await session.scalar(select(func.count()).select_from(model))
            return found


@pytest.fixture
async def shop(settings: Settings, receiver: Receiver) -> AsyncIterator[Shop]:
    async with running_app(settings, run_worker=True) as running:
        tokens = {}
        for name in ("alice", "bob"):
            response = await running.client.post("/users", json={"username": name})
            tokens[name] = response.json()["token"]
        defined = await running.client.post(
            "/event-types", json={"name": ORDER, "schema": ORDER_SCHEMA}
        )
        assert defined.status_code == 201, defined.text
        yield Shop(running, receiver, tokens)


def payloads(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.at(path)]


async def test_an_application_event_reaches_exactly_the_endpoints_it_concerns_signed(
    shop: Shop,
) -> None:
    admins = await subscribe(shop.admin, shop.receiver.url("/admin"), ORDER)
    await subscribe(shop.admin, shop.receiver.url("/admin-other"), "user_registered")
    alices = await shop.endpoint_of("alice", "/alice", [ORDER])
    await shop.endpoint_of("bob", "/bob", [ORDER])
    data = {"order_id": "o-1", "total": 12.5}

    response = await shop.admin.post(
        "/events", json={"event": ORDER, "data": data, "user": "alice"}
    )
    await shop.receiver.wait_for(2, timeout=10)

    assert response.status_code == 201, response.text
    sent = response.json()
    assert (sent["event"], sent["deliveries"]) == (ORDER, 2)
    assert sorted(r.path for r in shop.receiver.requests) == ["/admin", "/alice"]
    for path, endpoint in (("/admin", admins), ("/alice", alices)):
        [received] = shop.receiver.at(path)
        payload = Webhook(endpoint["secret"]).verify(received.body, received.headers)
        assert (payload["id"], payload["event"], payload["data"]) == (sent["id"], ORDER, data)
        happened = datetime.fromisoformat(payload["timestamp"])
        assert happened == datetime.fromisoformat(sent["timestamp"])
        assert received.headers["webhook-id"] == sent["id"]


async def test_an_event_without_a_user_reaches_only_the_admins_endpoints(shop: Shop) -> None:
    await subscribe(shop.admin, shop.receiver.url("/admin"), "*")
    await shop.endpoint_of("alice", "/alice", ["*"])

    response = await shop.admin.post(
        "/events", json={"event": ORDER, "data": {"order_id": "o-2", "total": 1}}
    )
    await shop.receiver.wait_for(1, timeout=10)

    assert response.json()["deliveries"] == 1
    assert [r.path for r in shop.receiver.requests] == ["/admin"]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        pytest.param({"order_id": "o-3"}, ["body", "data"], id="a required field missing"),
        pytest.param({"order_id": "o-3", "total": -1}, ["body", "data", "total"], id="minimum"),
        pytest.param({"order_id": 3, "total": 1}, ["body", "data", "order_id"], id="wrong type"),
    ],
)
async def test_data_that_does_not_match_the_schema_is_422_naming_the_path_and_stores_nothing(
    shop: Shop, data: dict[str, Any], loc: list[str]
) -> None:
    await subscribe(shop.admin, shop.receiver.url("/admin"), ORDER)
    events, deliveries = await shop.count(Event), await shop.count(Delivery)

    response = await shop.admin.post("/events", json={"event": ORDER, "data": data})

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc and error["type"] == "json_schema"
    assert ORDER in error["msg"]
    assert (await shop.count(Event), await shop.count(Delivery)) == (events, deliveries)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        pytest.param(
            {"event": "user_registered", "data": {}}, 422, "is built in", id="a built-in type"
        ),
        pytest.param({"event": "ping", "data": {}}, 422, "is built in", id="ping"),
        pytest.param({"event": "nope", "data": {}}, 404, "Event 'nope' not found", id="unknown"),
        pytest.param(
            {"event": ORDER, "data": {"order_id": "o", "total": 1}, "user": "carol"},
            404,
            "User 'carol' does not exist",
            id="an unknown user",
        ),
    ],
)
async def test_what_cannot_be_sent_is_refused_and_stores_nothing(
    shop: Shop, body: dict[str, Any], status: int, says: str
) -> None:
    events = await shop.count(Event)

    response = await shop.admin.post("/events", json=body)

    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    assert await shop.count(Event) == events


async def test_an_archived_type_cannot_be_sent(shop: Shop) -> None:
    await shop.admin.patch(f"/event-types/{ORDER}", json={"archived": True})

    response = await shop.admin.post(
        "/events", json={"event": ORDER, "data": {"order_id": "o", "total": 1}}
    )

    assert response.status_code == 422
    assert response.json() == {"detail": f"Event type '{ORDER}' is archived: it cannot be sent"}


async def test_a_user_cannot_send_events(shop: Shop) -> None:
    response = await shop.as_user(
        "alice", "POST", "/events", json={"event": ORDER, "data": {"order_id": "o", "total": 1}}
    )

    assert response.status_code == 403


async def test_an_idempotency_key_sends_an_event_once(shop: Shop) -> None:
    await subscribe(shop.admin, shop.receiver.url("/admin"), ORDER)
    body = {"event": ORDER, "data": {"order_id": "o-9", "total": 9}}
    key = {"Idempotency-Key": "order-o-9"}

    first = await shop.admin.post("/events", json=body, headers=key)
    again = await shop.admin.post("/events", json=body, headers=key)
    other = await shop.admin.post(
        "/events", json={**body, "data": {"order_id": "o-10", "total": 1}}, headers=key
    )
    await shop.receiver.wait_for(1, timeout=10)

    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 409)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await shop.count(Event) == 3  # two registrations and this one
    assert len(shop.receiver.requests) == 1


# --- Users' own endpoints -------------------------------------------------------------------


async def test_bobs_endpoint_gets_the_messages_sent_to_bob_and_nothing_sent_to_alice(
    shop: Shop,
) -> None:
    bobs = await shop.endpoint_of("bob", "/bob", ["user_send_message"])
    await shop.endpoint_of("alice", "/alice", ["user_registered"])
    admins = await subscribe(shop.admin, shop.receiver.url("/admin"), "user_send_message")

    to_alice = {"sender": "bob", "recipient": "alice", "message": "for alice"}
    to_bob = {"sender": "alice", "recipient": "bob", "message": "for bob"}
    assert (await shop.as_user("bob", "POST", "/users/messages", json=to_alice)).is_success
    assert (await shop.as_user("alice", "POST", "/users/messages", json=to_bob)).is_success
    await shop.admin.post("/users", json={"username": "carol"})  # no user's endpoint gets it
    await shop.receiver.wait_for(3, timeout=10)

    [received] = shop.receiver.at("/bob")
    assert Webhook(bobs["secret"]).verify(received.body, received.headers)["data"]["message"] == (
        "for bob"
    )
    assert shop.receiver.at("/alice") == []
    assert sorted(p["data"]["message"] for p in payloads(shop.receiver, "/admin")) == [
        "for alice",
        "for bob",
    ]
    assert admins["id"] != bobs["id"]


async def test_a_users_endpoint_hears_only_of_its_own_endpoints_being_disabled(
    shop: Shop,
) -> None:
    alices_watch = await shop.endpoint_of("alice", "/alice-watch", ["webhook_disabled"])
    await shop.endpoint_of("bob", "/bob-watch", ["webhook_disabled"])
    alices = await shop.endpoint_of("alice", "/alice", ["user_send_message"])

    disabled = await shop.as_user(
        "alice", "PATCH", f"/endpoints/{alices['id']}", json={"enabled": False}
    )
    await shop.receiver.wait_for(1, path="/alice-watch", timeout=10)

    assert disabled.json()["enabled"] is False
    [payload] = payloads(shop.receiver, "/alice-watch")
    assert (payload["event"], payload["data"]["id"]) == ("webhook_disabled", alices["id"])
    assert shop.receiver.at("/bob-watch") == []
    assert alices_watch["owner"] == "alice"


async def test_a_user_owns_at_most_the_configured_number_of_endpoints(
    make_settings: Any, receiver: Receiver
) -> None:
    async with running_app(make_settings(max_endpoints_per_user=2)) as running:
        token = (await running.client.post("/users", json={"username": "dave"})).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        answers = [
            await running.client.post(
                "/endpoints",
                json={"url": receiver.url(f"/d{n}"), "events": ["*"]},
                headers=headers,
            )
            for n in range(3)
        ]
        by_admin = await running.client.post(
            "/endpoints", json={"url": receiver.url("/admin"), "events": ["*"]}
        )

    assert [a.status_code for a in answers] == [201, 201, 409]
    assert "at most 2 endpoints" in answers[2].json()["detail"]
    assert by_admin.status_code == 201  # the admin's own endpoints are not counted


async def test_two_users_may_use_the_same_url_and_neither_learns_of_the_other(
    shop: Shop,
) -> None:
    alices = await shop.endpoint_of("alice", "/shared", ["*"])
    bobs = await shop.endpoint_of("bob", "/shared", ["*"])
    again = await shop.as_user(
        "alice", "POST", "/endpoints", json={"url": shop.receiver.url("/shared"), "events": ["*"]}
    )

    assert alices["id"] != bobs["id"]
    assert again.status_code == 409


async def test_an_endpoint_signs_with_the_secret_it_was_given(shop: Shop) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes
    response = await shop.as_user(
        "alice",
        "POST",
        "/endpoints",
        json={"url": shop.receiver.url("/own"), "events": [ORDER], "secret": secret},
    )
    await shop.admin.post(
        "/events", json={"event": ORDER, "data": {"order_id": "o", "total": 1}, "user": "alice"}
    )
    await shop.receiver.wait_for(1, path="/own", timeout=10)

    assert response.json()["secret"] == secret
    [received] = shop.receiver.at("/own")
    assert Webhook(secret).verify(received.body, received.headers)["event"] == ORDER


@pytest.mark.parametrize(
    "secret", ["not-whsec", "whsec_!!!", "whsec_" + "QUFB" * 4, "whsec_" + "QUFB" * 30]
)
async def test_a_secret_that_is_not_24_to_64_random_bytes_is_422(shop: Shop, secret: str) -> None:
    response = await shop.admin.post(
        "/endpoints",
        json={"url": shop.receiver.url("/own"), "events": [ORDER], "secret": secret},
    )

    assert response.status_code == 422, response.text
    assert "Invalid secret" in response.json()["detail"]


# --- The built-in types' schemas are what hookline sends ------------------------------------


async def test_every_built_in_event_matches_its_catalog_schema(shop: Shop) -> None:
    watch = await subscribe(shop.admin, shop.receiver.url("/all"), "*")
    ping = await shop.admin.post(f"/endpoints/{watch['id']}/ping")
    assert ping.status_code == 200
    sent = {"sender": "alice", "recipient": "bob", "message": "hi"}
    assert (await shop.admin.post("/users/messages", json=sent)).is_success
    await shop.admin.post("/users", json={"username": "erin"})
    hook = await subscribe(shop.admin, shop.receiver.url("/soon-disabled"), "user_registered")
    await shop.admin.patch(f"/endpoints/{hook['id']}", json={"enabled": False})
    await shop.receiver.wait_for(4, path="/all", timeout=10)

    catalog = {
        t["name"]: t["schema"] for t in (await shop.admin.get("/event-types")).json()["data"]
    }
    seen = set()
    for payload in payloads(shop.receiver, "/all"):
        validator = jsonschema_rs.Draft202012Validator(
            catalog[payload["event"]], validate_formats=True
        )
        errors = [e.message for e in validator.iter_errors(payload["data"])]
        assert errors == [], (payload, errors)
        seen.add(payload["event"])
    assert seen == {"ping", "user_send_message", "user_registered", "webhook_disabled"}
