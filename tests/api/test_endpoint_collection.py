"""`/endpoints` as a collection: create in one call, list with filters and cursor
pagination, and every refusal writing nothing."""

from typing import Any

import pytest
from sqlalchemy import func, select

from hookline.models import Endpoint, Subscription
from tests.support.app import RunningApp

CLOSED = "http://127.0.0.1:9"


async def create(api: RunningApp, **body: Any) -> dict[str, Any]:
    response = await api.client.post("/endpoints", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def count(api: RunningApp, model: Any) -> int:
    async with api.app.state.test_db.sessions() as session:
        found: int = await session.scalar(select(func.count()).select_from(model))
        return found


async def test_an_endpoint_is_created_with_everything_in_one_call(api: RunningApp) -> None:
    created = await create(
        api,
        url=f"{CLOSED}/a",
        events=["User_Registered", "user_send_message"],
        description="the shop",
        headers={"X-Team": "billing"},
    )
    read = (await api.client.get(f"/endpoints/{created['id']}")).json()
    secret = (await api.client.get(f"/endpoints/{created['id']}/secret")).json()["secret"]

    assert created["secret"].startswith("whsec_") and created["secret"] == secret
    assert created["owner"] is None
    assert read["events"] == ["user_registered", "user_send_message"]
    assert (read["description"], read["headers"]) == ("the shop", {"X-Team": "billing"})
    assert {k: v for k, v in created.items() if k != "secret"} == read


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, 422, "scheme must be http"),
        ({"url": f"{CLOSED}/b", "events": ["nope"]}, 404, "Event 'nope' not found"),
        ({"url": f"{CLOSED}/b", "events": ["ping"]}, 404, "Event 'ping' not found"),
        ({"url": f"{CLOSED}/b", "events": ["*"], "headers": {"Host": "x"}}, 422, "headers"),
        ({"url": f"{CLOSED}/b", "events": ["*"], "owner": "nobody"}, 404, "User 'nobody'"),
        ({"url": f"{CLOSED}/taken", "events": ["*"]}, 409, "already exists"),
    ],
)
async def test_a_refused_creation_writes_nothing(
    api: RunningApp, body: dict[str, Any], status: int, says: str
) -> None:
    await create(api, url=f"{CLOSED}/taken", events=["*"])
    before = (await count(api, Endpoint), await count(api, Subscription))

    response = await api.client.post("/endpoints", json=body)

    assert response.status_code == status, response.text
    assert says in str(response.json()["detail"])
    assert (await count(api, Endpoint), await count(api, Subscription)) == before


async def test_an_idempotency_key_creates_one_endpoint_and_replays_its_secret(
    api: RunningApp,
) -> None:
    body = {"url": f"{CLOSED}/once", "events": ["*"]}
    key = {"Idempotency-Key": "create-once"}

    first = await api.client.post("/endpoints", json=body, headers=key)
    again = await api.client.post("/endpoints", json=body, headers=key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await count(api, Endpoint) == 1


async def test_the_list_filters_by_event_state_url_and_owner(api: RunningApp) -> None:
    token = (await api.client.post("/users", json={"username": "bob"})).json()["token"]
    registered = await create(api, url=f"{CLOSED}/Shop/registered", events=["user_registered"])
    everything = await create(api, url=f"{CLOSED}/all", events=["*"])
    messages = await create(api, url=f"{CLOSED}/shop/messages", events=["user_send_message"])
    await api.client.patch(f"/endpoints/{messages['id']}", json={"enabled": False})
    bobs = await create(api, url=f"{CLOSED}/100%_bob", events=["user_send_message"], owner="bob")

    async def ids(**params: Any) -> list[str]:
        response = await api.client.get("/endpoints", params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert await ids() == [bobs["id"], messages["id"], everything["id"], registered["id"]]
    assert await ids(event="user_registered") == [everything["id"], registered["id"]]
    assert await ids(enabled="false") == [messages["id"]]
    assert await ids(url_contains="SHOP") == [messages["id"], registered["id"]]
    assert await ids(url_contains="%_") == [bobs["id"]]  # wildcards are plain characters
    assert await ids(owner="bob") == [bobs["id"]]
    assert await ids(owner="nobody") == []
    as_bob = await api.client.get("/endpoints", headers={"Authorization": f"Bearer {token}"})
    assert [e["id"] for e in as_bob.json()["data"]] == [bobs["id"]]


async def test_the_list_pages_newest_first_with_a_cursor(api: RunningApp) -> None:
    made = [(await create(api, url=f"{CLOSED}/{n}", events=["*"]))["id"] for n in range(5)]

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await api.client.get("/endpoints", params=params)).json()
        seen += [e["id"] for e in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == made[::-1]
