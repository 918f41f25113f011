"""Webhook endpoints by id: read, change, remove, secrets, ping, creation ping.

Where something is sent, a real receiver on 127.0.0.1 gets it; the `api` fixture runs no
worker, so what it publishes stays pending.
"""

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookline.config import Settings
from hookline.models import Endpoint, utcnow
from tests.delivery.helpers import headers_of, register_user, subscribe, wait_until
from tests.support.app import RunningApp, running_app
from tests.support.receiver import Received, Receiver

EVENTS = ["user_registered", "user_send_message", "webhook_disabled"]
HOOK = "http://127.0.0.1:9/hook"
OTHER = "http://127.0.0.1:9/other"
UNKNOWN = "wh_doesnotexist"
ENDPOINT_FIELDS = {
    "id",
    "url",
    "owner",
    "filter",
    "rate_limit",
    "ordered",
    "description",
    "events",
    "headers",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "failing_since",
    "created_at",
    "stats",
}
NO_DELIVERIES = {"pending": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
# Longer than the test retry schedule (0.2 s, then 0.4 s): a retry would have come by then.
RETRIES_WOULD_HAVE_COME = 1.0


def closed_port_url() -> str:
    """A loopback URL nothing listens on: the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def endpoint_of(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    response = await client.get(f"/webhooks/{endpoint_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch(client: httpx.AsyncClient, endpoint_id: str, body: Any) -> httpx.Response:
    return await client.patch(f"/webhooks/{endpoint_id}", json=body)


async def patched(client: httpx.AsyncClient, endpoint_id: str, body: Any) -> dict[str, Any]:
    response = await patch(client, endpoint_id, body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def listing(client: httpx.AsyncClient) -> dict[str, list[str]]:
    """GET /webhooks as {event: urls}."""
    response = await client.get("/webhooks")
    assert response.status_code == 200, response.text
    return {entry["event"]: entry["urls"] for entry in response.json()["webhooks"]}


async def secret_of(client: httpx.AsyncClient, endpoint_id: str) -> str:
    response = await client.get(f"/webhooks/{endpoint_id}/secret")
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


async def rotate(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    response = await client.post(f"/webhooks/{endpoint_id}/secret/rotate")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ping(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    response = await client.post(f"/webhooks/{endpoint_id}/ping")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def deliveries_listed(client: httpx.AsyncClient, endpoint_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/webhooks/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def stats_become(
    client: httpx.AsyncClient, endpoint_id: str, **counts: int
) -> dict[str, Any]:
    """Wait until the endpoint's delivery stats are `counts` (the rest zero); return it."""
    wanted = NO_DELIVERIES | counts

    async def probe() -> dict[str, Any] | None:
        endpoint = await endpoint_of(client, endpoint_id)
        return endpoint if endpoint["stats"] == wanted else None

    return await wait_until(probe, timeout=10, what=f"stats {wanted} of {endpoint_id}")


async def send_message(client: httpx.AsyncClient, sender: str, recipient: str) -> None:
    message = {"sender": sender, "recipient": recipient, "subject": "hi", "message": "hello"}
    response = await client.post("/users/messages", json=message)
    assert response.status_code == 201, response.text


def envelope_of(received: Received) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(received.body)
    return payload


def signatures_of(received: Received) -> list[str]:
    return headers_of(received)["webhook-signature"].split(" ")


def seconds_from_now(stamp: str) -> float:
    return (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()


# GET /webhooks/{id}


async def test_get_shows_exactly_the_endpoint_fields_and_never_the_secret(
    api: RunningApp,
) -> None:
    registered = await subscribe(api.client, HOOK, "user_send_message")
    await subscribe(api.client, HOOK, "user_registered")
    await register_user(api.client, "alice")
    await register_user(api.client, "bob")

    response = await api.client.get(f"/webhooks/{registered['id']}")

    assert response.status_code == 200
    assert registered["secret"] not in response.text
    assert "whsec_" not in response.text
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS
    assert (body["id"], body["url"]) == (registered["id"], HOOK)
    assert body["events"] == ["user_registered", "user_send_message"]
    assert (body["description"], body["headers"]) == (None, {})
    assert (body["owner"], body["filter"], body["rate_limit"], body["ordered"]) == (
        None,
        None,
        None,
        False,
    )
    assert (body["enabled"], body["disabled_reason"], body["disabled_at"]) == (True, None, None)
    assert body["failing_since"] is None
    assert abs(seconds_from_now(body["created_at"])) < 60
    # No worker runs: both registrations are waiting to be sent.
    assert body["stats"] == NO_DELIVERIES | {"pending": 2}


async def test_get_counts_succeeded_and_failed_deliveries(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/broken", [500])
    async with running_app(settings, run_worker=True) as running:
        healthy = await subscribe(running.client, receiver.url("/ok"))
        broken = await subscribe(running.client, receiver.url("/broken"))
        for name in ("alice", "bob", "carol"):
            await register_user(running.client, name)

        await stats_become(running.client, healthy["id"], succeeded=3)
        # Each failed after its three attempts (the first and two retries).
        await stats_become(running.client, broken["id"], failed=3)

    assert len(receiver.at("/ok")) == 3
    assert len(receiver.at("/broken")) == 9


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/webhooks/{UNKNOWN}"),
        ("PATCH", f"/webhooks/{UNKNOWN}"),
        ("DELETE", f"/webhooks/{UNKNOWN}"),
        ("GET", f"/webhooks/{UNKNOWN}/secret"),
        ("POST", f"/webhooks/{UNKNOWN}/secret/rotate"),
        ("POST", f"/webhooks/{UNKNOWN}/ping"),
        ("GET", f"/webhooks/{UNKNOWN}/deliveries"),
    ],
)
async def test_an_unknown_webhook_id_is_404_with_a_detail(
    api: RunningApp, method: str, path: str
) -> None:
    await subscribe(api.client, HOOK)
    body = {"description": "x"} if method == "PATCH" else None

    response = await api.client.request(method, path, json=body)

    assert response.status_code == 404
    assert set(response.json()) == {"detail"}
    assert UNKNOWN in response.json()["detail"]


# PATCH /webhooks/{id}: url


async def test_patching_the_url_moves_the_endpoint(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)

    answer = await patched(api.client, registered["id"], {"url": OTHER})

    assert (answer["id"], answer["url"]) == (registered["id"], OTHER)
    assert (await endpoint_of(api.client, registered["id"]))["url"] == OTHER
    assert (await listing(api.client))["user_registered"] == [OTHER]
    assert await secret_of(api.client, registered["id"]) == registered["secret"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("ftp://127.0.0.1/hook", "scheme", id="ftp"),
        pytest.param("javascript:alert(1)", "scheme", id="javascript"),
        pytest.param("http://user:pass@127.0.0.1/hook", "credentials", id="credentials"),
    ],
)
async def test_patching_to_a_bad_url_is_422_with_the_reason_and_changes_nothing(
    api: RunningApp, url: str, reason: str
) -> None:
    registered = await subscribe(api.client, HOOK)

    response = await patch(api.client, registered["id"], {"url": url, "description": "moved"})

    assert response.status_code == 422
    assert reason in json.dumps(response.json()["detail"]).lower()
    endpoint = await endpoint_of(api.client, registered["id"])
    assert (endpoint["url"], endpoint["description"]) == (HOOK, None)


async def test_patching_an_unknown_webhook_is_404_before_its_new_url_is_judged(
    api: RunningApp,
) -> None:
    response = await patch(api.client, UNKNOWN, {"url": "ftp://127.0.0.1/hook"})

    assert response.status_code == 404
    assert UNKNOWN in response.json()["detail"]


async def test_patching_to_a_url_another_webhook_has_is_409_and_changes_nothing(
    api: RunningApp,
) -> None:
    registered = await subscribe(api.client, HOOK)
    await subscribe(api.client, OTHER, "user_send_message")

    response = await patch(
        api.client, registered["id"], {"url": OTHER, "events": ["webhook_disabled"]}
    )

    assert response.status_code == 409
    assert OTHER in response.json()["detail"]
    endpoint = await endpoint_of(api.client, registered["id"])
    assert (endpoint["url"], endpoint["events"]) == (HOOK, ["user_registered"])
    listed = await listing(api.client)
    assert (listed["user_registered"], listed["user_send_message"]) == ([HOOK], [OTHER])


async def test_a_patch_failing_late_undoes_the_url_and_events_it_changed_first(
    api: RunningApp,
) -> None:
    registered = await subscribe(api.client, HOOK)
    body = {"url": OTHER, "events": ["user_send_message"], "headers": {"Host": "evil"}}

    response = await patch(api.client, registered["id"], body)

    assert response.status_code == 422
    endpoint = await endpoint_of(api.client, registered["id"])
    assert (endpoint["url"], endpoint["events"], endpoint["headers"]) == (
        HOOK,
        ["user_registered"],
        {},
    )


async def test_concurrent_moves_to_one_url_leave_it_to_one_webhook_and_409_the_others(
    api: RunningApp,
) -> None:
    movers = [await subscribe(api.client, f"{HOOK}/{n}") for n in range(4)]
    target = f"{HOOK}/target"

    responses = await asyncio.gather(
        *(patch(api.client, mover["id"], {"url": target}) for mover in movers)
    )

    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    conflicts = [r.json() for r in responses if r.status_code == 409]
    assert all(body == {"detail": f"Webhook URL '{target}' already exists"} for body in conflicts)
    [moved] = [r.json()["id"] for r in responses if r.status_code == 200]
    urls = {m["id"]: (await endpoint_of(api.client, m["id"]))["url"] for m in movers}
    assert urls == {m["id"]: target if m["id"] == moved else m["url"] for m in movers}


# PATCH /webhooks/{id}: events


async def test_patching_events_replaces_the_subscriptions(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)
    await subscribe(api.client, OTHER)

    answer = await patched(
        api.client, registered["id"], {"events": ["User_Send_Message", "webhook_disabled"]}
    )

    assert answer["events"] == ["user_send_message", "webhook_disabled"]
    assert await listing(api.client) == {
        "user_registered": [OTHER],
        "user_send_message": [HOOK],
        "webhook_disabled": [HOOK],
    }


async def test_patching_an_unknown_event_is_404_and_changes_nothing(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)

    response = await patch(
        api.client, registered["id"], {"url": OTHER, "events": ["user_send_message", "nope"]}
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Event 'nope' not found"}
    endpoint = await endpoint_of(api.client, registered["id"])
    assert (endpoint["url"], endpoint["events"]) == (HOOK, ["user_registered"])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"events": []}, id="no-events"),
        pytest.param({"events": None}, id="null-events"),
        pytest.param({"url": None}, id="null-url"),
        pytest.param({"enabled": None}, id="null-enabled"),
        pytest.param({"secret": "whsec_AAAA"}, id="unknown-field"),
        pytest.param({"description": "x", "name": "y"}, id="unknown-field-beside-a-known-one"),
    ],
)
async def test_a_patch_the_schema_refuses_is_422_and_changes_nothing(
    api: RunningApp, body: dict[str, Any]
) -> None:
    registered = await subscribe(api.client, HOOK)
    before = await endpoint_of(api.client, registered["id"])

    response = await patch(api.client, registered["id"], body)

    assert response.status_code == 422
    assert await endpoint_of(api.client, registered["id"]) == before
    assert await secret_of(api.client, registered["id"]) == registered["secret"]


async def test_concurrent_patches_adding_the_same_events_both_succeed(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)
    wanted = ["user_registered", "user_send_message", "webhook_disabled"]

    responses = await asyncio.gather(
        *(patch(api.client, registered["id"], {"events": wanted}) for _ in range(4))
    )

    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert (await endpoint_of(api.client, registered["id"]))["events"] == wanted
    assert await listing(api.client) == {event: [HOOK] for event in EVENTS}


async def test_dropping_an_event_cancels_that_endpoints_pending_deliveries_of_it(
    api: RunningApp,
) -> None:
    hook = await subscribe(api.client, HOOK, "user_registered")
    await subscribe(api.client, HOOK, "user_send_message")
    other = await subscribe(api.client, OTHER, "user_registered")
    await register_user(api.client, "alice")
    await register_user(api.client, "bob")
    await send_message(api.client, "alice", "bob")

    answer = await patched(api.client, hook["id"], {"events": ["user_send_message"]})

    assert answer["stats"] == NO_DELIVERIES | {"pending": 1, "cancelled": 2}
    statuses = {(d["event"], d["status"]) for d in await deliveries_listed(api.client, hook["id"])}
    assert statuses == {("user_registered", "cancelled"), ("user_send_message", "pending")}
    # Another endpoint's deliveries of the dropped event are not touched.
    assert (await endpoint_of(api.client, other["id"]))["stats"] == NO_DELIVERIES | {"pending": 2}


# PATCH /webhooks/{id}: description


async def test_a_description_is_set_and_cleared_with_null(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)

    set_answer = await patched(api.client, registered["id"], {"description": "billing — prod"})
    shown = await endpoint_of(api.client, registered["id"])
    cleared = await patched(api.client, registered["id"], {"description": None})

    assert set_answer["description"] == shown["description"] == "billing — prod"
    assert cleared["description"] is None
    assert (await endpoint_of(api.client, registered["id"]))["description"] is None


async def test_a_patch_without_description_keeps_it(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)
    await patched(api.client, registered["id"], {"description": "billing"})

    answer = await patched(api.client, registered["id"], {"events": ["user_send_message"]})

    assert answer["description"] == "billing"


# PATCH /webhooks/{id}: headers

CUSTOM = {"Authorization": "Bearer s3cr3t-token", "X-Api-Key": "key-123", "X-Team": "payments"}


@pytest.mark.parametrize("cleared", [None, {}], ids=["null", "empty"])
async def test_custom_headers_arrive_with_the_next_delivery_until_cleared(
    settings: Settings, receiver: Receiver, cleared: dict[str, str] | None
) -> None:
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        answer = await patched(running.client, registered["id"], {"headers": CUSTOM})
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

        after_clearing = await patched(running.client, registered["id"], {"headers": cleared})
        await register_user(running.client, "bob")
        await receiver.wait_for(2, path="/hook", timeout=5)

    assert answer["headers"] == CUSTOM
    assert after_clearing["headers"] == {}
    with_headers, without = receiver.at("/hook")
    got = headers_of(with_headers)
    assert {name: got.get(name.lower()) for name in CUSTOM} == CUSTOM
    assert Webhook(registered["secret"]).verify(with_headers.body, with_headers.headers)
    assert not {name.lower() for name in CUSTOM} & set(headers_of(without))
    assert Webhook(registered["secret"]).verify(without.body, without.headers)


@pytest.mark.parametrize(
    "name",
    [
        "content-type",
        "Content-Length",
        "host",
        "user-agent",
        "webhook-id",
        "Webhook-Signature",
        "webhook-anything",
        "transfer-encoding",
        "proxy-authorization",
    ],
)
async def test_a_reserved_header_name_is_422_and_changes_nothing(
    api: RunningApp, name: str
) -> None:
    registered = await subscribe(api.client, HOOK)
    await patched(api.client, registered["id"], {"headers": {"X-Team": "payments"}})

    response = await patch(api.client, registered["id"], {"headers": {"X-Ok": "1", name: "v"}})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert name in detail
    assert "reserved" in detail
    assert (await endpoint_of(api.client, registered["id"]))["headers"] == {"X-Team": "payments"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X Team": "v"}, id="space-in-name"),
        pytest.param({"X-Team:": "v"}, id="colon-in-name"),
        pytest.param({"": "v"}, id="empty-name"),
        pytest.param({"X" * 65: "v"}, id="65-char-name"),
        pytest.param({"X-Team": "a\r\nX-Injected: 1"}, id="crlf-in-value"),
        pytest.param({"X-Team": "a\nb"}, id="lf-in-value"),
        pytest.param({"X-Team": "a\rb"}, id="cr-in-value"),
        pytest.param({"X-Team": "café"}, id="non-ascii-value"),
        pytest.param({f"X-Custom-{n}": str(n) for n in range(21)}, id="21-headers"),
    ],
)
async def test_invalid_custom_headers_are_422_and_change_nothing(
    api: RunningApp, headers: dict[str, str]
) -> None:
    registered = await subscribe(api.client, HOOK)
    await patched(api.client, registered["id"], {"headers": {"X-Team": "payments"}})

    response = await patch(api.client, registered["id"], {"headers": headers})

    assert response.status_code == 422
    assert set(response.json()) == {"detail"}
    assert (await endpoint_of(api.client, registered["id"]))["headers"] == {"X-Team": "payments"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer abc", "X-Api-Key": "k"}, id="auth-and-api-key"),
        pytest.param({"x" * 64: "v"}, id="64-char-name"),
        pytest.param({f"X-Custom-{n}": str(n) for n in range(20)}, id="20-headers"),
    ],
)
async def test_allowed_custom_headers_are_stored_as_given(
    api: RunningApp, headers: dict[str, str]
) -> None:
    registered = await subscribe(api.client, HOOK)

    answer = await patched(api.client, registered["id"], {"headers": headers})

    assert answer["headers"] == headers
    assert (await endpoint_of(api.client, registered["id"]))["headers"] == headers


# PATCH /webhooks/{id}: enabled


async def test_disabling_by_request_says_why_and_cancels_pending_deliveries(
    api: RunningApp,
) -> None:
    registered = await subscribe(api.client, HOOK)
    await register_user(api.client, "alice")
    await register_user(api.client, "bob")

    answer = await patched(api.client, registered["id"], {"enabled": False})

    assert (answer["enabled"], answer["disabled_reason"]) == (False, "disabled by request")
    assert abs(seconds_from_now(answer["disabled_at"])) < 60
    assert answer["stats"] == NO_DELIVERIES | {"cancelled": 2}
    assert await endpoint_of(api.client, registered["id"]) == answer
    # A disabled endpoint gets no new deliveries either.
    await register_user(api.client, "carol")
    assert (await endpoint_of(api.client, registered["id"]))["stats"] == answer["stats"]


async def test_enabling_clears_the_reason_the_date_and_the_failure_clock(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/broken", [500])
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/broken"))
        await register_user(running.client, "alice")
        failing = await stats_become(running.client, registered["id"], failed=1)
        disabled = await patched(running.client, registered["id"], {"enabled": False})

        enabled = await patched(running.client, registered["id"], {"enabled": True})

        shown = await endpoint_of(running.client, registered["id"])

    assert failing["failing_since"] is not None
    assert disabled["enabled"] is False
    assert disabled["disabled_at"] is not None
    assert enabled == shown
    assert enabled["enabled"] is True
    assert (enabled["disabled_reason"], enabled["disabled_at"]) == (None, None)
    assert enabled["failing_since"] is None


# DELETE /webhooks/{id}


async def test_deleting_hides_the_endpoint_and_cancels_its_pending_deliveries_but_keeps_them(
    api: RunningApp,
) -> None:
    hook = await subscribe(api.client, HOOK, "user_registered")
    await subscribe(api.client, HOOK, "webhook_disabled")
    other = await subscribe(api.client, OTHER, "user_registered")
    await register_user(api.client, "alice")
    [hook_delivery] = await deliveries_listed(api.client, hook["id"])
    [other_delivery] = await deliveries_listed(api.client, other["id"])

    response = await api.client.delete(f"/webhooks/{hook['id']}")

    assert response.status_code == 204
    assert response.content == b""
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/secret"),
        ("POST", "/secret/rotate"),
        ("POST", "/ping"),
        ("GET", "/deliveries"),
        ("POST", "/recover"),
    ]:
        body = {"PATCH": {"description": "x"}, "POST": {"since": "2000-01-01T00:00:00Z"}}
        for prefix in ("/webhooks", "/endpoints"):
            gone = await api.client.request(
                method, f"{prefix}/{hook['id']}{path}", json=body.get(method)
            )
            assert gone.status_code == 404, (method, prefix, path, gone.text)
            assert gone.json() == {"detail": f"Webhook '{hook['id']}' not found"}
    listed = await api.client.get("/endpoints")
    assert [e["id"] for e in listed.json()["data"]] == [other["id"]]
    assert await listing(api.client) == {
        "user_registered": [OTHER],
        "user_send_message": [],
        "webhook_disabled": [],
    }
    # Its delivery is still there, cancelled (it was pending), and its event shows it.
    kept = await api.client.get(f"/deliveries/{hook_delivery['id']}")
    assert kept.status_code == 200, kept.text
    assert (kept.json()["status"], kept.json()["endpoint_id"], kept.json()["url"]) == (
        "cancelled",
        hook["id"],
        HOOK,
    )
    assert kept.json()["finished_at"] is not None
    other_kept = await api.client.get(f"/deliveries/{other_delivery['id']}")
    assert (other_kept.status_code, other_kept.json()["status"]) == (200, "pending")
    event = (await api.client.get(f"/events/{hook_delivery['event_id']}")).json()
    assert sorted(d["endpoint_id"] for d in event["deliveries"]) == sorted(
        [hook["id"], other["id"]]
    )
    across = await api.client.get("/deliveries", params={"endpoint_id": hook["id"]})
    assert [d["id"] for d in across.json()["data"]] == [hook_delivery["id"]]
    retried = await api.client.post(f"/deliveries/{hook_delivery['id']}/retry")
    assert retried.status_code == 409, retried.text
    assert "deleted" in retried.json()["detail"]
    assert (await api.client.get(f"/deliveries/{hook_delivery['id']}")).json()["status"] == (
        "cancelled"
    )


async def test_a_deleted_endpoints_delivered_history_stays_readable_and_its_url_is_free(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/hook", [200], headers={"X-Receiver": "yes"})
    async with running_app(settings, run_worker=True) as running:
        client = running.client
        gone = await subscribe(client, receiver.url("/hook"))
        await register_user(client, "alice")
        await stats_become(client, gone["id"], succeeded=1)
        [delivered] = await deliveries_listed(client, gone["id"])

        assert (await client.delete(f"/endpoints/{gone['id']}")).status_code == 204
        detail = await client.get(f"/deliveries/{delivered['id']}")
        event = await client.get(f"/events/{delivered['event_id']}")
        # Its URL is free again, for the admin's original route and for a user's own.
        again = await subscribe(client, receiver.url("/hook"))
        bob = await register_user(client, "bob")
        users = await client.post(
            "/endpoints",
            json={"url": receiver.url("/hook"), "events": ["user_send_message"]},
            headers={"Authorization": f"Bearer {bob['token']}"},
        )
        await register_user(client, "carol")
        await stats_become(client, again["id"], succeeded=2)  # bob's and carol's

    assert detail.status_code == 200, detail.text
    kept = detail.json()
    assert (kept["status"], kept["endpoint_id"], kept["url"]) == (
        "succeeded",
        gone["id"],
        receiver.url("/hook"),
    )
    [attempt] = kept["attempts"]
    assert (attempt["status_code"], attempt["response_headers"]["x-receiver"]) == (200, "yes")
    assert attempt["request_headers"]["webhook-id"] == delivered["event_id"]
    assert event.status_code == 200, event.text
    assert [d["id"] for d in event.json()["deliveries"]] == [delivered["id"]]
    assert again["id"] != gone["id"]
    assert users.status_code == 201, users.text
    # The deleted endpoint got nothing more: alice's registration only.
    assert len(receiver.at("/hook")) == 3


async def test_an_attempt_in_flight_when_its_endpoint_is_deleted_is_recorded_and_cancelled(
    settings: Settings, receiver: Receiver
) -> None:
    # Held until the endpoint is deleted, then answered 200.
    receiver.hang("/slow")
    receiver.script("/slow", [200])
    async with running_app(settings, run_worker=True) as running:
        gone = await subscribe(running.client, receiver.url("/slow"))
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/slow", timeout=5)  # the attempt is out
        [delivery] = await deliveries_listed(running.client, gone["id"])

        deleted = await running.client.delete(f"/endpoints/{gone['id']}")
        receiver.release()

        async def recorded() -> dict[str, Any] | None:
            found: dict[str, Any] = (
                await running.client.get(f"/deliveries/{delivery['id']}")
            ).json()
            return found if found["attempts"] else None

        done = await wait_until(recorded, timeout=10, what="the attempt in flight recorded")
        await asyncio.sleep(RETRIES_WOULD_HAVE_COME)

    assert deleted.status_code == 204, deleted.text
    assert (done["status"], done["attempts_made"]) == ("cancelled", 1)
    assert [a["status_code"] for a in done["attempts"]] == [200]
    assert len(receiver.at("/slow")) == 1


async def test_a_users_deleted_endpoint_does_not_count_against_its_limit(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_app(make_settings(max_endpoints_per_user=1)) as running:
        bob = await register_user(running.client, "bob")
        as_bob = {"Authorization": f"Bearer {bob['token']}"}
        body = {"url": HOOK, "events": ["user_send_message"]}
        first = await running.client.post("/endpoints", json=body, headers=as_bob)
        assert first.status_code == 201, first.text
        full = await running.client.post("/endpoints", json={**body, "url": OTHER}, headers=as_bob)
        deleted = await running.client.delete(f"/endpoints/{first.json()['id']}", headers=as_bob)
        second = await running.client.post("/endpoints", json=body, headers=as_bob)

    assert full.status_code == 409, full.text
    assert deleted.status_code == 204, deleted.text
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]


async def test_nothing_more_is_sent_to_a_deleted_endpoint(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        gone = await subscribe(running.client, receiver.url("/gone"))
        other = await subscribe(running.client, receiver.url("/other"))
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/gone", timeout=5)
        await receiver.wait_for(1, path="/other", timeout=5)

        response = await running.client.delete(f"/webhooks/{gone['id']}")
        assert response.status_code == 204
        await register_user(running.client, "bob")
        # The other endpoint, subscribed to the same event, is the clock: when bob's
        # registration has reached it, it would have reached the deleted one too.
        await receiver.wait_for(2, path="/other", timeout=5)
        await stats_become(running.client, other["id"], succeeded=2)
        newest = (await running.client.get("/events", params={"limit": 1})).json()["data"]
        event = (await running.client.get(f"/events/{newest[0]['id']}")).json()

    assert len(receiver.at("/gone")) == 1
    assert envelope_of(receiver.at("/other")[1])["data"]["username"] == "bob"
    assert event["data"]["username"] == "bob"
    assert [d["endpoint_id"] for d in event["deliveries"]] == [other["id"]]


# Secrets and their rotation


async def test_the_secret_is_the_one_registration_returned(api: RunningApp) -> None:
    registered = await subscribe(api.client, HOOK)

    response = await api.client.get(f"/webhooks/{registered['id']}/secret")

    assert response.status_code == 200
    assert response.json() == {"secret": registered["secret"]}


async def test_rotating_gives_a_new_secret_while_the_old_one_stays_valid_for_24_hours(
    api: RunningApp,
) -> None:
    registered = await subscribe(api.client, HOOK)

    rotated = await rotate(api.client, registered["id"])

    assert set(rotated) == {"secret", "previous_valid_until"}
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != registered["secret"]
    assert abs(seconds_from_now(rotated["previous_valid_until"]) - 24 * 3600) < 60
    assert await secret_of(api.client, registered["id"]) == rotated["secret"]
    shown = (await api.client.get(f"/webhooks/{registered['id']}")).text
    assert registered["secret"] not in shown
    assert rotated["secret"] not in shown


async def test_during_a_rotation_deliveries_verify_with_the_new_and_the_old_secret(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        rotated = await rotate(running.client, registered["id"])
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    [received] = receiver.at("/hook")
    signatures = signatures_of(received)
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    payload = envelope_of(received)
    assert Webhook(rotated["secret"]).verify(received.body, received.headers) == payload
    assert Webhook(registered["secret"]).verify(received.body, received.headers) == payload


async def test_once_the_rotation_overlap_has_passed_only_the_new_secret_signs(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        rotated = await rotate(running.client, registered["id"])
        async with running.app.state.test_db.sessions.begin() as session:
            await session.execute(
                update(Endpoint)
                .where(Endpoint.id == registered["id"])
                .values(old_secret_until=utcnow() - timedelta(seconds=1))
            )
        await register_user(running.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    [received] = receiver.at("/hook")
    assert len(signatures_of(received)) == 1
    assert Webhook(rotated["secret"]).verify(received.body, received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(registered["secret"]).verify(received.body, received.headers)


async def test_a_ping_during_a_rotation_carries_both_signatures(
    api: RunningApp, receiver: Receiver
) -> None:
    registered = await subscribe(api.client, receiver.url("/hook"))
    rotated = await rotate(api.client, registered["id"])

    await ping(api.client, registered["id"])

    [received] = receiver.at("/hook")
    assert len(signatures_of(received)) == 2
    assert Webhook(rotated["secret"]).verify(received.body, received.headers)
    assert Webhook(registered["secret"]).verify(received.body, received.headers)


# POST /webhooks/{id}/ping


async def test_a_ping_sends_one_signed_ping_event_and_answers_with_the_attempt(
    api: RunningApp, receiver: Receiver
) -> None:
    registered = await subscribe(api.client, receiver.url("/hook"))

    answer = await ping(api.client, registered["id"])

    assert set(answer) == {"event_id", "delivery_id", "payload", "attempt"}
    [received] = receiver.at("/hook")
    payload = envelope_of(received)
    assert list(payload) == ["id", "event", "timestamp", "data"]
    assert (payload["id"], payload["event"]) == (answer["event_id"], "ping")
    assert payload == answer["payload"]
    assert headers_of(received)["webhook-id"] == answer["event_id"]
    assert Webhook(registered["secret"]).verify(received.body, received.headers) == payload
    attempt = answer["attempt"]
    assert (attempt["number"], attempt["status_code"], attempt["response_body"]) == (1, 200, "ok")
    assert (attempt["error_kind"], attempt["error"]) == (None, None)
    assert isinstance(attempt["duration_ms"], int)
    assert attempt["duration_ms"] >= 0
    assert abs(seconds_from_now(attempt["started_at"])) < 60


async def test_a_ping_answered_500_reports_an_http_status_error(
    api: RunningApp, receiver: Receiver
) -> None:
    receiver.script("/broken", [500], body="upstream down")
    registered = await subscribe(api.client, receiver.url("/broken"))

    attempt = (await ping(api.client, registered["id"]))["attempt"]

    assert (attempt["status_code"], attempt["error_kind"]) == (500, "http_status")
    assert attempt["response_body"] == "upstream down"
    assert attempt["error"]
    assert len(receiver.at("/broken")) == 1


async def test_a_ping_to_a_closed_port_reports_a_connection_error(api: RunningApp) -> None:
    registered = await subscribe(api.client, closed_port_url())

    attempt = (await ping(api.client, registered["id"]))["attempt"]

    assert (attempt["status_code"], attempt["error_kind"]) == (None, "connection_error")
    assert attempt["error"]


@pytest.mark.parametrize(("answered", "status"), [(200, "succeeded"), (500, "failed")])
async def test_a_ping_is_logged_as_an_event_and_a_delivery(
    api: RunningApp, receiver: Receiver, answered: int, status: str
) -> None:
    receiver.script("/hook", [answered])
    registered = await subscribe(api.client, receiver.url("/hook"))

    answer = await ping(api.client, registered["id"])

    events = await api.client.get("/events", params={"event": "ping"})
    assert events.status_code == 200
    [logged] = events.json()["data"]
    assert (logged["id"], logged["event"]) == (answer["event_id"], "ping")
    assert logged["data"] == answer["payload"]["data"]
    response = await api.client.get(f"/deliveries/{answer['delivery_id']}")
    assert response.status_code == 200
    delivery = response.json()
    assert (delivery["event_id"], delivery["event"]) == (answer["event_id"], "ping")
    assert (delivery["endpoint_id"], delivery["status"]) == (registered["id"], status)
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == answered
    assert attempt == answer["attempt"]
    assert attempt["trigger"] == "manual"  # sent by hand, at once
    assert attempt["request_headers"]["webhook-id"] == answer["event_id"]


async def test_a_disabled_endpoint_can_still_be_pinged(api: RunningApp, receiver: Receiver) -> None:
    registered = await subscribe(api.client, receiver.url("/hook"))
    await patched(api.client, registered["id"], {"enabled": False})

    answer = await ping(api.client, registered["id"])

    assert answer["attempt"]["status_code"] == 200
    [received] = receiver.at("/hook")
    assert envelope_of(received)["event"] == "ping"
    assert (await endpoint_of(api.client, registered["id"]))["enabled"] is False


# The ping a new endpoint gets when settings.ping_on_create is on


async def test_a_new_endpoint_gets_one_signed_ping_naming_it(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    async with running_app(make_settings(ping_on_create=True), run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        await receiver.wait_for(1, path="/hook", timeout=5)

    [received] = receiver.at("/hook")
    payload = envelope_of(received)
    assert list(payload) == ["id", "event", "timestamp", "data"]
    assert payload["event"] == "ping"
    assert payload["data"]["webhook_id"] == registered["id"]
    assert Webhook(registered["secret"]).verify(received.body, received.headers) == payload


async def test_subscribing_a_known_url_to_another_event_sends_no_second_ping(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    async with running_app(make_settings(ping_on_create=True), run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        await receiver.wait_for(1, path="/hook", timeout=5)
        await subscribe(running.client, receiver.url("/hook"), "user_send_message")
        # A new endpoint's ping, published after the second subscription, is the clock.
        await subscribe(running.client, receiver.url("/later"))
        await receiver.wait_for(1, path="/later", timeout=5)

    [received] = receiver.at("/hook")
    assert envelope_of(received)["data"]["webhook_id"] == registered["id"]


async def test_a_failing_receiver_gets_the_creation_ping_once_and_never_again(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    receiver.script("/broken", [500])
    async with running_app(make_settings(ping_on_create=True), run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/broken"))
        await receiver.wait_for(1, path="/broken", timeout=5)

        async def failed() -> list[dict[str, Any]]:
            found = await deliveries_listed(running.client, registered["id"])
            return found if found and found[0]["status"] == "failed" else []

        await wait_until(failed, timeout=10, what="the ping failed")
        await asyncio.sleep(RETRIES_WOULD_HAVE_COME)

        [delivery] = await deliveries_listed(running.client, registered["id"])
        endpoint = await endpoint_of(running.client, registered["id"])

    assert len(receiver.at("/broken")) == 1
    assert (delivery["event"], delivery["attempts_made"]) == ("ping", 1)
    # A probe: not among its failed deliveries, its failure clock not started.
    assert endpoint["stats"] == NO_DELIVERIES
    assert endpoint["failing_since"] is None


@pytest.mark.parametrize("answered", [500, 200])
async def test_pings_by_hand_count_neither_in_the_stats_nor_on_the_failure_clock(
    settings: Settings, receiver: Receiver, answered: int
) -> None:
    receiver.script("/hook", [answered])
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        await register_user(running.client, "alice")
        await stats_become(
            running.client, registered["id"], **{"succeeded" if answered == 200 else "failed": 1}
        )
        before = await endpoint_of(running.client, registered["id"])
        await running.client.post("/ping")  # to every URL: this one too
        await ping(running.client, registered["id"])

        after = await endpoint_of(running.client, registered["id"])
        listed = await deliveries_listed(running.client, registered["id"])

    assert [d["event"] for d in listed] == ["ping", "ping", "user_registered"]
    assert after["stats"] == before["stats"]
    assert after["failing_since"] == before["failing_since"]


async def test_no_ping_is_sent_on_creation_when_ping_on_create_is_off(
    settings: Settings, receiver: Receiver
) -> None:
    assert settings.ping_on_create is False
    async with running_app(settings, run_worker=True) as running:
        registered = await subscribe(running.client, receiver.url("/hook"))
        await register_user(running.client, "alice")
        await stats_become(running.client, registered["id"], succeeded=1)

        pings = await running.client.get("/events", params={"event": "ping"})

    assert pings.json()["data"] == []
    assert [envelope_of(r)["event"] for r in receiver.at("/hook")] == ["user_registered"]


# The wildcard subscription


async def test_a_wildcard_endpoint_gets_every_event_once(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_app(settings, run_worker=True) as running:
        everything = await subscribe(running.client, receiver.url("/all"), "*")
        victim = await subscribe(running.client, receiver.url("/victim"), "user_send_message")
        await register_user(running.client, "alice")
        await register_user(running.client, "bob")
        await send_message(running.client, "alice", "bob")
        await patched(running.client, victim["id"], {"enabled": False})

        await stats_become(running.client, everything["id"], succeeded=4)

    received = [envelope_of(r) for r in receiver.at("/all")]
    assert Counter(p["event"] for p in received) == {
        "user_registered": 2,
        "user_send_message": 1,
        "webhook_disabled": 1,
    }
    assert len({p["id"] for p in received}) == 4
    [disabled] = [p["data"] for p in received if p["event"] == "webhook_disabled"]
    assert (disabled["id"], disabled["url"]) == (victim["id"], receiver.url("/victim"))
    assert disabled["reason"] == "disabled by request"


async def test_a_second_rotation_within_the_overlap_is_409_and_keeps_both_secrets(
    api: RunningApp,
) -> None:
    registered = await subscribe(api.client, HOOK)
    first = await rotate(api.client, registered["id"])

    again = await api.client.post(f"/webhooks/{registered['id']}/secret/rotate")

    assert again.status_code == 409, again.text
    assert "rotated less than 24 hours ago" in again.json()["detail"]
    assert first["previous_valid_until"][:19] in again.json()["detail"]
    assert await secret_of(api.client, registered["id"]) == first["secret"]
