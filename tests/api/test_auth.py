"""Who may do what: the admin token, user tokens, and no token at all."""

import hashlib
import hmac
import itertools
import secrets
import stat
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.staticfiles import StaticFiles
from sqlalchemy import inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import Mount

from hookline.api.app import create_app
from hookline.config import Settings
from hookline.models import AdminToken, Delivery, User, utcnow
from tests.delivery.helpers import subscribe
from tests.support.app import RunningApp, running_app

CLOSED = "http://127.0.0.1:9"  # nothing listens there: pings fail at once
USER_PREFIX, ADMIN_PREFIX = "hl_user_", "hl_admin_"

# Who the caller turns out to be.
NOBODY, ALICE, BOB, ADMIN = "nobody", "alice", "bob", "admin"
# Who a route lets in.
PUBLIC = "no token needed"
USERS = "any user, and the admin"
AS_ALICE = "alice (the user the request names), and the admin"
ADMIN_ONLY = "the admin only"
# The endpoint, delivery or event the row reaches is alice's: bob gets 404.
OWNED = "alice (whose endpoint it is), and the admin; another user: 404"
APP_TYPE = "order.created"

# Tokens nobody was given: random, so that one showing up in a body is no coincidence.
UNKNOWN_USER_TOKEN = USER_PREFIX + secrets.token_urlsafe(32)
UNKNOWN_ADMIN_TOKEN = ADMIN_PREFIX + secrets.token_urlsafe(32)
GARBAGE_TOKEN = "garbage-" + secrets.token_hex(16)


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def client_of(app: FastAPI, headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """A client on `app` that sends `headers` (no Authorization header unless given)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    ) as client:
        yield client


async def database_rows(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database (reflected, not just the models')."""
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        rows = {}
        for name in names:
            found = await conn.execute(text(f'SELECT * FROM "{name}"'))
            rows[name] = sorted((tuple(row) for row in found), key=repr)
    return rows


def stored_anywhere(rows: dict[str, list[tuple[Any, ...]]], needle: str) -> list[str]:
    """The tables and columns whose value contains `needle`, JSON and text alike."""
    return [
        f"{table}: {row!r}"
        for table, table_rows in rows.items()
        for row in table_rows
        if any(needle in str(value) for value in row)
    ]


@dataclass
class World:
    """A running app with two users; alice has an endpoint of her own (on a closed port) with
    a delivery of an event, and the admin one that subscribes to everything."""

    running: RunningApp
    anonymous: httpx.AsyncClient
    tokens: dict[str, str]  # alice, bob, admin
    endpoint_id: str  # alice's
    event_id: str  # an event alice's endpoint got
    delivery_id: str  # its delivery to alice's endpoint
    admin_endpoint_id: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.running.client

    @property
    def engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.running.app.state.test_db.engine
        return engine

    def fresh(self, stem: str) -> str:
        return f"{stem}{next(self._names)}"

    async def fail_deliveries(self) -> None:
        """Mark the endpoint's deliveries failed, so that retry and recover would change them."""
        async with self.running.app.state.test_db.sessions.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.endpoint_id == self.endpoint_id)
                .values(status="failed", next_attempt_at=None, finished_at=utcnow())
            )

    async def endpoint_of(self, who: str, url: str, events: list[str] | None = None) -> str:
        """A new endpoint of `who` (alice, bob or the admin); its id."""
        response = await self.anonymous.post(
            "/endpoints",
            json={"url": url, "events": events or ["user_send_message"]},
            headers=bearer(self.tokens[who]),
        )
        assert response.status_code == 201, response.text
        endpoint_id: str = response.json()["id"]
        return endpoint_id


async def register(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    response = await client.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def world(make_settings) -> AsyncIterator[World]:
    # Rows create endpoints of alice's for every caller: more than a user may own by default.
    async with (
        running_app(make_settings(max_endpoints_per_user=1000)) as api,
        client_of(api.app) as anonymous,
    ):
        hook = await subscribe(api.client, f"{CLOSED}/hook", "*")
        alice = await register(anonymous, ALICE)
        bob = await register(anonymous, BOB)
        tokens = {
            ALICE: alice["token"],
            BOB: bob["token"],
            ADMIN: api.settings.admin_token.get_secret_value(),
        }
        typed = await api.client.post("/event-types", json={"name": APP_TYPE})
        assert typed.status_code == 201, typed.text
        created = await anonymous.post(
            "/endpoints",
            json={"url": f"{CLOSED}/alice", "events": [APP_TYPE]},
            headers=bearer(tokens[ALICE]),
        )
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        sent = await api.client.post(
            "/events", json={"event": APP_TYPE, "data": {"for": ALICE}, "user": ALICE}
        )
        assert sent.status_code == 201, sent.text
        deliveries = (await api.client.get(f"/endpoints/{endpoint_id}/deliveries")).json()["data"]
        assert len(deliveries) == 1
        yield World(
            running=api,
            anonymous=anonymous,
            tokens=tokens,
            endpoint_id=endpoint_id,
            event_id=deliveries[0]["event_id"],
            delivery_id=deliveries[0]["id"],
            admin_endpoint_id=hook["id"],
        )


# --- Who calls ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    who: str  # NOBODY, ALICE, BOB or ADMIN: whom the app should take the caller for
    authorization: Callable[[World], str | None]


CALLERS = [
    Caller("no Authorization header", NOBODY, lambda w: None),
    Caller("Basic x", NOBODY, lambda w: "Basic x"),
    Caller("the admin token under Basic", NOBODY, lambda w: f"Basic {w.tokens[ADMIN]}"),
    Caller("Bearer without a token", NOBODY, lambda w: "Bearer"),
    Caller("an unknown hl_user_ token", NOBODY, lambda w: f"Bearer {UNKNOWN_USER_TOKEN}"),
    Caller("an unknown hl_admin_ token", NOBODY, lambda w: f"Bearer {UNKNOWN_ADMIN_TOKEN}"),
    Caller("a garbage token", NOBODY, lambda w: f"Bearer {GARBAGE_TOKEN}"),
    Caller(
        "the stored hash of alice's token", NOBODY, lambda w: f"Bearer {sha256(w.tokens[ALICE])}"
    ),
    Caller("alice", ALICE, lambda w: f"Bearer {w.tokens[ALICE]}"),
    Caller("bob", BOB, lambda w: f"Bearer {w.tokens[BOB]}"),
    Caller("the admin", ADMIN, lambda w: f"Bearer {w.tokens[ADMIN]}"),
    # RFC 7235 §2.1: the scheme is case-insensitive (FastAPI's HTTPBearer lowercases it).
    Caller("the admin, scheme 'bearer'", ADMIN, lambda w: f"bearer {w.tokens[ADMIN]}"),
    Caller("the admin, scheme 'BEARER'", ADMIN, lambda w: f"BEARER {w.tokens[ADMIN]}"),
]


def secrets_of(world: World) -> list[str]:
    """Token strings that no response body may contain."""
    return [*world.tokens.values(), UNKNOWN_USER_TOKEN, UNKNOWN_ADMIN_TOKEN, GARBAGE_TOKEN]


# --- Every route ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    url: str
    json: Any = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # the route's path, as the app declares it
    allowed: str  # PUBLIC, USERS, AS_ALICE or ADMIN_ONLY
    success: int
    # Creates what the call needs (fresh objects when the call uses them up) and returns it.
    prepare: Callable[[World], Awaitable[Call]]

    def expected(self, caller: Caller) -> int:
        if self.allowed == PUBLIC or caller.who == ADMIN:
            return self.success
        if caller.who == NOBODY:
            return 401
        if self.allowed == USERS or (self.allowed in (AS_ALICE, OWNED) and caller.who == ALICE):
            return self.success
        return 404 if self.allowed == OWNED else 403


def plain(url: str, **options: Any) -> Callable[[World], Awaitable[Call]]:
    async def prepare(world: World) -> Call:
        return Call(url.format(endpoint=world.endpoint_id), **options)

    return prepare


async def new_user(world: World) -> Call:
    return Call("/users", json={"username": world.fresh("newcomer")})


async def message_from_alice(world: World) -> Call:
    return Call("/users/messages", json={"sender": ALICE, "recipient": BOB, "message": "hi"})


async def token_for_new_user(world: World) -> Call:
    username = world.fresh("forgetful")
    await register(world.admin, username)
    return Call(f"/users/{username}/token")


async def new_webhook(world: World) -> Call:
    return Call("/webhook", json={"event": "user_registered", "url": world.fresh(f"{CLOSED}/w")})


async def existing_subscription(world: World) -> Call:
    url = world.fresh(f"{CLOSED}/gone")
    await subscribe(world.admin, url, "user_send_message")
    return Call("/webhook", json={"event": "user_send_message", "url": url})


def by_id(prefix: str, rest: str = "") -> Callable[[World], Awaitable[Call]]:
    async def prepare(world: World) -> Call:
        return Call(f"{prefix}/{world.endpoint_id}{rest}")

    return prepare


def endpoint_patch(prefix: str) -> Callable[[World], Awaitable[Call]]:
    async def prepare(world: World) -> Call:
        description = world.fresh("described by call ")  # each call would change something
        return Call(f"{prefix}/{world.endpoint_id}", json={"description": description})

    return prepare


def endpoint_of_its_own(prefix: str) -> Callable[[World], Awaitable[Call]]:
    async def prepare(world: World) -> Call:
        created = await world.endpoint_of(ALICE, world.fresh(f"{CLOSED}/doomed"))
        return Call(f"{prefix}/{created}")

    return prepare


def rotation_of_its_own(prefix: str) -> Callable[[World], Awaitable[Call]]:
    # A fresh endpoint per call: a second rotation within 24 hours is a 409.
    async def prepare(world: World) -> Call:
        created = await world.endpoint_of(ALICE, world.fresh(f"{CLOSED}/rotated"))
        return Call(f"{prefix}/{created}/secret/rotate")

    return prepare


def recover_failed(prefix: str) -> Callable[[World], Awaitable[Call]]:
    async def prepare(world: World) -> Call:
        await world.fail_deliveries()
        return Call(f"{prefix}/{world.endpoint_id}/recover", json={"since": "2000-01-01T00:00:00Z"})

    return prepare


async def new_endpoint(world: World) -> Call:
    url = world.fresh(f"{CLOSED}/new")
    return Call("/endpoints", json={"url": url, "events": ["user_send_message"]})


async def new_event_type(world: World) -> Call:
    return Call("/event-types", json={"name": world.fresh("invoice.paid.v")})


async def event_type_patch(world: World) -> Call:
    return Call(f"/event-types/{APP_TYPE}", json={"description": world.fresh("described ")})


async def application_event(world: World) -> Call:
    return Call("/events", json={"event": APP_TYPE, "data": {"n": 1}, "user": ALICE})


async def event(world: World) -> Call:
    return Call(f"/events/{world.event_id}")


async def delivery(world: World) -> Call:
    return Call(f"/deliveries/{world.delivery_id}")


async def retry_failed(world: World) -> Call:
    await world.fail_deliveries()
    return Call(f"/deliveries/{world.delivery_id}/retry")


def endpoint_rows(prefix: str) -> list["Row"]:
    """The routes by id, served under both names by the same handlers."""
    path = f"{prefix}/{{endpoint_id}}"
    return [
        Row("GET", path, OWNED, 200, by_id(prefix)),
        Row("PATCH", path, OWNED, 200, endpoint_patch(prefix)),
        Row("DELETE", path, OWNED, 204, endpoint_of_its_own(prefix)),
        Row("GET", f"{path}/secret", OWNED, 200, by_id(prefix, "/secret")),
        Row("POST", f"{path}/secret/rotate", OWNED, 200, rotation_of_its_own(prefix)),
        Row("POST", f"{path}/ping", OWNED, 200, by_id(prefix, "/ping")),
        Row("GET", f"{path}/deliveries", OWNED, 200, by_id(prefix, "/deliveries")),
        Row("POST", f"{path}/recover", OWNED, 202, recover_failed(prefix)),
    ]


ROWS = [
    Row("GET", "/health", PUBLIC, 200, plain("/health")),
    Row("GET", "/ready", PUBLIC, 200, plain("/ready")),
    Row("GET", "/openapi.json", PUBLIC, 200, plain("/openapi.json")),
    Row("GET", "/docs", PUBLIC, 200, plain("/docs")),
    Row("GET", "/docs/oauth2-redirect", PUBLIC, 200, plain("/docs/oauth2-redirect")),
    Row("GET", "/redoc", PUBLIC, 200, plain("/redoc")),
    # The docs' scripts and styles, served from the package.
    Row("GET", "/static/{path}", PUBLIC, 200, plain("/static/swagger_ui/swagger-ui.css")),
    Row("GET", "/metrics", ADMIN_ONLY, 200, plain("/metrics")),
    Row("POST", "/users", PUBLIC, 201, new_user),
    Row("GET", "/users", USERS, 200, plain("/users")),
    Row("POST", "/users/messages", AS_ALICE, 201, message_from_alice),
    Row(
        "GET",
        "/users/messages",
        AS_ALICE,
        200,
        plain("/users/messages", params={"recipient": ALICE}),
    ),
    Row("POST", "/users/{username}/token", ADMIN_ONLY, 200, token_for_new_user),
    Row("POST", "/webhook", ADMIN_ONLY, 201, new_webhook),
    Row("DELETE", "/webhook", ADMIN_ONLY, 204, existing_subscription),
    Row("GET", "/webhooks", ADMIN_ONLY, 200, plain("/webhooks")),
    Row("POST", "/ping", ADMIN_ONLY, 200, plain("/ping")),
    Row("GET", "/endpoints", USERS, 200, plain("/endpoints")),
    Row("POST", "/endpoints", USERS, 201, new_endpoint),
    *endpoint_rows("/endpoints"),
    *endpoint_rows("/webhooks"),
    Row("GET", "/events", ADMIN_ONLY, 200, plain("/events")),
    Row("POST", "/events", ADMIN_ONLY, 201, application_event),
    Row("GET", "/events/{event_id}", OWNED, 200, event),
    Row("GET", "/deliveries", USERS, 200, plain("/deliveries")),
    Row("GET", "/deliveries/{delivery_id}", OWNED, 200, delivery),
    Row("POST", "/deliveries/{delivery_id}/retry", OWNED, 202, retry_failed),
    Row("GET", "/event-types", USERS, 200, plain("/event-types")),
    Row("POST", "/event-types", ADMIN_ONLY, 201, new_event_type),
    Row("GET", "/event-types/{name}", USERS, 200, plain(f"/event-types/{APP_TYPE}")),
    Row("PATCH", "/event-types/{name}", ADMIN_ONLY, 200, event_type_patch),
]


# The dashboard takes a session cookie, never a bearer token: without a session
# each of its routes sends any caller to the sign-in page and changes nothing, whatever the
# Authorization header (tests/api/test_dashboard.py tests the sessions themselves). The sign-in
# page and the dashboard's files need no session.
DASHBOARD_PUBLIC = {
    ("GET", "/dashboard/sign-in"),
    ("POST", "/dashboard/sign-in"),
    ("GET", "/dashboard/static/{name:path}"),
}
# (method, the route's path, a URL of it: {endpoint}, {event} and {delivery} are alice's)
DASHBOARD = [
    ("GET", "/dashboard", "/dashboard"),
    ("POST", "/dashboard/sign-out", "/dashboard/sign-out"),
    ("GET", "/dashboard/endpoints", "/dashboard/endpoints"),
    ("POST", "/dashboard/endpoints", "/dashboard/endpoints"),
    ("GET", "/dashboard/endpoints/{endpoint_id}", "/dashboard/endpoints/{endpoint}"),
    *(
        (
            "POST",
            f"/dashboard/endpoints/{{endpoint_id}}/{action}",
            f"/dashboard/endpoints/{{endpoint}}/{action}",
        )
        for action in ("settings", "enabled", "secret", "secret/rotate", "ping", "recover")
    ),
    ("GET", "/dashboard/events", "/dashboard/events"),
    ("GET", "/dashboard/events/{event_id}", "/dashboard/events/{event}"),
    ("GET", "/dashboard/deliveries/{delivery_id}", "/dashboard/deliveries/{delivery}"),
    ("POST", "/dashboard/deliveries/{delivery_id}/retry", "/dashboard/deliveries/{delivery}/retry"),
    ("GET", "/dashboard/event-types", "/dashboard/event-types"),
    ("POST", "/dashboard/event-types", "/dashboard/event-types"),
    ("GET", "/dashboard/event-types/{name}", "/dashboard/event-types/user_registered"),
    ("GET", "/dashboard/{rest:path}", "/dashboard/no-such-page"),
]


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, included routers' too; anything else counts as one."""
    found: set[tuple[str, str]] = set()
    # app.routes holds included routers whole since FastAPI 0.16x: flatten as OpenAPI does.
    for route in iter_route_contexts(app.routes):
        if route.methods:
            found |= {(method, str(route.path)) for method in route.methods - {"HEAD"}}
        elif isinstance(route.original_route, Mount) and isinstance(
            route.original_route.app, StaticFiles
        ):  # files: a GET of any path under it
            found.add(("GET", f"{route.path}/{{path}}"))
        else:  # another mount, a websocket: the table has no row for it, so the test below fails
            found.add((type(route.original_route).__name__, str(route.path)))
    return found


async def test_the_table_has_a_row_for_every_route_of_the_app(settings):
    app = create_app(settings)

    dashboard = {(method, path) for method, path, _ in DASHBOARD} | DASHBOARD_PUBLIC
    assert {(row.method, row.path) for row in ROWS} | dashboard == routes_of(app)


async def test_no_token_opens_a_dashboard_route_without_a_session(world):
    before = await database_rows(world.engine)
    wrong = []
    for method, _path, url in DASHBOARD:
        url = url.format(
            endpoint=world.endpoint_id, event=world.event_id, delivery=world.delivery_id
        )
        for caller in CALLERS:
            authorization = caller.authorization(world)
            response = await world.anonymous.request(
                method,
                url,
                data={"csrf_token": "x"} if method == "POST" else None,
                headers={} if authorization is None else {"Authorization": authorization},
            )
            if response.status_code != 303 or not response.headers["location"].startswith(
                "/dashboard/sign-in"
            ):
                wrong.append(f"{method} {url}, {caller.name}: {response.status_code}")
    assert not wrong, "\n".join(wrong)
    assert await database_rows(world.engine) == before


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.method} {row.path}")
async def test_every_caller_gets_what_the_contract_allows_on_every_route(world, row):
    wrong: list[str] = []
    for caller in CALLERS:
        call = await row.prepare(world)
        expected = row.expected(caller)
        refused = expected in (401, 403, 404)
        before = await database_rows(world.engine) if refused else None
        authorization = caller.authorization(world)
        response = await world.anonymous.request(
            row.method,
            call.url,
            json=call.json,
            params=call.params,
            headers={} if authorization is None else {"Authorization": authorization},
        )

        said = f"{caller.name}: {response.status_code} {response.text[:200]}"
        if response.status_code != expected:
            wrong.append(f"{said} (expected {expected})")
        if refused:
            if set(response.json()) != {"detail"}:
                wrong.append(f"{said} (expected a body of just 'detail')")
            if before != await database_rows(world.engine):
                wrong.append(f"{caller.name}: a refused {row.method} changed the database")
        if expected == 401 and response.headers.get("WWW-Authenticate") != "Bearer":
            wrong.append(f"{said} (expected WWW-Authenticate: Bearer, got {response.headers})")
        if any(token in response.text for token in secrets_of(world)):
            wrong.append(f"{caller.name}: a token is in the body: {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("method", "url", "options"),
    [
        pytest.param("POST", "/webhook", {"json": {"event": "nope"}}, id="a bad body"),
        pytest.param("GET", "/webhooks/" + "x" * 65, {}, id="a bad path parameter"),
        pytest.param("GET", "/events", {"params": {"limit": "0"}}, id="a bad query"),
        pytest.param("POST", "/users/messages", {"json": {}}, id="a user route's bad body"),
        pytest.param("GET", "/users/messages", {}, id="a missing query parameter"),
    ],
)
async def test_an_unknown_token_is_refused_before_anything_is_validated(
    world, method, url, options
):
    response = await world.anonymous.request(
        method, url, headers=bearer(UNKNOWN_ADMIN_TOKEN), **options
    )

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/webhook", "/users/messages"])
async def test_without_a_token_a_body_that_is_not_json_is_still_401(world, path):
    response = await world.anonymous.post(
        path, content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401, response.text


@pytest.mark.parametrize("path", ["/webhook", "/users/messages"])
async def test_with_a_valid_token_a_body_that_is_not_json_is_422(world, path):
    response = await world.admin.post(
        path, content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text


# --- Users ----------------------------------------------------------------------------------


async def send(world: World, token: str, sender: str, recipient: str) -> httpx.Response:
    body = {"sender": sender, "recipient": recipient, "message": f"{sender} to {recipient}"}
    return await world.anonymous.post("/users/messages", json=body, headers=bearer(token))


async def inbox(world: World, token: str, recipient: str) -> httpx.Response:
    return await world.anonymous.get(
        "/users/messages", params={"recipient": recipient}, headers=bearer(token)
    )


async def test_a_user_sends_messages_as_itself(world):
    response = await send(world, world.tokens[ALICE], ALICE, BOB)

    assert response.status_code == 201, response.text
    assert (response.json()["sender"], response.json()["recipient"]) == (ALICE, BOB)


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param(BOB, id="another user"),
        pytest.param("nobody", id="a user who does not exist"),
    ],
)
async def test_a_user_may_not_send_as_anyone_else_and_nothing_is_written(world, sender):
    before = await database_rows(world.engine)

    response = await send(world, world.tokens[ALICE], sender, ALICE if sender == BOB else BOB)

    assert response.status_code == 403, response.text
    assert set(response.json()) == {"detail"}
    assert await database_rows(world.engine) == before


async def test_a_user_reads_the_messages_sent_to_itself(world):
    assert (await send(world, world.tokens[BOB], BOB, ALICE)).status_code == 201

    response = await inbox(world, world.tokens[ALICE], ALICE)

    assert response.status_code == 200, response.text
    assert [(m["sender"], m["recipient"]) for m in response.json()] == [(BOB, ALICE)]


@pytest.mark.parametrize(
    "recipient",
    [
        pytest.param(BOB, id="another user"),
        pytest.param("nobody", id="a user who does not exist"),
    ],
)
async def test_a_user_may_not_read_anyone_elses_messages(world, recipient):
    assert (await send(world, world.tokens[ALICE], ALICE, BOB)).status_code == 201

    response = await inbox(world, world.tokens[ALICE], recipient)

    assert response.status_code == 403, response.text
    assert set(response.json()) == {"detail"}
    assert "alice to bob" not in response.text


async def test_the_admin_sends_as_anyone_and_reads_every_inbox(world):
    admin = world.tokens[ADMIN]
    assert (await send(world, admin, ALICE, BOB)).status_code == 201
    assert (await send(world, admin, BOB, ALICE)).status_code == 201

    to_alice = await inbox(world, admin, ALICE)
    to_bob = await inbox(world, admin, BOB)

    assert (to_alice.status_code, to_bob.status_code) == (200, 200)
    assert [m["message"] for m in to_alice.json()] == ["bob to alice"]
    assert [m["message"] for m in to_bob.json()] == ["alice to bob"]


@pytest.mark.parametrize("spelling", ["ALICE", "Alice", "aLiCe"])
async def test_a_user_is_itself_whatever_the_case_of_its_name(world, spelling):
    sent = await send(world, world.tokens[ALICE], spelling, BOB.upper())
    assert (await send(world, world.tokens[BOB], BOB, ALICE)).status_code == 201
    read = await inbox(world, world.tokens[ALICE], spelling)

    assert sent.status_code == 201, sent.text
    assert (sent.json()["sender"], sent.json()["recipient"]) == (ALICE, BOB)
    assert read.status_code == 200, read.text
    assert [m["sender"] for m in read.json()] == [BOB]


async def test_a_user_registered_in_capitals_acts_as_its_lowercased_name(world):
    carol = await register(world.anonymous, "Carol")

    sent = await send(world, carol["token"], "CAROL", ALICE)
    read = await inbox(world, carol["token"], "carol")

    assert carol["username"] == "carol"
    assert (sent.status_code, read.status_code) == (201, 200), (sent.text, read.text)


async def test_registering_needs_no_token_and_answers_a_user_token(world):
    response = await world.anonymous.post("/users", json={"username": "dave"})

    assert response.status_code == 201, response.text
    token = response.json()["token"]
    assert token.startswith(USER_PREFIX)
    assert len(token) - len(USER_PREFIX) >= 43  # 32 random bytes, base64url
    listed = await world.anonymous.get("/users", headers=bearer(token))
    assert listed.status_code == 200, listed.text


async def test_a_user_token_is_stored_only_as_its_sha256(world):
    response = await world.anonymous.post(
        "/users", json={"username": "erin"}, headers={"Idempotency-Key": "erin-once"}
    )
    assert response.status_code == 201, response.text
    token = response.json()["token"]

    rows = await database_rows(world.engine)
    async with world.running.app.state.test_db.sessions() as session:
        stored = await session.scalar(select(User.token_hash).where(User.username == "erin"))

    assert stored == sha256(token)
    assert stored_anywhere(rows, token) == []
    for earlier in (world.tokens[ALICE], world.tokens[BOB]):
        assert stored_anywhere(rows, earlier) == []


# --- A new token for a user -----------------------------------------------------------------


@pytest.mark.parametrize("spelling", [ALICE, "ALICE"])
async def test_the_admin_gives_a_user_a_new_token_and_the_old_one_stops_working(world, spelling):
    old = world.tokens[ALICE]

    response = await world.admin.post(f"/users/{spelling}/token")

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"username", "token"}
    assert response.json()["username"] == ALICE
    new = response.json()["token"]
    assert new.startswith(USER_PREFIX) and new != old
    assert (await send(world, new, ALICE, BOB)).status_code == 201
    refused = await world.anonymous.get("/users", headers=bearer(old))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert (await send(world, old, ALICE, BOB)).status_code == 401
    assert (await world.anonymous.get("/users", headers=bearer(world.tokens[BOB]))).is_success


@pytest.mark.parametrize(
    "username", [pytest.param(ALICE, id="itself"), pytest.param(BOB, id="bob")]
)
async def test_a_user_may_not_get_a_new_token_for_anyone(world, username):
    before = await database_rows(world.engine)

    response = await world.anonymous.post(
        f"/users/{username}/token", headers=bearer(world.tokens[ALICE])
    )

    assert response.status_code == 403, response.text
    assert await database_rows(world.engine) == before
    for name in (ALICE, BOB):
        listed = await world.anonymous.get("/users", headers=bearer(world.tokens[name]))
        assert listed.status_code == 200, listed.text


async def test_a_new_token_for_a_user_who_does_not_exist_is_404(world):
    before = await database_rows(world.engine)

    response = await world.admin.post("/users/nobody/token")

    assert response.status_code == 404, response.text
    assert set(response.json()) == {"detail"}
    assert await database_rows(world.engine) == before


# --- The admin token ------------------------------------------------------------------------


async def admin_hashes(running: RunningApp) -> list[str]:
    async with running.app.state.test_db.sessions() as session:
        return list(await session.scalars(select(AdminToken.token_hash)))


async def status_as(running: RunningApp, token: str, path: str = "/events") -> int:
    async with client_of(running.app, bearer(token)) as client:
        return (await client.get(path)).status_code


async def test_the_first_start_without_an_admin_token_generates_one(make_settings, capsys):
    settings: Settings = make_settings(admin_token=None)
    file = settings.data_dir / "admin-token"

    async with running_app(settings) as running:
        token = file.read_text().strip()
        assert token.startswith(ADMIN_PREFIX)
        assert len(token) - len(ADMIN_PREFIX) >= 43
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert await status_as(running, token) == 200
        assert await status_as(running, ADMIN_PREFIX + secrets.token_urlsafe(32)) == 401
        assert await admin_hashes(running) == [sha256(token)]
        assert stored_anywhere(await database_rows(running.app.state.test_db.engine), token) == []

    printed = capsys.readouterr().out
    assert printed.count(token) == 1
    assert printed.count("hookline: generated the admin token") == 1


async def test_a_second_start_keeps_the_generated_token_and_prints_nothing(make_settings, capsys):
    settings: Settings = make_settings(admin_token=None)
    file = settings.data_dir / "admin-token"
    async with running_app(settings):
        pass
    token = file.read_text().strip()
    written = file.stat()
    assert capsys.readouterr().out.count(token) == 1

    async with running_app(settings) as running:
        assert await status_as(running, token) == 200
        assert await admin_hashes(running) == [sha256(token)]

    assert capsys.readouterr().out == ""
    assert file.read_text().strip() == token
    assert (file.stat().st_mtime_ns, file.stat().st_ino) == (written.st_mtime_ns, written.st_ino)


async def test_a_configured_admin_token_is_the_admin_token_and_nothing_is_generated(
    make_settings, capsys
):
    settings: Settings = make_settings()
    configured = settings.admin_token.get_secret_value()

    async with running_app(settings) as running:
        assert await status_as(running, configured) == 200
        assert await status_as(running, ADMIN_PREFIX + secrets.token_urlsafe(32)) == 401
        assert await admin_hashes(running) == []

    assert not (settings.data_dir / "admin-token").exists()
    assert "admin token" not in capsys.readouterr().out


async def test_configuring_an_admin_token_retires_the_generated_one(make_settings, capsys):
    generating = make_settings(admin_token=None)
    async with running_app(generating):
        pass
    generated = (generating.data_dir / "admin-token").read_text().strip()
    configured = ADMIN_PREFIX + secrets.token_urlsafe(32)

    async with running_app(make_settings(admin_token=configured)) as running:
        assert await status_as(running, configured) == 200
        assert await status_as(running, generated) == 401


# --- OpenAPI --------------------------------------------------------------------------------


async def bearer_scheme_name(api: RunningApp) -> tuple[str, dict[str, Any]]:
    schema = (await api.client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    names = [
        name
        for name, scheme in schemes.items()
        if scheme["type"] == "http" and scheme["scheme"].lower() == "bearer"
    ]
    assert len(names) == 1, schemes
    return names[0], schema


async def test_openapi_declares_an_http_bearer_scheme(api):
    name, schema = await bearer_scheme_name(api)

    assert schema["components"]["securitySchemes"][name]["type"] == "http"


async def test_openapi_says_which_operations_take_the_bearer_token(api):
    name, schema = await bearer_scheme_name(api)
    wrong = []

    for row in ROWS:
        if row.path.startswith(("/docs", "/redoc", "/openapi", "/static/", "/webhooks/")):
            continue  # not operations of the schema (/webhooks/{id}: the old name, left out)
        operation = schema["paths"][row.path][row.method.lower()]
        declared = {name: []} in operation.get("security", [])
        if declared != (row.allowed != PUBLIC):
            wrong.append(f"{row.method} {row.path}: security {operation.get('security')}")

    assert not wrong, "\n".join(wrong)


# --- The admin token is compared in constant time ------------------------------------------


async def test_the_admin_token_is_compared_in_constant_time(world, monkeypatch):
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    admin = world.tokens[ADMIN]

    assert await status_as(world.running, admin) == 200
    assert await status_as(world.running, UNKNOWN_ADMIN_TOKEN) == 401

    assert (sha256(admin), sha256(admin)) in compared
    assert (sha256(UNKNOWN_ADMIN_TOKEN), sha256(admin)) in compared


# --- Users own endpoints ------------------------------------------------------------------------


async def test_the_schema_documents_the_endpoints_by_their_new_name_only(api):
    schema = (await api.client.get("/openapi.json")).json()

    assert "/endpoints/{endpoint_id}" in schema["paths"]
    assert not [path for path in schema["paths"] if path.startswith("/webhooks/")]


ADMIN_ENDPOINT_ROUTES = [
    ("GET", ""),
    ("PATCH", ""),
    ("DELETE", ""),
    ("GET", "/secret"),
    ("POST", "/secret/rotate"),
    ("POST", "/ping"),
    ("GET", "/deliveries"),
    ("POST", "/recover"),
]


@pytest.mark.parametrize("prefix", ["/endpoints", "/webhooks"])
@pytest.mark.parametrize(("method", "rest"), ADMIN_ENDPOINT_ROUTES)
async def test_a_user_cannot_reach_the_admins_endpoint_as_if_it_did_not_exist(
    world, prefix, method, rest
):
    bodies = {"PATCH": {"description": "mine now"}, "POST": {"since": "2000-01-01T00:00:00Z"}}
    before = await database_rows(world.engine)

    response = await world.anonymous.request(
        method,
        f"{prefix}/{world.admin_endpoint_id}{rest}",
        json=bodies.get(method) if rest in ("", "/recover") else None,
        headers=bearer(world.tokens[ALICE]),
    )

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"Webhook '{world.admin_endpoint_id}' not found"}
    assert await database_rows(world.engine) == before


async def test_a_user_lists_only_its_own_endpoints_and_the_admin_lists_all(world):
    bobs = await world.endpoint_of(BOB, f"{CLOSED}/bob")

    listed = {}
    for who in (ALICE, BOB, ADMIN):
        response = await world.anonymous.get("/endpoints", headers=bearer(world.tokens[who]))
        assert response.status_code == 200, response.text
        listed[who] = {(e["id"], e["owner"]) for e in response.json()["data"]}
    as_alice_for_bob = await world.anonymous.get(
        "/endpoints", params={"owner": BOB}, headers=bearer(world.tokens[ALICE])
    )

    assert listed[ALICE] == {(world.endpoint_id, ALICE)}
    assert listed[BOB] == {(bobs, BOB)}
    assert listed[ADMIN] == {
        (world.endpoint_id, ALICE),
        (bobs, BOB),
        (world.admin_endpoint_id, None),
    }
    assert as_alice_for_bob.json()["data"] == []


async def test_a_user_cannot_read_another_users_event_or_delivery(world):
    for path in (f"/events/{world.event_id}", f"/deliveries/{world.delivery_id}"):
        response = await world.anonymous.get(path, headers=bearer(world.tokens[BOB]))

        assert response.status_code == 404, response.text
        assert "for" not in response.json()["detail"]


async def test_a_user_sees_only_its_own_deliveries_of_an_event(world):
    as_alice = await world.anonymous.get(
        f"/events/{world.event_id}", headers=bearer(world.tokens[ALICE])
    )
    as_admin = await world.admin.get(f"/events/{world.event_id}")

    assert {d["endpoint_id"] for d in as_alice.json()["deliveries"]} == {world.endpoint_id}
    assert {d["endpoint_id"] for d in as_admin.json()["deliveries"]} == {
        world.endpoint_id,
        world.admin_endpoint_id,
    }


async def test_a_user_lists_only_its_own_endpoints_deliveries_and_the_admin_all(world):
    bobs = await world.endpoint_of(BOB, f"{CLOSED}/bob", [APP_TYPE])
    for user in (ALICE, BOB):
        sent = await world.admin.post(
            "/events", json={"event": APP_TYPE, "data": {"for": user}, "user": user}
        )
        assert sent.status_code == 201, sent.text

    listed = {}
    for who in (ALICE, BOB, ADMIN):
        response = await world.anonymous.get("/deliveries", headers=bearer(world.tokens[who]))
        assert response.status_code == 200, response.text
        listed[who] = Counter(d["endpoint_id"] for d in response.json()["data"])
    # Another's endpoint named as the filter: nothing, as if it had no deliveries.
    as_alice_for_bob = await world.anonymous.get(
        "/deliveries", params={"endpoint_id": bobs}, headers=bearer(world.tokens[ALICE])
    )
    paged = await world.anonymous.get(
        "/deliveries", params={"limit": 1}, headers=bearer(world.tokens[ALICE])
    )
    after = await world.anonymous.get(
        "/deliveries",
        params={"limit": 1, "cursor": paged.json()["next_cursor"]},
        headers=bearer(world.tokens[ALICE]),
    )

    assert listed[ALICE] == {world.endpoint_id: 2}
    assert listed[BOB] == {bobs: 1}
    # The admin's wildcard endpoint got both registrations and all three events.
    assert listed[ADMIN] == {world.endpoint_id: 2, bobs: 1, world.admin_endpoint_id: 5}
    assert as_alice_for_bob.json() == {"data": [], "next_cursor": None}
    assert [d["endpoint_id"] for d in paged.json()["data"] + after.json()["data"]] == [
        world.endpoint_id
    ] * 2
    assert after.json()["next_cursor"] is None


async def test_a_user_may_not_create_an_endpoint_for_another(world):
    response = await world.anonymous.post(
        "/endpoints",
        json={"url": f"{CLOSED}/planted", "events": ["user_send_message"], "owner": BOB},
        headers=bearer(world.tokens[ALICE]),
    )

    assert response.status_code == 403, response.text


async def test_the_admin_creates_an_endpoint_for_a_user(world):
    response = await world.admin.post(
        "/endpoints",
        json={"url": f"{CLOSED}/given", "events": ["user_send_message"], "owner": BOB},
    )
    listed = await world.anonymous.get("/endpoints", headers=bearer(world.tokens[BOB]))

    assert response.status_code == 201, response.text
    assert response.json()["owner"] == BOB
    assert response.json()["id"] in {e["id"] for e in listed.json()["data"]}
