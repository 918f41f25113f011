"""DELETE /webhook cancels pending deliveries only for events the URL no longer subscribes to."""

from sqlalchemy import select

from hookline.models import Delivery, Event


async def statuses_by_event(api) -> dict[str, set[str]]:
    async with api.app.state.test_db.sessions() as session:
        rows = await session.execute(
            select(Event.event, Delivery.status).join(Event, Event.id == Delivery.event_id)
        )
        found: dict[str, set[str]] = {}
        for event, status in rows:
            found.setdefault(event, set()).add(status)
        return found


async def subscribe(api, event: str, url: str) -> None:
    response = await api.client.post("/webhook", json={"event": event, "url": url})
    assert response.status_code == 201, response.text


async def unsubscribe(api, event: str, url: str) -> None:
    response = await api.client.request("DELETE", "/webhook", json={"event": event, "url": url})
    assert response.status_code == 204, response.text


async def make_traffic(api) -> None:
    for name in ("alice", "bob"):
        assert (await api.client.post("/users", json={"username": name})).status_code == 201
    message = {"sender": "alice", "recipient": "bob", "subject": "s", "message": "m"}
    assert (await api.client.post("/users/messages", json=message)).status_code == 201


async def test_unsubscribing_one_event_cancels_only_that_events_pending_deliveries(api):
    url = "https://receiver.example/hook"
    await subscribe(api, "user_registered", url)
    await subscribe(api, "user_send_message", url)
    await make_traffic(api)

    await unsubscribe(api, "user_registered", url)

    assert await statuses_by_event(api) == {
        "user_registered": {"cancelled"},
        "user_send_message": {"pending"},
    }


async def test_pending_deliveries_still_covered_by_a_wildcard_are_kept(api):
    url = "https://receiver.example/hook"
    await subscribe(api, "*", url)
    await subscribe(api, "user_registered", url)
    await make_traffic(api)

    await unsubscribe(api, "user_registered", url)
    assert await statuses_by_event(api) == {
        "user_registered": {"pending"},
        "user_send_message": {"pending"},
    }

    await subscribe(api, "user_registered", url)
    await unsubscribe(api, "*", url)
    assert await statuses_by_event(api) == {
        "user_registered": {"pending"},
        "user_send_message": {"cancelled"},
    }
