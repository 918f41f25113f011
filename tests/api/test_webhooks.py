"""POST /webhook, DELETE /webhook and GET /webhooks."""

import asyncio
import json

import pytest

EVENTS = ["user_registered", "user_send_message", "webhook_disabled"]
HOOK = "http://127.0.0.1:9/hook"
OTHER = "http://127.0.0.1:9/other"


async def subscribe(client, event, url):
    response = await client.post("/webhook", json={"event": event, "url": url})
    assert response.status_code == 201, response.text
    return response.json()


async def unsubscribe(client, event, url):
    return await client.request("DELETE", "/webhook", json={"event": event, "url": url})


async def listing(client, **params):
    response = await client.get("/webhooks", params=params)
    assert response.status_code == 200, response.text
    return {entry["event"]: entry["urls"] for entry in response.json()["webhooks"]}


async def test_registering_answers_201_with_the_endpoint_id_and_secret(api):
    response = await api.client.post("/webhook", json={"event": "user_registered", "url": HOOK})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"message", "url", "event", "id", "secret"}
    assert body["message"] == "Webhook registered successfully"
    assert (body["url"], body["event"]) == (HOOK, "user_registered")
    assert body["id"].startswith("wh_")
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > len("whsec_") + 20


async def test_different_urls_are_different_endpoints(api):
    first = await subscribe(api.client, "user_registered", HOOK)
    second = await subscribe(api.client, "user_registered", OTHER)

    assert first["id"] != second["id"]
    assert first["secret"] != second["secret"]


async def test_one_url_for_several_events_is_one_endpoint_with_one_secret(api):
    first = await subscribe(api.client, "user_registered", HOOK)
    second = await subscribe(api.client, "user_send_message", HOOK)
    third = await subscribe(api.client, "*", HOOK)

    assert first["id"] == second["id"] == third["id"]
    assert first["secret"] == second["secret"] == third["secret"]
    assert (second["event"], third["event"]) == ("user_send_message", "*")


async def test_concurrent_registrations_of_one_url_make_one_endpoint(api):
    responses = await asyncio.gather(
        *(
            api.client.post("/webhook", json={"event": event, "url": HOOK})
            for event in ["user_registered", "user_send_message", "webhook_disabled", "*"]
        )
    )

    assert [r.status_code for r in responses] == [201] * 4
    assert len({(r.json()["id"], r.json()["secret"]) for r in responses}) == 1
    listed = await listing(api.client)
    assert [listed[event] for event in EVENTS] == [[HOOK]] * 3


async def test_concurrent_registrations_of_one_subscription_make_one(api):
    responses = await asyncio.gather(
        *(
            api.client.post("/webhook", json={"event": event, "url": HOOK})
            for event in ["user_registered", "USER_REGISTERED", "User_Registered"]
        )
    )

    assert sorted(r.status_code for r in responses) == [201, 409, 409]
    assert (await listing(api.client))["user_registered"] == [HOOK]


@pytest.mark.parametrize("spelling", ["User_Registered", " USER_REGISTERED "])
async def test_event_names_are_case_insensitive_and_stored_lowercase(api, spelling):
    body = await subscribe(api.client, spelling, HOOK)

    assert body["event"] == "user_registered"
    assert (await listing(api.client))["user_registered"] == [HOOK]


@pytest.mark.parametrize("event", ["user_deleted", "ping", "Nope"])
async def test_registering_for_an_unknown_event_is_404(api, event):
    response = await api.client.post("/webhook", json={"event": event, "url": HOOK})

    assert response.status_code == 404
    assert response.json() == {"detail": f"Event '{event}' not found"}


async def test_registering_the_same_url_and_event_twice_is_409(api):
    await subscribe(api.client, "user_registered", HOOK)

    response = await api.client.post("/webhook", json={"event": "user_registered", "url": HOOK})

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Webhook URL '{HOOK}' already exists for event 'user_registered'"
    }


async def test_a_duplicate_in_another_case_of_the_event_is_409_naming_it_lowercase(api):
    await subscribe(api.client, "user_registered", HOOK)

    response = await api.client.post("/webhook", json={"event": "USER_Registered", "url": HOOK})

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Webhook URL '{HOOK}' already exists for event 'user_registered'"
    }
    assert (await listing(api.client))["user_registered"] == [HOOK]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("ftp://127.0.0.1/hook", "scheme", id="ftp-scheme"),
        pytest.param("javascript:alert(1)", "scheme", id="javascript-scheme"),
        pytest.param("http://", "host", id="no-host"),
        pytest.param("http://user:pass@127.0.0.1/hook", "credentials", id="user-and-password"),
        pytest.param("http://user@127.0.0.1/hook", "credentials", id="user-only"),
        pytest.param("http://127.0.0.1/a hook", "whitespace", id="space-inside"),
        pytest.param("http://127.0.0.1/a\thook", "whitespace", id="tab-inside"),
        pytest.param("http://127.0.0.1:99999/hook", "port", id="port-out-of-range"),
    ],
)
async def test_a_bad_url_is_422_with_the_reason(api, url, reason):
    response = await api.client.post("/webhook", json={"event": "user_registered", "url": url})

    assert response.status_code == 422
    assert reason in json.dumps(response.json()["detail"]).lower()
    assert await listing(api.client) == {event: [] for event in EVENTS}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"event": "user_registered"}, id="no-url"),
        pytest.param({"url": HOOK}, id="no-event"),
        pytest.param({"event": "user_registered", "url": ""}, id="empty-url"),
        pytest.param({"event": "user_registered", "url": HOOK, "x": 1}, id="unknown-field"),
    ],
)
async def test_a_malformed_registration_is_422(api, body):
    response = await api.client.post("/webhook", json=body)

    assert response.status_code == 422


async def test_removing_a_subscription_answers_204_and_unlists_it(api):
    await subscribe(api.client, "user_registered", HOOK)
    await subscribe(api.client, "user_registered", OTHER)

    response = await unsubscribe(api.client, "user_registered", HOOK)

    assert response.status_code == 204
    assert response.content == b""
    assert (await listing(api.client))["user_registered"] == [OTHER]


async def test_removing_one_event_keeps_the_urls_other_subscriptions(api):
    await subscribe(api.client, "user_registered", HOOK)
    await subscribe(api.client, "user_send_message", HOOK)

    response = await unsubscribe(api.client, "USER_REGISTERED", HOOK)

    assert response.status_code == 204
    assert await listing(api.client) == {
        "user_registered": [],
        "user_send_message": [HOOK],
        "webhook_disabled": [],
    }


async def test_removing_from_an_unknown_event_is_404(api):
    response = await unsubscribe(api.client, "user_deleted", HOOK)

    assert response.status_code == 404
    assert response.json() == {"detail": "Event 'user_deleted' not found"}


async def test_removing_an_unregistered_url_is_404(api):
    await subscribe(api.client, "user_registered", OTHER)

    response = await unsubscribe(api.client, "user_registered", HOOK)

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Webhook URL '{HOOK}' not found for event 'user_registered'"
    }


async def test_removing_a_url_from_an_event_it_is_not_subscribed_to_is_404(api):
    await subscribe(api.client, "user_registered", HOOK)

    response = await unsubscribe(api.client, "user_send_message", HOOK)

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Webhook URL '{HOOK}' not found for event 'user_send_message'"
    }
    assert (await listing(api.client))["user_registered"] == [HOOK]


async def test_removing_twice_is_404_the_second_time(api):
    await subscribe(api.client, "user_registered", HOOK)
    assert (await unsubscribe(api.client, "user_registered", HOOK)).status_code == 204

    response = await unsubscribe(api.client, "user_registered", HOOK)

    assert response.status_code == 404


async def test_a_removed_subscription_can_be_registered_again(api):
    await subscribe(api.client, "user_registered", HOOK)
    await unsubscribe(api.client, "user_registered", HOOK)

    body = await subscribe(api.client, "user_registered", HOOK)

    assert body["event"] == "user_registered"
    assert (await listing(api.client))["user_registered"] == [HOOK]


async def test_every_event_is_listed_even_without_urls(api):
    response = await api.client.get("/webhooks")

    assert response.status_code == 200
    assert response.json() == {"webhooks": [{"event": event, "urls": []} for event in EVENTS]}


async def test_the_listing_shows_each_events_urls_in_registration_order(api):
    await subscribe(api.client, "user_registered", OTHER)
    await subscribe(api.client, "user_registered", HOOK)
    await subscribe(api.client, "user_send_message", HOOK)

    assert await listing(api.client) == {
        "user_registered": [OTHER, HOOK],
        "user_send_message": [HOOK],
        "webhook_disabled": [],
    }


@pytest.mark.parametrize("spelling", ["user_send_message", "User_SEND_Message"])
async def test_the_event_filter_is_case_insensitive(api, spelling):
    await subscribe(api.client, "user_registered", OTHER)
    await subscribe(api.client, "user_send_message", HOOK)

    response = await api.client.get("/webhooks", params={"event_filter": spelling})

    assert response.status_code == 200
    assert response.json() == {"webhooks": [{"event": "user_send_message", "urls": [HOOK]}]}


@pytest.mark.parametrize("event_filter", ["ping", "Nope"])
async def test_filtering_on_an_unknown_event_is_404(api, event_filter):
    response = await api.client.get("/webhooks", params={"event_filter": event_filter})

    assert response.status_code == 404
    assert response.json() == {"detail": f"Event '{event_filter}' not found."}


async def test_filtering_on_an_event_without_urls_is_404(api):
    await subscribe(api.client, "user_registered", HOOK)

    response = await api.client.get("/webhooks", params={"event_filter": "webhook_disabled"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Event 'webhook_disabled' has no registered URLs."}


async def test_filtering_on_an_event_whose_last_url_was_removed_is_404(api):
    await subscribe(api.client, "user_registered", HOOK)
    await unsubscribe(api.client, "user_registered", HOOK)

    response = await api.client.get("/webhooks", params={"event_filter": "user_registered"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Event 'user_registered' has no registered URLs."}


@pytest.mark.parametrize(
    ("event", "url"),
    [
        pytest.param("user_registered", "ftp://127.0.0.1/hook", id="bad-url"),
        pytest.param("user_deleted", OTHER, id="unknown-event"),
    ],
)
async def test_a_key_reused_with_a_body_that_would_be_refused_is_409_for_the_reuse(api, event, url):
    headers = {"Idempotency-Key": "key-1"}
    first = await api.client.post(
        "/webhook", json={"event": "user_registered", "url": HOOK}, headers=headers
    )
    assert first.status_code == 201, first.text

    reused = await api.client.post("/webhook", json={"event": event, "url": url}, headers=headers)

    assert reused.status_code == 409
    assert "different request body" in reused.json()["detail"]
    assert await listing(api.client) == {
        "user_registered": [HOOK],
        "user_send_message": [],
        "webhook_disabled": [],
    }
