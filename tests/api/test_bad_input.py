"""Bad input on every route that takes some: a clear 4xx with a `detail`, never a 5xx, and
nothing written.

FastAPI's own refusals (422) carry a list of field errors; the app's carry a string. "Nothing
written" compares every row of users, messages, endpoints, subscriptions, events, deliveries,
attempts and idempotency_keys before and after, so an update (a token reissued, a delivery
requeued) counts as a write as well as a new row.

One app per database backend serves the whole module: an app per case would take minutes.
It is seeded once, and after any case that changed its rows (a bug, or a test that writes on
purpose) it is emptied and seeded again. Its client does not re-raise the app's exceptions:
a 500 is an answer to assert on, as a real client would see it.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import delete, select, update

from hookline.config import Settings
from hookline.models import (
    Attempt,
    Base,
    Delivery,
    Endpoint,
    Event,
    IdempotencyKey,
    Message,
    Subscription,
    User,
    utcnow,
)
from hookline.store import Status
from tests.conftest import TEST_DEFAULTS, _truncate_postgres
from tests.delivery.helpers import register_user, subscribe
from tests.support.app import running_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOOK = "http://127.0.0.1:9/hook"  # nothing listens on port 9: a ping is refused at once
OTHER = "http://127.0.0.1:9/other"
WEBHOOK = "{webhook}"  # stands for the seeded endpoint's id in a path
WATCHED = (User, Message, Endpoint, Subscription, Event, Delivery, Attempt, IdempotencyKey)
MIB = 1_048_576
BOUNDARY = "bad-input-boundary"

Snapshot = dict[str, list[tuple[Any, ...]]]


# --- the app under test -------------------------------------------------------------------


@dataclass
class Target:
    """The app of one backend, its client (the admin's) and the seeded endpoint's id."""

    backend: str
    app: FastAPI
    client: httpx.AsyncClient
    webhook_id: str = ""
    seeded: Snapshot = field(default_factory=dict)

    async def snapshot(self) -> Snapshot:
        """Every row of the watched tables, in primary-key order."""
        rows: Snapshot = {}
        async with self.app.state.test_db.engine.connect() as conn:
            for model in WATCHED:
                table = model.__table__
                result = await conn.execute(select(table).order_by(*table.primary_key))
                rows[table.name] = [tuple(row) for row in result]
        return rows

    async def seed(self) -> None:
        """Empty the database, then: one webhook, three users, a message, a failed ping, and
        the users' `user_registered` deliveries failed (pings are never recovered: these are
        what a recover that ran would requeue)."""
        async with self.app.state.test_db.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(delete(table))
        hook = await subscribe(self.client, HOOK, "user_registered")
        await subscribe(self.client, HOOK, "user_send_message")
        for name in ("alice", "bob", "kim"):
            await register_user(self.client, name)
        sent = await self.client.post(
            "/users/messages",
            json={"sender": "alice", "recipient": "bob", "subject": "hi", "message": "hello"},
            headers={"Idempotency-Key": "seeded"},
        )
        assert sent.status_code == 201, sent.text
        pinged = await self.client.post(f"/webhooks/{hook['id']}/ping")
        assert pinged.status_code == 200, pinged.text
        registered = select(Event.id).where(Event.event == "user_registered")
        async with self.app.state.test_db.engine.begin() as conn:
            failed = await conn.execute(
                update(Delivery)
                .where(Delivery.event_id.in_(registered))
                .values(status=Status.FAILED, next_attempt_at=None, finished_at=utcnow())
            )
            assert failed.rowcount == 3
        self.webhook_id = hook["id"]
        self.seeded = await self.snapshot()
        assert all(self.seeded.values()), "every watched table has rows to keep"

    async def send(self, call: "Call") -> httpx.Response:
        headers = dict(call.headers)
        if call.content is not None and call.content_type is not None:
            headers["Content-Type"] = call.content_type
        return await self.client.request(
            call.method,
            call.path.replace(WEBHOOK, self.webhook_id),
            content=call.content,
            params=call.params,
            headers=headers,
        )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on a new SQLite file, or on the session's PostgreSQL database emptied (what
    other modules left there is sealed with their own secret key: the app would not start)."""
    tmp: Path = tmp_path_factory.mktemp("bad_input")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'hookline.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        _truncate_postgres(url)
    return Settings(
        _env_file=None, **{**TEST_DEFAULTS, "data_dir": tmp / "data", "database_url": url}
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(backend: Settings) -> AsyncIterator[Target]:
    async with running_app(backend) as running:
        transport = httpx.ASGITransport(app=running.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=running.client.headers
        ) as client:
            name = "sqlite" if backend.is_sqlite else "postgres"
            seeded = Target(backend=name, app=running.app, client=client)
            await seeded.seed()
            yield seeded


@pytest_asyncio.fixture(loop_scope="module")
async def bad(target: Target) -> AsyncIterator[Target]:
    """The module's app; seeded afresh after a test that changed its rows."""
    yield target
    if await target.snapshot() != target.seeded:
        await target.seed()


# --- requests and what they must get -------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    content: bytes | None = None
    content_type: str | None = "application/json"
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def call(method: str, path: str, document: Any = None, **options: Any) -> Call:
    """A request; `document` is sent as its JSON body unless `content` is given."""
    if document is not None and "content" not in options:
        options["content"] = body(document)
    return Call(method, path, **options)


@dataclass(frozen=True)
class Refusal:
    """What a correct app answers: a status, and a detail that is FastAPI's list of field
    errors naming `field` (errors=True) or the app's string holding `says` (errors=False).
    echoes=False: the errors carry no `input`, because the input cannot be rendered."""

    status: int
    errors: bool
    field: str | None = None
    says: str | None = None
    echoes: bool = True


def invalid(field: str | None = None) -> Refusal:
    """FastAPI's 422, its error list naming `field` when given."""
    return Refusal(422, errors=True, field=field)


def unrenderable(field: str | None = None) -> Refusal:
    """FastAPI's 422 for an input JSON cannot hold (NaN, Infinity, a lone surrogate): each
    error is only its type, loc and msg."""
    return Refusal(422, errors=True, field=field, echoes=False)


def refused(status: int, says: str) -> Refusal:
    """The app's own refusal: `{"detail": "..."}` holding `says`."""
    return Refusal(status, errors=False, says=says)


NUL_IN_URL = refused(400, "NUL characters are not allowed in paths or query values")
NOT_JSON_DATA = refused(422, "data cannot be sent as JSON: ")


async def assert_refused_and_nothing_written(bad: Target, sent: Call, refusal: Refusal) -> None:
    before = await bad.snapshot()

    response = await bad.send(sent)

    assert response.status_code == refusal.status, response.text[:500]
    answer = response.json()
    assert list(answer) == ["detail"], answer
    detail = answer["detail"]
    if refusal.errors:
        assert isinstance(detail, list) and detail, detail
        assert all({"type", "loc", "msg"} <= set(error) for error in detail), detail
        if not refusal.echoes:
            assert all(set(error) == {"type", "loc", "msg"} for error in detail), detail
        if refusal.field is not None:
            assert any(refusal.field in error["loc"] for error in detail), detail
    else:
        assert isinstance(detail, str), detail
        assert refusal.says is not None and refusal.says in detail, detail
    assert await bad.snapshot() == before


def table(*cases: tuple[str, Call, Refusal]) -> list[Any]:
    return [pytest.param(sent, refusal, id=name) for name, sent, refusal in cases]


# --- malformed JSON, content types, sizes: every route that takes a body -------------------

BODY_ROUTES = {
    "POST /users": ("POST", "/users", {"username": "carol"}),
    "POST /users/messages": (
        "POST",
        "/users/messages",
        {"sender": "alice", "recipient": "bob", "message": "hi"},
    ),
    "POST /webhook": ("POST", "/webhook", {"event": "user_send_message", "url": OTHER}),
    "DELETE /webhook": ("DELETE", "/webhook", {"event": "user_registered", "url": HOOK}),
    "PATCH /webhooks/{id}": ("PATCH", f"/webhooks/{WEBHOOK}", {"description": "changed"}),
    "POST /webhooks/{id}/recover": (
        "POST",
        f"/webhooks/{WEBHOOK}/recover",
        {"since": "2020-01-01T00:00:00Z"},
    ),
    "POST /ping": ("POST", "/ping", {"message": "hello"}),
}

PARSE_ERROR = refused(400, "There was an error parsing the body")
NESTED_ARRAYS = b"[" * 10_000 + b"]" * 10_000
NESTED_OBJECTS = b'{"a":' * 10_000 + b"1" + b"}" * 10_000

# (name, body, refusal by a model route, refusal by POST /ping or None where it is valid)
MALFORMED_BODIES: list[tuple[str, bytes, Refusal, Refusal | None]] = [
    ("truncated", b'{"username": "ali', invalid(), invalid()),
    ("trailing comma", b'{"a": 1,}', invalid(), invalid()),
    ("single quotes", b"{'a': 1}", invalid(), invalid()),
    ("NaN", b'{"a": NaN}', unrenderable(), NOT_JSON_DATA),
    ("Infinity", b'{"a": Infinity}', unrenderable(), NOT_JSON_DATA),
    ("-Infinity", b'{"a": -Infinity}', unrenderable(), NOT_JSON_DATA),
    ("1e400 overflows to inf", b'{"a": 1e400}', unrenderable(), NOT_JSON_DATA),
    ("a bare string", b'"alice"', invalid(), invalid()),
    ("a bare number", b"42", invalid(), invalid()),
    # POST /ping takes an absent or null body as the default data.
    ("null", b"null", invalid(), None),
    ("empty", b"", invalid(), None),
    ("an array", b'[{"a": 1}]', invalid(), invalid()),
    ("whitespace only", b" \n\t ", invalid(), invalid()),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}', PARSE_ERROR, PARSE_ERROR),
    # Python refuses to read an int of more than 4300 digits (CVE-2020-10735).
    ("a 4301-digit int", b'{"a": 1' + b"0" * 4300 + b"}", PARSE_ERROR, PARSE_ERROR),
    ("10,000 nested arrays", NESTED_ARRAYS, PARSE_ERROR, PARSE_ERROR),
    ("10,000 nested objects", NESTED_OBJECTS, PARSE_ERROR, PARSE_ERROR),
]


def _malformed() -> list[Any]:
    cases = []
    for route, (method, path, _) in BODY_ROUTES.items():
        for name, content, by_model, by_ping in MALFORMED_BODIES:
            refusal = by_ping if route == "POST /ping" else by_model
            if refusal is not None:
                cases.append((f"{route}: {name}", call(method, path, content=content), refusal))
    return table(*cases)


@pytest.mark.parametrize(("sent", "refusal"), _malformed())
async def test_malformed_json_is_refused_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


def _multipart(document: dict[str, str]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in document.items()
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


# FastAPI reads a body as JSON only when its Content-Type says so (`application/json`, `+json`):
# with any other or none the model gets the raw text, which it refuses with a 422 (not a 415).
CONTENT_TYPES = {
    "text/plain with a JSON body": ("text/plain", body),
    "form-urlencoded": ("application/x-www-form-urlencoded", lambda d: urlencode(d).encode()),
    "multipart": (f"multipart/form-data; boundary={BOUNDARY}", _multipart),
    "no content-type": (None, body),
}


def _wrong_content_types() -> list[Any]:
    return table(
        *(
            (
                f"{route}: {kind}",
                call(method, path, content=encode(valid), content_type=content_type),
                invalid(),
            )
            for route, (method, path, valid) in BODY_ROUTES.items()
            for kind, (content_type, encode) in CONTENT_TYPES.items()
        )
    )


@pytest.mark.parametrize(("sent", "refusal"), _wrong_content_types())
async def test_a_valid_body_of_another_content_type_is_422_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_the_bodies_the_tables_spoil_are_accepted_as_json_and_write(bad, route):
    method, path, valid = BODY_ROUTES[route]
    before = await bad.snapshot()

    response = await bad.send(call(method, path, valid))

    assert 200 <= response.status_code < 300, response.text
    assert await bad.snapshot() != before  # what "nothing written" looks for would see it


def _padded(document: dict[str, str], size: int) -> bytes:
    encoded = body(document)
    return encoded + b" " * (size - len(encoded))


@pytest.mark.parametrize(
    ("sent", "refusal"),
    table(
        *(
            (
                route,
                call(method, path, content=_padded(valid, MIB + 1)),
                refused(413, f"Request body is larger than {MIB} bytes"),
            )
            for route, (method, path, valid) in BODY_ROUTES.items()
        )
    ),
)
async def test_a_valid_body_of_1_mib_and_a_byte_is_413_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


# --- fields: wrong types, unknown fields, sizes, event names, dates ------------------------


def raw(method: str, path: str, content: bytes) -> Call:
    return Call(method, path, content=content)


def users(document: Any, **options: Any) -> Call:
    return call("POST", "/users", document, **options)


def message(**fields: Any) -> Call:
    return call(
        "POST", "/users/messages", {"sender": "alice", "recipient": "bob", "message": "hi"} | fields
    )


def webhook(method: str = "POST", **fields: Any) -> Call:
    return call(method, "/webhook", {"event": "user_send_message", "url": OTHER} | fields)


def patch(document: Any) -> Call:
    return call("PATCH", f"/webhooks/{WEBHOOK}", document)


def recover(document: Any) -> Call:
    return call("POST", f"/webhooks/{WEBHOOK}/recover", document)


def ping(document: Any = None, **options: Any) -> Call:
    return call("POST", "/ping", document, **options)


LONG_URL = "http://127.0.0.1:9/" + "a" * 2030  # 2049 characters
assert len(LONG_URL) == 2049

FIELDS = table(
    # POST /users
    ("POST /users: a number for username", users({"username": 123}), invalid("username")),
    ("POST /users: 10**40 for username", users({"username": 10**40}), invalid("username")),
    ("POST /users: true for username", users({"username": True}), invalid("username")),
    (
        "POST /users: a space in username",
        users({"username": "car ol"}),
        invalid("username"),
    ),
    ("POST /users: null username", users({"username": None}), invalid("username")),
    ("POST /users: a list for username", users({"username": ["alice"]}), invalid("username")),
    ("POST /users: an object for username", users({"username": {"a": "b"}}), invalid("username")),
    ("POST /users: no username", users({}), invalid("username")),
    ("POST /users: an empty username", users({"username": ""}), invalid("username")),
    ("POST /users: a 65-char username", users({"username": "a" * 65}), invalid("username")),
    (
        "POST /users: an unknown field",
        users({"username": "carol", "is_admin": True}),
        invalid("is_admin"),
    ),
    (
        "POST /users: an Idempotency-Key of 256 chars",
        users({"username": "carol"}, headers={"Idempotency-Key": "k" * 256}),
        invalid("Idempotency-Key"),
    ),
    (
        "POST /users: an empty Idempotency-Key",
        users({"username": "carol"}, headers={"Idempotency-Key": ""}),
        invalid("Idempotency-Key"),
    ),
    # POST /users/messages
    ("POST /users/messages: a number for sender", message(sender=1), invalid("sender")),
    (
        "POST /users/messages: a list for recipient",
        message(recipient=["bob"]),
        invalid("recipient"),
    ),
    ("POST /users/messages: a number for subject", message(subject=5), invalid("subject")),
    ("POST /users/messages: null subject", message(subject=None), invalid("subject")),
    (
        "POST /users/messages: an object for message",
        message(message={"text": "hi"}),
        invalid("message"),
    ),
    ("POST /users/messages: a bool for message", message(message=True), invalid("message")),
    (
        "POST /users/messages: no message",
        call("POST", "/users/messages", {"sender": "alice", "recipient": "bob"}),
        invalid("message"),
    ),
    ("POST /users/messages: an empty message", message(message=""), invalid("message")),
    (
        "POST /users/messages: a message of 10,001 chars",
        message(message="m" * 10_001),
        invalid("message"),
    ),
    (
        "POST /users/messages: a subject of 201 chars",
        message(subject="s" * 201),
        invalid("subject"),
    ),
    ("POST /users/messages: an unknown field", message(cc="kim"), invalid("cc")),
    (
        "POST /users/messages: to oneself in another case",
        message(recipient="ALICE"),
        refused(422, "Sender and recipient cannot be the same"),
    ),
    (
        "POST /users/messages: an unknown sender",
        message(sender="zoe"),
        refused(404, "Sender does not exist"),
    ),
    (
        "POST /users/messages: an unknown recipient",
        message(recipient="zoe"),
        refused(404, "Recipient does not exist"),
    ),
    (
        "POST /users/messages: an Idempotency-Key of 256 chars",
        call(
            "POST",
            "/users/messages",
            {"sender": "alice", "recipient": "bob", "message": "hi"},
            headers={"Idempotency-Key": "k" * 256},
        ),
        invalid("Idempotency-Key"),
    ),
    # POST /webhook
    ("POST /webhook: an object for url", webhook(url={"href": OTHER}), invalid("url")),
    ("POST /webhook: a list for url", webhook(url=[OTHER]), invalid("url")),
    ("POST /webhook: a URL of 2049 chars", webhook(url=LONG_URL), invalid("url")),
    ("POST /webhook: an empty url", webhook(url=""), invalid("url")),
    (
        "POST /webhook: an ftp URL",
        webhook(url="ftp://127.0.0.1/hook"),
        refused(422, "the scheme must be http or https"),
    ),
    ("POST /webhook: a list for event", webhook(event=["user_registered"]), invalid("event")),
    ("POST /webhook: a number for event", webhook(event=1), invalid("event")),
    ("POST /webhook: null event", webhook(event=None), invalid("event")),
    ("POST /webhook: an unknown field", webhook(secret="whsec_x"), invalid("secret")),
    (
        "POST /webhook: 'user registered'",
        webhook(event="user registered"),
        refused(404, "Event 'user registered' not found"),
    ),
    ("POST /webhook: an empty event", webhook(event=""), invalid("event")),
    ("POST /webhook: a blank event", webhook(event="   "), invalid("event")),
    (
        "POST /webhook: 'ping', never subscribed to",
        webhook(event="ping"),
        refused(404, "Event 'ping' not found"),
    ),
    ("POST /webhook: a 65-char event", webhook(event="e" * 65), invalid("event")),
    (
        "POST /webhook: an Idempotency-Key of 256 chars",
        call(
            "POST",
            "/webhook",
            {"event": "user_send_message", "url": OTHER},
            headers={"Idempotency-Key": "k" * 256},
        ),
        invalid("Idempotency-Key"),
    ),
    # DELETE /webhook
    ("DELETE /webhook: an object for url", webhook("DELETE", url={"href": HOOK}), invalid("url")),
    ("DELETE /webhook: a URL of 2049 chars", webhook("DELETE", url=LONG_URL), invalid("url")),
    (
        "DELETE /webhook: a list for event",
        webhook("DELETE", event=["user_registered"]),
        invalid("event"),
    ),
    ("DELETE /webhook: an unknown field", webhook("DELETE", id="wh_x"), invalid("id")),
    (
        "DELETE /webhook: 'ping'",
        webhook("DELETE", event="ping", url=HOOK),
        refused(404, "Event 'ping' not found"),
    ),
    ("DELETE /webhook: an empty event", webhook("DELETE", event="", url=HOOK), invalid("event")),
    (
        "DELETE /webhook: a 65-char event",
        webhook("DELETE", event="e" * 65, url=HOOK),
        invalid("event"),
    ),
    (
        "DELETE /webhook: 'user registered'",
        webhook("DELETE", event="user registered", url=HOOK),
        refused(404, "Event 'user registered' not found"),
    ),
    # PATCH /webhooks/{id}
    ("PATCH: an object for url", patch({"url": {"href": OTHER}}), invalid("url")),
    ("PATCH: a URL of 2049 chars", patch({"url": LONG_URL}), invalid("url")),
    ("PATCH: null url", patch({"url": None}), invalid()),
    (
        "PATCH: an ftp URL",
        patch({"url": "ftp://127.0.0.1/x"}),
        refused(422, "the scheme must be http or https"),
    ),
    ("PATCH: a string for events", patch({"events": "user_registered"}), invalid("events")),
    ("PATCH: no events", patch({"events": []}), invalid("events")),
    ("PATCH: 17 events", patch({"events": ["user_registered"] * 17}), invalid("events")),
    ("PATCH: a number in events", patch({"events": [1]}), invalid("events")),
    ("PATCH: an empty event", patch({"events": [""]}), invalid("events")),
    ("PATCH: a 65-char event", patch({"events": ["e" * 65]}), invalid("events")),
    ("PATCH: null events", patch({"events": None}), invalid()),
    (
        "PATCH: 'ping' in events",
        patch({"events": ["ping"]}),
        refused(404, "Event 'ping' not found"),
    ),
    (
        "PATCH: 'user registered' in events",
        patch({"events": ["user registered"]}),
        refused(404, "Event 'user registered' not found"),
    ),
    ("PATCH: enabled 'maybe'", patch({"enabled": "maybe"}), invalid("enabled")),
    ("PATCH: enabled 2", patch({"enabled": 2}), invalid("enabled")),
    ("PATCH: enabled a list", patch({"enabled": [True]}), invalid("enabled")),
    ("PATCH: null enabled", patch({"enabled": None}), invalid()),
    (
        "PATCH: a description of 1001 chars",
        patch({"description": "d" * 1001}),
        invalid("description"),
    ),
    ("PATCH: a number for description", patch({"description": 5}), invalid("description")),
    ("PATCH: a list for headers", patch({"headers": ["X-Team"]}), invalid("headers")),
    ("PATCH: a number as a header value", patch({"headers": {"X-Team": 1}}), invalid("headers")),
    (
        "PATCH: a reserved header",
        patch({"headers": {"Content-Type": "text/plain"}}),
        refused(422, "Invalid headers: header 'Content-Type' is reserved"),
    ),
    ("PATCH: an unknown field", patch({"secret": "whsec_x"}), invalid("secret")),
    # POST /webhooks/{id}/recover
    ("recover: no since", recover({}), invalid("since")),
    ("recover: since 'yesterday'", recover({"since": "yesterday"}), invalid("since")),
    ("recover: a naive since", recover({"since": "2020-01-01T00:00:00"}), invalid("since")),
    ("recover: a list for since", recover({"since": ["2020-01-01T00:00:00Z"]}), invalid("since")),
    (
        "recover: since in the year 10000",
        recover({"since": "10000-01-01T00:00:00Z"}),
        invalid("since"),
    ),
    (
        "recover: until equal to since",
        recover({"since": "2020-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}),
        invalid(),
    ),
    (
        "recover: until before since",
        recover({"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"}),
        invalid(),
    ),
    (
        "recover: an unknown field",
        recover({"since": "2020-01-01T00:00:00Z", "status": "failed"}),
        invalid("status"),
    ),
    (
        "recover: since before year 1 in UTC",
        recover({"since": "0001-01-01T00:00:00+14:00"}),
        invalid(),
    ),
    (
        "recover: until after year 9999 in UTC",
        recover({"since": "2020-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-14:00"}),
        invalid(),
    ),
    # POST /ping: the body is the data, any JSON object
    ("POST /ping: a list for data", ping([1, 2]), invalid()),
    ("POST /ping: an int over 2**64-1 in data", ping({"n": 2**64}), NOT_JSON_DATA),
    ("POST /ping: an int under -2**63 in data", ping({"n": -(2**63) - 1}), NOT_JSON_DATA),
)


@pytest.mark.parametrize(("sent", "refusal"), FIELDS)
async def test_a_bad_field_is_refused_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


# --- look-alike usernames: the pattern is ASCII letters, digits, `_ . -` --------------------

LOOK_ALIKES = {
    "Cyrillic a": "\u0430lice",
    "fullwidth": "\uff41\uff4c\uff49\uff43\uff45",
    "zero-width space": "al\u200bice",
    "zero-width joiner": "al\u200dice",
    "RTL override": "\u202ealice",
    "combining acute": "alice\u0301",
    "NUL": "al\u0000ice",
    "trailing newline": "alice\n",
    "no-break space": "\u00a0alice",
    "ideographic space": "\u3000alice",
    "Kelvin sign for K": "\u212aim",
}


def _look_alikes() -> list[Any]:
    cases = []
    for kind, name in LOOK_ALIKES.items():
        cases += [
            (f"POST /users: {kind}", users({"username": name}), invalid("username")),
            (f"POST /users/messages sender: {kind}", message(sender=name), invalid("sender")),
            (
                f"GET /users/messages recipient: {kind}",
                call("GET", "/users/messages", params={"recipient": name}),
                NUL_IN_URL if kind == "NUL" else invalid("recipient"),
            ),
            (
                f"POST /users/{{username}}/token: {kind}",
                call("POST", f"/users/{quote(name, safe='')}/token"),
                NUL_IN_URL if kind == "NUL" else invalid("username"),
            ),
        ]
    return table(*cases)


@pytest.mark.parametrize(("sent", "refusal"), _look_alikes())
async def test_a_look_alike_username_is_refused_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


# --- NUL characters and lone surrogates in text ---------------------------------------------


def surrogate(route_body: bytes) -> bytes:
    """JSON text holding the escape of a lone surrogate, which json.dumps never writes."""
    return route_body.replace(b"SURROGATE", b"\\ud800")


CONTROL = table(
    ("message: NUL", message(message="a\u0000b"), invalid("message")),
    ("subject: NUL", message(subject="a\u0000b"), invalid("subject")),
    (
        "POST /webhook url: NUL",
        webhook(url=OTHER + "\u0000"),
        refused(422, "it contains whitespace or control characters"),
    ),
    ("POST /webhook event: NUL", webhook(event="user_registered\u0000"), refused(404, "not found")),
    (
        "DELETE /webhook url: NUL",
        webhook("DELETE", event="user_registered", url=HOOK + "\u0000"),
        refused(422, "it contains whitespace or control characters"),
    ),
    (
        "PATCH url: NUL",
        patch({"url": OTHER + "\u0000"}),
        refused(422, "it contains whitespace or control characters"),
    ),
    ("PATCH description: NUL", patch({"description": "a\u0000b"}), invalid("description")),
    (
        "PATCH header value: NUL",
        patch({"headers": {"X-Team": "a\u0000b"}}),
        refused(422, "contains control characters"),
    ),
    ("PATCH events: NUL", patch({"events": ["user_registered\u0000"]}), refused(404, "not found")),
    (
        "POST /users username: lone surrogate",
        users(None, content=surrogate(b'{"username": "SURROGATE"}')),
        unrenderable("username"),
    ),
    (
        "message: lone surrogate",
        raw(
            "POST",
            "/users/messages",
            surrogate(b'{"sender": "alice", "recipient": "bob", "message": "SURROGATE"}'),
        ),
        unrenderable("message"),
    ),
    (
        "subject: lone surrogate",
        raw(
            "POST",
            "/users/messages",
            surrogate(
                b'{"sender": "alice", "recipient": "bob", "subject": "SURROGATE", "message": "hi"}'
            ),
        ),
        unrenderable("subject"),
    ),
    (
        "POST /webhook url: lone surrogate",
        raw(
            "POST",
            "/webhook",
            surrogate(b'{"event": "user_registered", "url": "http://127.0.0.1:9/SURROGATE"}'),
        ),
        unrenderable("url"),
    ),
    (
        "DELETE /webhook url: lone surrogate",
        raw(
            "DELETE",
            "/webhook",
            surrogate(b'{"event": "user_registered", "url": "http://127.0.0.1:9/SURROGATE"}'),
        ),
        unrenderable("url"),
    ),
    (
        "PATCH description: lone surrogate",
        call("PATCH", f"/webhooks/{WEBHOOK}", content=surrogate(b'{"description": "SURROGATE"}')),
        unrenderable("description"),
    ),
    (
        "PATCH events: lone surrogate",
        call("PATCH", f"/webhooks/{WEBHOOK}", content=surrogate(b'{"events": ["SURROGATE"]}')),
        unrenderable("events"),
    ),
    (
        "recover since: lone surrogate",
        call("POST", f"/webhooks/{WEBHOOK}/recover", content=surrogate(b'{"since": "SURROGATE"}')),
        unrenderable("since"),
    ),
    (
        "POST /ping data value: lone surrogate",
        ping(content=surrogate(b'{"a": "SURROGATE"}')),
        NOT_JSON_DATA,
    ),
    (
        "POST /ping data key: lone surrogate",
        ping(content=surrogate(b'{"SURROGATE": 1}')),
        NOT_JSON_DATA,
    ),
)


@pytest.mark.parametrize(("sent", "refusal"), CONTROL)
async def test_nul_and_lone_surrogates_are_refused_and_write_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


# --- deeply nested JSON ---------------------------------------------------------------------
# Python's json gives up (a RecursionError, which FastAPI answers 400) at 920 to 960 levels,
# depending on the stack below the app. orjson, which writes what receivers get, refuses 255
# levels: the envelope and `data` take two, so 253 levels inside `data` are too many.

NESTED = table(
    (
        "ping data: 10,000 nested arrays",
        ping(content=b'{"a": ' + NESTED_ARRAYS + b"}"),
        PARSE_ERROR,
    ),
    (
        "ping data: 10,000 nested objects",
        ping(content=b'{"a": ' + NESTED_OBJECTS + b"}"),
        PARSE_ERROR,
    ),
    (
        "ping data: 300 nested arrays",
        ping(content=b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}"),
        NOT_JSON_DATA,
    ),
    (
        "ping data: 300 nested objects",
        ping(content=b'{"a":' * 300 + b"1" + b"}" * 300),
        NOT_JSON_DATA,
    ),
    (
        "POST /users username: 900 nested arrays",
        users(None, content=b'{"username": ' + b"[" * 900 + b"]" * 900 + b"}"),
        invalid("username"),
    ),
    (
        "POST /users/messages message: 900 nested objects",
        raw(
            "POST",
            "/users/messages",
            b'{"sender": "alice", "recipient": "bob", "message": '
            + b'{"a":' * 900
            + b"1"
            + b"}" * 900
            + b"}",
        ),
        invalid("message"),
    ),
)


@pytest.mark.parametrize(("sent", "refusal"), NESTED)
async def test_deeply_nested_json_is_refused_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


async def test_no_nesting_depth_near_the_parsers_limit_is_a_server_error(bad):
    async def status_at(depth: int) -> int:
        response = await bad.send(users(None, content=b"[" * depth + b"]" * depth))
        return response.status_code

    before = await bad.snapshot()
    readable, unreadable = 1, 10_000  # where the parser gives up depends on the stack below
    while unreadable - readable > 1:
        middle = (readable + unreadable) // 2
        if await status_at(middle) == 400:
            unreadable = middle
        else:
            readable = middle

    statuses = {}
    for depth in range(unreadable - 100, unreadable + 10):
        statuses[depth] = await status_at(depth)

    failed = {depth: status for depth, status in statuses.items() if status >= 500}
    assert not failed, f"the parser gives up at {unreadable}; depth: status {failed}"
    assert await bad.snapshot() == before


# --- query values ---------------------------------------------------------------------------

HUGE = "x" * 10_000


def get(path: str, **params: str) -> Call:
    return call("GET", path, params=params)


QUERIES = table(
    ("GET /users: limit 10**30", get("/users", limit=str(10**30)), invalid("limit")),
    ("GET /users: limit -1", get("/users", limit="-1"), invalid("limit")),
    ("GET /users: limit 0", get("/users", limit="0"), invalid("limit")),
    ("GET /users: limit 1001", get("/users", limit="1001"), invalid("limit")),
    ("GET /users: limit 'ten'", get("/users", limit="ten"), invalid("limit")),
    ("GET /users: limit 1.5", get("/users", limit="1.5"), invalid("limit")),
    ("GET /users: after of 10,000 chars", get("/users", after=HUGE), invalid("after")),
    ("GET /users: after of 65 chars", get("/users", after="a" * 65), invalid("after")),
    ("GET /users/messages: no recipient", get("/users/messages"), invalid("recipient")),
    (
        "GET /users/messages: an empty recipient",
        get("/users/messages", recipient=""),
        invalid("recipient"),
    ),
    (
        "GET /users/messages: recipient of 10,000 chars",
        get("/users/messages", recipient=HUGE),
        invalid("recipient"),
    ),
    (
        "GET /users/messages: limit 10**30",
        get("/users/messages", recipient="bob", limit=str(10**30)),
        invalid("limit"),
    ),
    (
        "GET /users/messages: after of 10,000 chars",
        get("/users/messages", recipient="bob", after=HUGE),
        invalid("after"),
    ),
    (
        "GET /users/messages: an unknown recipient",
        get("/users/messages", recipient="zoe"),
        refused(404, "Recipient does not exist"),
    ),
    # What U+D800 would be in UTF-8, which UTF-8 forbids: Starlette reads it as three U+FFFD,
    # which are not a username.
    (
        "GET /users/messages: a surrogate's UTF-8 bytes",
        call("GET", "/users/messages?recipient=%ED%A0%80"),
        invalid("recipient"),
    ),
    (
        "GET /webhooks: event_filter of 10,000 chars",
        get("/webhooks", event_filter=HUGE),
        invalid("event_filter"),
    ),
    (
        "GET /webhooks: event_filter of 65 chars",
        get("/webhooks", event_filter="e" * 65),
        invalid("event_filter"),
    ),
    (
        "GET /webhooks: event_filter 'ping'",
        get("/webhooks", event_filter="ping"),
        refused(404, "Event 'ping' not found."),
    ),
    (
        "GET /webhooks: event_filter 'user registered'",
        get("/webhooks", event_filter="user registered"),
        refused(404, "not found."),
    ),
    (
        "GET /webhooks: an empty event_filter",
        get("/webhooks", event_filter=""),
        refused(404, "not found."),
    ),
    (
        "GET /webhooks: event_filter NUL",
        get("/webhooks", event_filter="\u0000"),
        NUL_IN_URL,
    ),
    (
        "POST /ping: event_filter of 10,000 chars",
        call("POST", "/ping", params={"event_filter": HUGE}),
        invalid("event_filter"),
    ),
    (
        "POST /ping: event_filter 'ping'",
        call("POST", "/ping", params={"event_filter": "ping"}),
        refused(404, "Event 'ping' not found."),
    ),
    (
        "POST /ping: event_filter 'user registered'",
        call("POST", "/ping", params={"event_filter": "user registered"}),
        refused(404, "not found."),
    ),
    (
        "GET /events: event '*', not a real event",
        get("/events", event="*"),
        refused(404, "Event '*' not found"),
    ),
    (
        "GET /events: event 'user registered'",
        get("/events", event="user registered"),
        refused(404, "not found"),
    ),
    ("GET /events: event NUL", get("/events", event="\u0000"), NUL_IN_URL),
    ("GET /events: event of 10,000 chars", get("/events", event=HUGE), invalid("event")),
    ("GET /events: limit 10**30", get("/events", limit=str(10**30)), invalid("limit")),
    ("GET /events: limit -1", get("/events", limit="-1"), invalid("limit")),
    ("GET /events: limit 251", get("/events", limit="251"), invalid("limit")),
    ("GET /events: cursor of 10,000 chars", get("/events", cursor=HUGE), invalid("cursor")),
    ("GET /events: an empty cursor", get("/events", cursor=""), invalid("cursor")),
    (
        "deliveries: status 'bogus'",
        get(f"/webhooks/{WEBHOOK}/deliveries", status="bogus"),
        invalid("status"),
    ),
    (
        "deliveries: status 'PENDING'",
        get(f"/webhooks/{WEBHOOK}/deliveries", status="PENDING"),
        invalid("status"),
    ),
    (
        "deliveries: limit 10**30",
        get(f"/webhooks/{WEBHOOK}/deliveries", limit=str(10**30)),
        invalid("limit"),
    ),
    ("deliveries: limit 0", get(f"/webhooks/{WEBHOOK}/deliveries", limit="0"), invalid("limit")),
    (
        "deliveries: cursor of 10,000 chars",
        get(f"/webhooks/{WEBHOOK}/deliveries", cursor=HUGE),
        invalid("cursor"),
    ),
    (
        "deliveries: an empty cursor",
        get(f"/webhooks/{WEBHOOK}/deliveries", cursor=""),
        invalid("cursor"),
    ),
    # RefuseNul answers before any route runs: no NUL reaches the database as a position.
    ("GET /users: after NUL", get("/users", after="\u0000"), NUL_IN_URL),
    (
        "GET /users/messages: after NUL",
        get("/users/messages", recipient="bob", after="\u0000"),
        NUL_IN_URL,
    ),
    ("GET /events: cursor NUL", get("/events", cursor="\u0000"), NUL_IN_URL),
    ("deliveries: cursor NUL", get(f"/webhooks/{WEBHOOK}/deliveries", cursor="\u0000"), NUL_IN_URL),
    (
        "POST /ping: event_filter NUL",
        call("POST", "/ping", params={"event_filter": "\u0000"}),
        NUL_IN_URL,
    ),
)


@pytest.mark.parametrize(("sent", "refusal"), QUERIES)
async def test_a_bad_query_value_is_refused_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


# --- path parameters ------------------------------------------------------------------------

ID_ROUTES = {
    "PATCH /webhooks/{id}": ("PATCH", "/webhooks/{}", {"description": "changed"}, "endpoint_id"),
    "recover": ("POST", "/webhooks/{}/recover", {"since": "2020-01-01T00:00:00Z"}, "endpoint_id"),
    "deliveries": ("GET", "/webhooks/{}/deliveries", None, "endpoint_id"),
    "POST /users/{username}/token": ("POST", "/users/{}/token", None, "username"),
}
ROUTE_MISSED = refused(404, "Not Found")


def _path_ids() -> list[Any]:
    cases = []
    for route, (method, template, document, name) in ID_ROUTES.items():
        unknown = "does not exist" if name == "username" else "not found"
        # A username is ASCII (USERNAME_PATTERN); an id is only looked up.
        outside = invalid(name) if name == "username" else refused(404, unknown)
        bad_ids = [
            ("10,000 chars", "w" * 10_000, invalid(name)),
            ("65 chars", "w" * 65, invalid(name)),
            ("NUL", "wh_%00", NUL_IN_URL),
            ("..%2F", "..%2Fusers", ROUTE_MISSED),
            ("%2E%2E", "%2E%2E", refused(404, unknown)),
            ("unicode", "wh_\u00e9t\u00e9", outside),
            ("an emoji", "wh_\U0001f600", outside),
        ]
        for kind, value, refusal in bad_ids:
            sent = call(method, template.format(value), document)
            cases.append((f"{route}: {kind}", sent, refusal))
    return table(*cases)


@pytest.mark.parametrize(("sent", "refusal"), _path_ids())
async def test_a_bad_path_id_is_refused_and_writes_nothing(bad, sent, refusal):
    await assert_refused_and_nothing_written(bad, sent, refusal)


# --- what is accepted that one might expect refused: pinned ---------------------------------


@pytest.mark.parametrize(
    "encoding",
    ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"],
    ids=["UTF-8 BOM", "UTF-16", "UTF-16 no BOM", "UTF-32"],
)
async def test_a_utf8_bom_and_utf16_or_32_json_are_read_as_json(bad, encoding):
    # Python's json detects the encoding from the first bytes (RFC 8259 allows ignoring a BOM).
    sent = users(None, content='{"username": "Encoded"}'.encode(encoding))

    response = await bad.send(sent)

    assert response.status_code == 201, response.text
    assert response.json()["username"] == "encoded"


async def test_an_event_name_with_spaces_around_it_is_trimmed_not_refused(bad):
    response = await bad.send(webhook(event="USER_REGISTERED ", url=OTHER))

    assert response.status_code == 201, response.text
    assert response.json()["event"] == "user_registered"


async def test_a_repeated_json_key_takes_its_last_value(bad):
    response = await bad.send(users(None, content=b'{"username": "first", "username": "last"}'))

    assert response.status_code == 201, response.text
    assert response.json()["username"] == "last"


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(value, id=name)
        for name, value in {
            'the string "true"': "true",
            'the string "false"': "false",
            'the string "yes"': "yes",
            'the string "on"': "on",
            'the string "1"': "1",
            'the string "0"': "0",
            "the number 1": 1,
            "the number 0": 0,
            "the number 1.0": 1.0,
        }.items()
    ],
)
async def test_enabled_takes_no_spelling_of_a_bool_but_json_true_and_false(bad, spelling):
    await assert_refused_and_nothing_written(bad, patch({"enabled": spelling}), invalid("enabled"))


async def test_enabled_json_false_disables_the_webhook_and_true_enables_it_again(bad):
    disabled = await bad.send(patch({"enabled": False}))

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False

    enabled = await bad.send(patch({"enabled": True}))

    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True
