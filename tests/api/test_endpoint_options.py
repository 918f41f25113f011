"""Per-endpoint options through the API: set, shown, changed, checked; a filter
decides, when an event is stored, whether the endpoint gets a delivery of it."""

from typing import Any

import pytest
from sqlalchemy import func, select

from hookline.models import Delivery, Endpoint
from tests.support.app import RunningApp

CLOSED = "http://127.0.0.1:9"
TO_BOB = {"data.recipient": {"$in": ["bob", "carol"]}, "data.subject": {"$ne": ""}}


async def create(api: RunningApp, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/endpoints", json={"url": f"{CLOSED}/x", "events": ["*"], **body}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries_of(api: RunningApp, endpoint_id: str) -> list[dict[str, Any]]:
    listed = await api.client.get(f"/endpoints/{endpoint_id}/deliveries")
    found: list[dict[str, Any]] = listed.json()["data"]
    return found


async def test_the_options_are_set_shown_and_changed(api: RunningApp) -> None:
    created = await create(api, filter=TO_BOB, rate_limit=2.5, ordered=True)
    read = (await api.client.get(f"/endpoints/{created['id']}")).json()
    patched = await api.client.patch(
        f"/endpoints/{created['id']}", json={"filter": None, "rate_limit": None, "ordered": False}
    )

    assert (read["filter"], read["rate_limit"], read["ordered"]) == (TO_BOB, 2.5, True)
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["filter"], body["rate_limit"], body["ordered"]) == (None, None, False)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"filter": {"data.x": {"$regex": "a"}}}, "Invalid filter at data.x.$regex"),
        ({"filter": {"$or": [{"data.x": 1}, {"data.y": {"$in": 2}}]}}, "at $or[1].data.y.$in"),
        ({"filter": {"payload": 1}}, "Invalid filter at payload"),
        ({"rate_limit": 0}, "greater than 0"),
        ({"rate_limit": -1}, "greater than 0"),
        ({"ordered": "yes"}, "valid boolean"),
        ({"ordered": None}, "ordered"),
    ],
)
async def test_a_bad_option_is_422_saying_where_and_changes_nothing(
    api: RunningApp, options: dict[str, Any], says: str
) -> None:
    existing = await create(api)
    created = await api.client.post(
        "/endpoints", json={"url": f"{CLOSED}/new", "events": ["*"], **options}
    )
    patched = await api.client.patch(f"/endpoints/{existing['id']}", json=options)

    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert says in str(response.json()["detail"])
    async with api.app.state.test_db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Endpoint)) == 1
    read = (await api.client.get(f"/endpoints/{existing['id']}")).json()
    assert (read["filter"], read["rate_limit"], read["ordered"]) == (None, None, False)


async def test_a_filter_decides_which_events_get_a_delivery_when_they_are_stored(
    api: RunningApp,
) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        await api.client.post("/users", json={"username": name})
    filtered = await create(api, filter=TO_BOB, events=["user_send_message"])
    unfiltered = await create(api, url=f"{CLOSED}/all", events=["user_send_message"])

    sent = []
    for recipient, subject in (("bob", "hi"), ("carol", ""), ("dave", "hi"), ("carol", "yo")):
        response = await api.client.post(
            "/users/messages",
            json={"sender": "alice", "recipient": recipient, "subject": subject, "message": "m"},
        )
        assert response.status_code == 201, response.text
        sent.append(response.json()["id"])

    events = {
        d["event_id"]: d for d in await deliveries_of(api, filtered["id"])
    }  # one per matching event
    assert len(events) == 2
    assert len(await deliveries_of(api, unfiltered["id"])) == 4
    async with api.app.state.test_db.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(Delivery))
    assert total == 6  # no delivery row for an event that does not match


async def test_a_filter_that_cannot_be_evaluated_does_not_match_and_never_fails_the_request(
    api: RunningApp,
) -> None:
    filtered = await create(api, filter={"data.total": {"$gt": 10}}, events=["user_registered"])

    response = await api.client.post("/users", json={"username": "erin"})  # no data.total

    assert response.status_code == 201
    assert await deliveries_of(api, filtered["id"]) == []


async def test_a_filter_on_the_event_name_and_with_combinators(api: RunningApp) -> None:
    chosen = await create(
        api,
        filter={"$or": [{"event": "user_registered"}, {"$not": {"data.recipient": "bob"}}]},
    )
    await api.client.post("/users", json={"username": "frank"})
    await api.client.post("/users", json={"username": "bob"})
    for recipient in ("bob", "frank"):
        await api.client.post(
            "/users/messages",
            json={
                "sender": "frank" if recipient == "bob" else "bob",
                "recipient": recipient,
                "message": "m",
            },
        )

    names = []
    for delivery in await deliveries_of(api, chosen["id"]):
        names.append((await api.client.get(f"/deliveries/{delivery['id']}")).json()["event"])
    assert sorted(names) == ["user_registered", "user_registered", "user_send_message"]
