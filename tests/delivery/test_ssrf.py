"""Webhooks never go to loopback, private, link-local, multicast, reserved or
metadata addresses, whatever the spelling: refused at registration, and again at every attempt
after DNS resolution, so a name that changes its answer later gets nowhere either.

These run with the guard ON (tests otherwise allow private networks, as receivers are on
127.0.0.1) and with a StubResolver in place of DNS: no test here ever asks real DNS.

How no traffic leaves the machine: the stub answers with loopback, private or public
addresses, but only loopback is ever connected to, and only when the guard has failed (then the
real receiver on 127.0.0.1 sees it and the test fails). Private and "public" answers are only
ever given to the guard, which refuses them before any connection, or at registration, which
never connects; each test says which.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver
from sqlalchemy import select

from hookline.api.app import create_app
from hookline.config import Settings
from hookline.delivery import signing
from hookline.delivery.sender import Sender
from hookline.ids import new_id
from hookline.models import Attempt, Delivery, Endpoint, Subscription, utcnow
from tests.delivery.helpers import (
    attempts_of,
    deliveries_to,
    register_user,
    subscribe,
    wait_until,
)
from tests.support import db as support_db
from tests.support.app import RunningApp
from tests.support.db import SessionMaker
from tests.support.receiver import Receiver
from tests.support.resolver import StubResolver

HINT = "; set HOOKLINE_ALLOW_PRIVATE_NETWORKS=true to allow it in development"
PUBLIC = "93.184.216.34"

# What the stub answers for the names in the table. None of these is ever connected to: the
# table only registers, and registration resolves without connecting.
NAMES = {
    "localhost": ["127.0.0.1"],
    "localhost.": ["127.0.0.1"],
    "sub.localhost": ["127.0.0.1"],
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["127.0.0.1", "8.8.8.8"],
    # Public first: a guard that only looked at the first answer would let it through.
    "public-first.example": ["8.8.8.8", "10.0.0.1"],
    "v6-loopback.example": ["::1"],
    "mapped-metadata.example": ["::ffff:169.254.169.254"],
}

INSIDE_V6 = "is a loopback address (127.0.0.1) inside an IPv6 address"
LOOPBACK_V4 = "(127.0.0.1) is a loopback address"

# (URL with {port} = the real receiver's, why it is refused, whether the answer carries the
# HOOKLINE_ALLOW_PRIVATE_NETWORKS hint). The loopback ones carry the receiver's port, so a
# registration that connected would show up there.
URL_TABLE = [
    ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address", True),
    ("http://localhost:{port}/hook", "localhost (127.0.0.1) is a loopback address", True),
    ("http://LOCALHOST:{port}/hook", "localhost (127.0.0.1) is a loopback address", True),
    ("http://localhost.:{port}/hook", "localhost. (127.0.0.1) is a loopback address", True),
    ("http://sub.localhost:{port}/hook", "sub.localhost (127.0.0.1) is a loopback", True),
    ("http://0.0.0.0:{port}/hook", "0.0.0.0 is an unspecified ('this network') address", True),
    ("http://0:{port}/hook", "0 (0.0.0.0) is an unspecified ('this network') address", True),
    ("http://[::]:{port}/hook", ":: is an unspecified address", True),
    ("http://[::1]:{port}/hook", "::1 is a loopback address", True),
    ("http://[::ffff:127.0.0.1]:{port}/hook", INSIDE_V6, True),
    ("http://[::ffff:7f00:1]:{port}/hook", INSIDE_V6, True),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/hook", INSIDE_V6, True),
    ("http://[::127.0.0.1]:{port}/hook", INSIDE_V6, True),
    ("http://[2002:7f00:1::]:{port}/hook", INSIDE_V6, True),
    ("http://[64:ff9b::7f00:1]:{port}/hook", INSIDE_V6, True),
    ("http://2130706433:{port}/hook", f"2130706433 {LOOPBACK_V4}", True),
    ("http://0x7f000001:{port}/hook", f"0x7f000001 {LOOPBACK_V4}", True),
    ("http://0177.0.0.1:{port}/hook", f"0177.0.0.1 {LOOPBACK_V4}", True),
    ("http://0x7f.0.0.1:{port}/hook", f"0x7f.0.0.1 {LOOPBACK_V4}", True),
    ("http://127.1:{port}/hook", f"127.1 {LOOPBACK_V4}", True),
    ("http://127.0.1:{port}/hook", f"127.0.1 {LOOPBACK_V4}", True),
    ("http://017700000001:{port}/hook", f"017700000001 {LOOPBACK_V4}", True),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address", True),
    ("http://172.16.0.1/hook", "172.16.0.1 is a private address", True),
    ("http://192.168.1.1/hook", "192.168.1.1 is a private address", True),
    ("http://100.64.0.1/hook", "100.64.0.1 is a shared (carrier-grade NAT) address", True),
    ("http://169.254.169.254/latest/meta-data/", "is a cloud metadata address", True),
    ("http://[fd00:ec2::254]/latest/meta-data/", "is a cloud metadata address", True),
    ("http://[fe80::1]/hook", "fe80::1 is a link-local address", True),
    ("http://[fe80::1%25eth0]:{port}/hook", "is a scoped (link-local) address", True),
    ("http://[fc00::1]/hook", "fc00::1 is a unique local (private) address", True),
    ("http://224.0.0.1/hook", "224.0.0.1 is a multicast address", True),
    ("http://[ff02::1]/hook", "ff02::1 is a multicast address", True),
    ("http://255.255.255.255/hook", "255.255.255.255 is a reserved address", True),
    ("http://198.18.0.1/hook", "198.18.0.1 is a benchmarking address", True),
    ("http://192.0.2.1/hook", "192.0.2.1 is a documentation address", True),
    ("http://internal.example/hook", "internal.example (10.1.2.3) is a private address", True),
    ("http://mixed.example:{port}/hook", "mixed.example (127.0.0.1) is a loopback", True),
    ("http://public-first.example/hook", "(10.0.0.1) is a private address", True),
    ("http://v6-loopback.example:{port}/hook", "(::1) is a loopback address", True),
    (
        "http://mapped-metadata.example/hook",
        "is a cloud metadata address (169.254.169.254) inside an IPv6 address",
        True,
    ),
    ("ftp://127.0.0.1:{port}/hook", "the scheme must be http or https", False),
    ("file:///etc/passwd", "the scheme must be http or https", False),
    ("gopher://127.0.0.1:{port}/_POST", "the scheme must be http or https", False),
    ("javascript:alert(1)", "the scheme must be http or https", False),
    ("http://user:pass@example.com/", "credentials in URLs are not allowed", False),
    ("http://user:pass@127.0.0.1:{port}/hook", "credentials in URLs are not allowed", False),
]


@asynccontextmanager
async def app_resolving_with(
    settings: Settings, resolver: AbstractResolver, *, run_worker: bool = False
) -> AsyncIterator[RunningApp]:
    """tests.support.app.running_app, with `resolver` for registration and the sender."""
    app = create_app(settings, run_worker=run_worker, resolver=resolver)
    async with app.router.lifespan_context(app):
        app.state.test_db = support_db.test_db(settings)  # for the test to arrange and inspect rows
        transport = httpx.ASGITransport(app=app)
        # As the admin, as running_app does (getattr: the token is newer than this guard).
        headers = {}
        token = getattr(settings, "admin_token", None)
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            try:
                yield RunningApp(app=app, client=client, settings=settings)
            finally:
                await app.state.test_db.engine.dispose()


def guard_on(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(allow_private_networks=False)


async def insert_endpoint(sessionmaker: SessionMaker, url: str) -> str:
    """An endpoint subscribed to user_registered, written straight to the database: as one
    stored before the guard existed, or while private networks were allowed, would be."""
    endpoint_id = new_id("wh")
    async with sessionmaker.begin() as session:
        session.add(
            Endpoint(id=endpoint_id, url=url, secret=signing.generate_secret(), created_at=utcnow())
        )
        await session.flush()
        session.add(Subscription(endpoint_id=endpoint_id, event="user_registered"))
    return endpoint_id


async def finished_delivery(sessionmaker: SessionMaker, endpoint_id: str) -> Delivery:
    """The endpoint's one delivery once it is over, failed or (had the guard let it through)
    succeeded: either way without waiting out a timeout."""

    async def probe() -> Delivery | None:
        [found] = await deliveries_to(sessionmaker, endpoint_id)
        return found if found.status in ("failed", "succeeded") else None

    return await wait_until(probe, timeout=10, what=f"the delivery to {endpoint_id} to end")


async def post_webhook(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post("/webhook", json={"event": "user_registered", "url": url})


def no_urls_listed(listing: dict[str, Any]) -> bool:
    return all(entry["urls"] == [] for entry in listing["webhooks"])


@pytest.mark.parametrize(
    ("template", "why", "hinted"),
    [pytest.param(t, w, h, id=t.replace("{port}", "P")) for t, w, h in URL_TABLE],
)
async def test_url_to_forbidden_destination_is_refused_at_registration(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    template: str,
    why: str,
    hinted: bool,
) -> None:
    # Registration only: it resolves (through the stub) but never connects, and no event is
    # published, so the worker, running as in production, has nothing to send.
    url = template.format(port=receiver.port)
    stub = StubResolver(NAMES)
    async with app_resolving_with(guard_on(make_settings), stub, run_worker=True) as running:
        response = await post_webhook(running.client, url)
        listing = (await running.client.get("/webhooks")).json()

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"Invalid webhook URL '{url}': ")
    assert why in detail
    assert detail.endswith(HINT) is hinted
    assert no_urls_listed(listing)
    assert receiver.requests == []


def test_url_table_is_long_enough_to_mean_something() -> None:
    assert len(URL_TABLE) >= 40
    assert len({t for t, _, _ in URL_TABLE}) == len(URL_TABLE)


async def test_name_that_does_not_resolve_is_refused_at_registration(
    make_settings: Callable[..., Settings],
) -> None:
    stub = StubResolver(NAMES)
    async with app_resolving_with(guard_on(make_settings), stub) as running:
        response = await post_webhook(running.client, "http://nowhere.example/hook")
        listing = (await running.client.get("/webhooks")).json()

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("Invalid webhook URL 'http://nowhere.example/hook': ")
    assert "its host does not resolve" in detail
    assert stub.count("nowhere.example") == 1
    assert no_urls_listed(listing)


async def test_name_resolving_to_public_address_is_registered_without_connecting(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # No worker and no event: nothing is ever sent to the public address.
    stub = StubResolver({"hooks.example": [PUBLIC]})
    async with app_resolving_with(guard_on(make_settings), stub) as running:
        response = await post_webhook(running.client, f"http://hooks.example:{receiver.port}/")

    assert response.status_code == 201, response.text
    assert stub.lookups == ["hooks.example"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("new_url", "why"),
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address (169.254.169.254)"),
        ("http://internal.example/hook", "internal.example (10.1.2.3) is a private address"),
    ],
)
async def test_changing_url_to_forbidden_destination_is_refused(
    make_settings: Callable[..., Settings], receiver: Receiver, new_url: str, why: str
) -> None:
    # No worker and no event: the public address registered first is never sent to.
    stub = StubResolver({**NAMES, "hooks.example": [PUBLIC]})
    url = new_url.format(port=receiver.port)
    async with app_resolving_with(guard_on(make_settings), stub) as running:
        endpoint = await subscribe(running.client, "http://hooks.example/hook")
        response = await running.client.patch(f"/webhooks/{endpoint['id']}", json={"url": url})
        after = (await running.client.get(f"/webhooks/{endpoint['id']}")).json()

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"Invalid webhook URL '{url}': ")
    assert why in detail
    assert detail.endswith(HINT)
    assert after["url"] == "http://hooks.example/hook"
    assert receiver.requests == []


@pytest.mark.parametrize(
    "at_send_time",
    [
        pytest.param(["127.0.0.1"], id="rebound to loopback"),
        # Loopback first: were the guard to let the mixed answer through, the connection would
        # go to the receiver (and fail the test), never out to the public address.
        pytest.param(["127.0.0.1", PUBLIC], id="mixed public and loopback"),
    ],
)
async def test_name_that_turns_forbidden_after_registration_gets_nothing(
    make_settings: Callable[..., Settings], receiver: Receiver, at_send_time: list[str]
) -> None:
    settings = guard_on(make_settings)
    # Public at registration, which resolves without connecting; switched before any event
    # exists, so no attempt ever sees the public-only answer.
    stub = StubResolver({"hooks.example": [PUBLIC]})
    async with app_resolving_with(settings, stub, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint = await subscribe(running.client, f"http://hooks.example:{receiver.port}/hook")
        at_registration = stub.count("hooks.example")
        stub.names["hooks.example"] = at_send_time
        await register_user(running.client, "alice")
        done = await finished_delivery(sessionmaker, endpoint["id"])
        attempts = await attempts_of(sessionmaker, done.id)

    assert receiver.requests == []
    assert done.status == "failed"
    assert at_registration == 1
    # Failed at once: retrying a URL that points where webhooks may not go asks in vain.
    assert len(attempts) == 1
    assert {a.error_kind for a in attempts} == {"forbidden_destination"}
    assert {a.status_code for a in attempts} == {None}
    assert all(a.error == "hooks.example (127.0.0.1) is a loopback address" for a in attempts), (
        attempts[0].error
    )
    # Asked again at the attempt: the answer at registration was not reused.
    assert stub.count("hooks.example") == at_registration + 1


SEND_TIME_URLS = [
    pytest.param("http://127.0.0.1:{port}/x", "127.0.0.1 is a loopback address", id="dotted"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/x", INSIDE_V6, id="IPv4-mapped"),
    pytest.param("http://2130706433:{port}/x", LOOPBACK_V4, id="one integer"),
    pytest.param("http://0x7f.1:{port}/x", LOOPBACK_V4, id="hex and short"),
    pytest.param("http://localhost:{port}/x", LOOPBACK_V4, id="a name"),
    pytest.param(
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/x",
        "loopback",
        id="fullwidth digits",
    ),
    pytest.param("http://127\u30020\u30020\u30021:{port}/x", "loopback", id="ideographic dots"),
]


@pytest.mark.parametrize(("template", "why"), SEND_TIME_URLS)
async def test_stored_url_to_loopback_is_refused_at_every_attempt(
    make_settings: Callable[..., Settings], receiver: Receiver, template: str, why: str
) -> None:
    # Loopback only: whatever slips past the guard lands on the receiver, nowhere else.
    settings = guard_on(make_settings)
    stub = StubResolver(NAMES)
    async with app_resolving_with(settings, stub, run_worker=True) as running:
        sessionmaker = running.app.state.test_db.sessions
        endpoint_id = await insert_endpoint(sessionmaker, template.format(port=receiver.port))
        await register_user(running.client, "alice")
        done = await finished_delivery(sessionmaker, endpoint_id)
        attempts = await attempts_of(sessionmaker, done.id)

    assert receiver.requests == []
    assert done.status == "failed"
    assert [a.error_kind for a in attempts] == ["forbidden_destination"]  # failed at once
    assert all(why in (a.error or "") for a in attempts)


async def test_ping_by_id_to_stored_loopback_url_is_refused(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # The receiver's own URL, stored past the guard: a slip lands on it and nowhere else.
    stub = StubResolver()
    async with app_resolving_with(guard_on(make_settings), stub) as running:
        endpoint_id = await insert_endpoint(running.app.state.test_db.sessions, receiver.url("/x"))
        response = await running.client.post(f"/webhooks/{endpoint_id}/ping")

    assert response.status_code == 200, response.text
    attempt = response.json()["attempt"]
    assert attempt["error_kind"] == "forbidden_destination"
    assert attempt["status_code"] is None
    assert attempt["error"] == "127.0.0.1 is a loopback address"
    assert receiver.requests == []


async def test_ping_all_reports_stored_loopback_url_as_failed(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # The receiver's own URL, stored past the guard: a slip lands on it and nowhere else.
    stub = StubResolver()
    async with app_resolving_with(guard_on(make_settings), stub) as running:
        sessionmaker = running.app.state.test_db.sessions
        await insert_endpoint(sessionmaker, receiver.url("/x"))
        response = await running.client.post("/ping")
        async with sessionmaker() as session:
            recorded = list((await session.execute(select(Attempt))).scalars())

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["successful_webhooks_count"] == 0
    assert report["failed_webhooks_count"] == 1
    [failed] = report["failed_webhooks"]
    assert failed["url"] == receiver.url("/x")
    assert failed["error"] == "127.0.0.1 is a loopback address"
    assert [a.error_kind for a in recorded] == ["forbidden_destination"]
    assert receiver.requests == []


async def test_loopback_url_is_accepted_when_private_networks_are_allowed(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    # Registration only, no worker: nothing is sent anywhere.
    stub = StubResolver(NAMES)
    settings = make_settings(allow_private_networks=True)
    async with app_resolving_with(settings, stub) as running:
        response = await post_webhook(running.client, receiver.url("/hook"))
        named = await post_webhook(running.client, f"http://localhost:{receiver.port}/hook")

    assert response.status_code == 201, response.text
    assert named.status_code == 201, named.text
    # Nothing to check, so nothing asked.
    assert stub.lookups == []


async def test_redirect_to_internal_address_is_not_followed(receiver: Receiver) -> None:
    # With the guard on, a test cannot have a receiver at an allowed address (receivers are on
    # 127.0.0.1, which the guard refuses), so the sender runs with the guard off. That is the
    # point: redirects are refused by never following them, not by the guard, so a receiver at
    # a public address cannot bounce the request to an internal one.
    internal = receiver.url("/internal")
    receiver.redirect("/moved", internal)
    sender = Sender(timeout=2, concurrency=1, allow_private_networks=True)
    await sender.start()
    try:
        outcome = await sender.send(
            url=receiver.url("/moved"),
            msg_id="msg_redirect",
            body=b"{}",
            secrets=[signing.generate_secret()],
        )
    finally:
        await sender.close()

    assert outcome.status_code == 307
    assert outcome.error_kind == "http_status"
    assert len(receiver.at("/moved")) == 1
    assert receiver.at("/internal") == []
