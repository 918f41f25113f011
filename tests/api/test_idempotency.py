"""The Idempotency-Key header on POST /users, /users/messages and /webhook."""

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from hookline.models import (
    Delivery,
    Endpoint,
    Event,
    IdempotencyKey,
    Message,
    Subscription,
    User,
    utcnow,
)
from hookline.store import prune

OBSERVER = "http://127.0.0.1:9/observer"
HOOK = "http://127.0.0.1:9/hook"
OTHER = "http://127.0.0.1:9/other"
TABLES = {
    "users": User,
    "messages": Message,
    "endpoints": Endpoint,
    "subscriptions": Subscription,
    "events": Event,
    "deliveries": Delivery,
    "idempotency_keys": IdempotencyKey,
}


@dataclass(frozen=True)
class Route:
    path: str
    body: dict[str, Any]
    other_body: dict[str, Any]
    writes: dict[str, int]  # the rows one successful request adds, its idempotency key included
    second_without_key: int  # the status of the same body sent again without a key


def message(text: str) -> dict[str, Any]:
    return {"sender": "carol", "recipient": "dave", "subject": "Hi", "message": text}


USERS = Route(
    path="/users",
    body={"username": "alice"},
    other_body={"username": "bob"},
    writes={"users": 1, "events": 1, "deliveries": 1, "idempotency_keys": 1},
    second_without_key=409,
)
MESSAGES = Route(
    path="/users/messages",
    body=message("Hello"),
    other_body=message("Goodbye"),
    writes={"messages": 1, "events": 1, "deliveries": 1, "idempotency_keys": 1},
    second_without_key=201,
)
WEBHOOK = Route(
    path="/webhook",
    body={"event": "user_registered", "url": HOOK},
    other_body={"event": "user_registered", "url": OTHER},
    writes={"endpoints": 1, "subscriptions": 1, "idempotency_keys": 1},
    second_without_key=409,
)
ROUTES = [
    pytest.param(USERS, id="users"),
    pytest.param(MESSAGES, id="messages"),
    pytest.param(WEBHOOK, id="webhook"),
]


@pytest.fixture
async def world(api):
    """carol and dave registered, and an endpoint subscribed to every event (so deliveries)."""
    for request in (
        ("/webhook", {"event": "*", "url": OBSERVER}),
        ("/users", {"username": "carol"}),
        ("/users", {"username": "dave"}),
    ):
        response = await api.client.post(request[0], json=request[1])
        assert response.status_code == 201, response.text


async def post(api, path, body, key=None):
    headers = {} if key is None else {"Idempotency-Key": key}
    return await api.client.post(path, json=body, headers=headers)


async def counts(api) -> Counter[str]:
    async with api.app.state.test_db.sessions() as session:
        return Counter(
            {
                name: await session.scalar(select(func.count()).select_from(model))
                for name, model in TABLES.items()
            }
        )


def added(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in TABLES if after[name] != before[name]}


def first_answer(route: Route, answer: dict[str, Any]) -> dict[str, Any]:
    """What a replay answers: the first answer, but a user's token, which is shown once."""
    return answer | {"token": None} if route is USERS else answer


async def age_keys(api, age: timedelta) -> None:
    """Make every stored key look `age` old."""
    async with api.app.state.test_db.sessions() as session, session.begin():
        await session.execute(update(IdempotencyKey).values(created_at=utcnow() - age))


@pytest.mark.parametrize("route", ROUTES)
async def test_the_same_key_and_body_replay_the_first_answer_and_write_nothing(api, world, route):
    before = await counts(api)
    first = await post(api, route.path, route.body, key="key-1")
    after_first = await counts(api)

    replay = await post(api, route.path, route.body, key="key-1")

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert added(before, after_first) == route.writes
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first_answer(route, first.json())
    assert await counts(api) == after_first


async def test_a_replayed_registration_has_no_token_but_the_first_had_one(api):
    first = await post(api, "/users", {"username": "alice"}, key="key-1")
    replay = await post(api, "/users", {"username": "alice"}, key="key-1")

    assert first.json()["token"].startswith("hl_user_")
    assert replay.json()["token"] is None
    async with api.app.state.test_db.sessions() as session:
        stored = await session.scalar(select(IdempotencyKey.response))
    assert first.json()["token"] not in str(stored)


async def test_a_replayed_webhook_registration_carries_the_secret_that_is_not_stored(api):
    first = await post(api, "/webhook", WEBHOOK.body, key="key-1")
    replay = await post(api, "/webhook", WEBHOOK.body, key="key-1")

    assert replay.json()["secret"] == first.json()["secret"]
    assert first.json()["secret"].startswith("whsec_")
    async with api.app.state.test_db.sessions() as session:
        stored = await session.scalar(select(IdempotencyKey.response))
    assert "secret" not in stored


@pytest.mark.parametrize("route", ROUTES)
async def test_the_same_key_with_another_body_is_409_and_writes_nothing(api, world, route):
    await post(api, route.path, route.body, key="key-1")
    before = await counts(api)

    response = await post(api, route.path, route.other_body, key="key-1")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Idempotency-Key 'key-1' was already used with a different request body"
    }
    assert await counts(api) == before


@pytest.mark.parametrize("route", ROUTES)
async def test_different_keys_make_two_writes(api, world, route):
    before = await counts(api)

    first = await post(api, route.path, route.body, key="key-1")
    second = await post(api, route.path, route.other_body, key="key-2")

    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert added(before, await counts(api)) == {name: 2 * n for name, n in route.writes.items()}


async def test_one_key_is_separate_for_each_route(api, world):
    user = await post(api, "/users", USERS.body, key="key-1")
    sent = await post(api, "/users/messages", MESSAGES.body, key="key-1")

    assert (user.status_code, sent.status_code) == (201, 201)
    assert "idempotent-replayed" not in sent.headers


@pytest.mark.parametrize("route", ROUTES)
async def test_without_a_key_nothing_is_remembered_or_replayed(api, world, route):
    first = await post(api, route.path, route.body)
    second = await post(api, route.path, route.body)

    assert first.status_code == 201
    assert second.status_code == route.second_without_key
    assert "idempotent-replayed" not in second.headers
    assert (await counts(api))["idempotency_keys"] == 0


async def test_without_a_key_a_second_registration_is_409_username_exists(api):
    await post(api, "/users", {"username": "alice"})

    response = await post(api, "/users", {"username": "alice"})

    assert response.status_code == 409
    assert response.json() == {"detail": "Username already exists"}


@pytest.mark.parametrize("route", ROUTES)
async def test_a_key_older_than_24_hours_is_free_for_another_body(api, world, route):
    await post(api, route.path, route.body, key="key-1")
    await age_keys(api, timedelta(hours=24, seconds=1))

    second = await post(api, route.path, route.other_body, key="key-1")
    replay = await post(api, route.path, route.other_body, key="key-1")

    assert second.status_code == 201, second.text
    assert "idempotent-replayed" not in second.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first_answer(route, second.json())


async def test_the_same_message_under_a_key_older_than_24_hours_is_sent_again(api, world):
    first = await post(api, "/users/messages", MESSAGES.body, key="key-1")
    await age_keys(api, timedelta(hours=25))
    before = await counts(api)

    second = await post(api, "/users/messages", MESSAGES.body, key="key-1")

    assert second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert added(before, await counts(api)) == {"messages": 1, "events": 1, "deliveries": 1}


async def test_a_key_younger_than_24_hours_is_still_replayed(api, world):
    await post(api, "/users/messages", MESSAGES.body, key="key-1")
    await age_keys(api, timedelta(hours=23, minutes=59))

    replay = await post(api, "/users/messages", MESSAGES.body, key="key-1")

    assert replay.headers["idempotent-replayed"] == "true"


async def test_a_refused_registration_is_not_stored_so_the_key_stays_usable(api):
    await post(api, "/users", {"username": "alice"})

    refused = await post(api, "/users", {"username": "alice"}, key="key-1")
    assert (await counts(api))["idempotency_keys"] == 0
    accepted = await post(api, "/users", {"username": "bob"}, key="key-1")

    assert refused.status_code == 409
    assert refused.json() == {"detail": "Username already exists"}
    assert accepted.status_code == 201
    assert accepted.json()["username"] == "bob"


async def test_a_message_from_a_missing_sender_is_not_stored_so_it_can_be_retried(api, world):
    body = message("Hello") | {"sender": "mallory"}
    missing = await post(api, "/users/messages", body, key="key-1")
    await post(api, "/users", {"username": "mallory"})

    retried = await post(api, "/users/messages", body, key="key-1")

    assert missing.status_code == 404
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert retried.json()["sender"] == "mallory"


async def test_a_replay_for_an_endpoint_that_no_longer_exists_is_409(api):
    first = await post(api, "/webhook", WEBHOOK.body, key="key-1")
    removed = await api.client.delete(f"/webhooks/{first.json()['id']}")
    assert removed.status_code == 204

    replay = await post(api, "/webhook", WEBHOOK.body, key="key-1")

    assert replay.status_code == 409
    assert first.json()["id"] in replay.json()["detail"]
    assert "no longer exists" in replay.json()["detail"]


async def test_concurrent_requests_with_one_key_send_one_message(api, world):
    responses = await asyncio.gather(
        *(post(api, "/users/messages", MESSAGES.body, key="key-1") for _ in range(5))
    )

    # One does the work; every other gets its answer back, never an error.
    assert [r.status_code for r in responses] == [201] * 5
    answers = [r.json() for r in responses]
    assert all(answer == answers[0] for answer in answers)
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    assert (await counts(api))["messages"] == 1


async def test_thirty_concurrent_registrations_with_one_key_all_get_the_first_answer(api):
    responses = await asyncio.gather(
        *(post(api, "/users", {"username": "alice"}, key="same") for _ in range(30))
    )

    assert [r.status_code for r in responses] == [201] * 30, {r.text for r in responses}
    first = [r for r in responses if r.headers.get("idempotent-replayed") != "true"]
    assert len(first) == 1
    expected = first[0].json() | {"token": None}  # a replay cannot show the token
    assert all(r.json() == expected for r in responses if r is not first[0])
    assert (await counts(api))["users"] == 1


@pytest.mark.parametrize(
    ("key", "status"),
    [
        pytest.param("k" * 255, 201, id="255-chars"),
        pytest.param("k" * 256, 422, id="256-chars"),
        pytest.param("", 422, id="empty"),
    ],
)
async def test_key_length_is_checked(api, key, status):
    response = await post(api, "/users", {"username": "alice"}, key=key)

    assert response.status_code == status
    assert (await counts(api))["users"] == (1 if status == 201 else 0)


async def test_prune_deletes_only_keys_created_before_the_cutoff(api):
    now = utcnow()
    ages = {"old": timedelta(days=2), "just-old": timedelta(hours=24, seconds=1), "new": None}
    rows = [
        {
            "scope": "POST /users",
            "key": key,
            "request_hash": "0" * 64,
            "status_code": 201,
            "response": {},
            "created_at": now - (age or timedelta(hours=1)),
        }
        for key, age in ages.items()
    ]
    async with api.app.state.test_db.sessions() as session, session.begin():
        await session.execute(insert(IdempotencyKey), rows)

    store = api.app.state.runtime.store
    deleted = await store.write(prune.idempotency_keys(before=now - timedelta(hours=24)))

    async with api.app.state.test_db.sessions() as session:
        left = (await session.scalars(select(IdempotencyKey.key))).all()
    assert deleted == 2
    assert left == ["new"]
