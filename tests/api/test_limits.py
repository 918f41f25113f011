"""Request limits (bodies over 1 MiB are 413) and the per-caller rate limit."""

import hashlib
import json
from contextlib import asynccontextmanager

import httpx
import pytest

from hookline.api.app import create_app
from hookline.api.limits import FAILED_AUTH_BURST, BodySizeLimit, RateLimit, caller_key

MIB = 1_048_576
CHUNK = 64 * 1024
TOO_LARGE = {"detail": f"Request body is larger than {MIB} bytes"}
HOOK = "http://127.0.0.1:9/hook"


@asynccontextmanager
async def limited_app(settings, middleware=None, **options):
    """The app with `middleware` added as the app factory's caller would, lifespan running."""
    app = create_app(settings)
    if middleware is not None:
        app.add_middleware(middleware, **options)
    async with app.router.lifespan_context(app):
        yield app


def client_of(app, *, token=None, ip="127.0.0.1"):
    """An httpx client on `app` from address `ip`, sending `token` as its bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


def admin_token(settings):
    return settings.admin_token.get_secret_value()


@pytest.fixture
async def body_limited(settings):
    """An admin client on the app as create_app builds it: 1 MiB at most."""
    async with (
        limited_app(settings) as app,
        client_of(app, token=admin_token(settings)) as client,
    ):
        yield client


def padded(document, size):
    """`document` as JSON, padded with spaces to exactly `size` bytes."""
    encoded = json.dumps(document).encode()
    assert len(encoded) <= size
    return encoded + b" " * (size - len(encoded))


class Chunks:
    """A streamed body: `document`, then 64 KiB chunks of spaces up to `size`; counts pulls."""

    def __init__(self, document, size):
        self.head = json.dumps(document).encode()
        self.size = size
        self.pulled = 0

    @property
    def total(self):
        return 1 + -(-(self.size - len(self.head)) // CHUNK)

    async def __aiter__(self):
        self.pulled += 1
        yield self.head
        left = self.size - len(self.head)
        while left > 0:
            self.pulled += 1
            yield b" " * min(CHUNK, left)
            left -= CHUNK


async def usernames(client):
    response = await client.get("/users")
    assert response.status_code == 200, response.text
    return [user["username"] for user in response.json()]


# --- BodySizeLimit ---------------------------------------------------------------------------


async def test_a_body_of_exactly_one_mebibyte_is_accepted(body_limited):
    body = padded({"username": "alice"}, MIB)

    response = await body_limited.post(
        "/users", content=body, headers={"Content-Type": "application/json"}
    )

    assert len(body) == MIB
    assert response.status_code == 201, response.text
    assert await usernames(body_limited) == ["alice"]


async def test_a_declared_body_one_byte_over_is_413_and_writes_nothing(body_limited):
    response = await body_limited.post(
        "/users",
        content=padded({"username": "alice"}, MIB + 1),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert response.headers["connection"] == "close"
    assert await usernames(body_limited) == []


async def test_a_declared_oversized_body_is_refused_before_any_of_it_is_read(body_limited):
    body = Chunks({"username": "alice"}, 64 * MIB)

    response = await body_limited.post(
        "/users",
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": str(64 * MIB)},
    )

    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert body.pulled == 0
    assert await usernames(body_limited) == []


async def test_a_chunked_body_of_exactly_one_mebibyte_is_accepted(body_limited):
    body = Chunks({"username": "alice"}, MIB)

    response = await body_limited.post(
        "/users", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 201, response.text
    assert body.pulled == body.total


MESSAGE = {"sender": "alice", "recipient": "bob", "subject": "Hi", "message": "Hello"}
WEBHOOK = {"event": "user_registered", "url": HOOK}


@pytest.mark.parametrize(
    ("path", "document"), [("/users/messages", MESSAGE), ("/webhook", WEBHOOK)]
)
async def test_an_oversized_chunked_body_is_413_unread_and_writes_nothing(
    body_limited, path, document
):
    for name in ("alice", "bob"):
        assert (await body_limited.post("/users", json={"username": name})).status_code == 201
    body = Chunks(document, 64 * MIB)  # a valid request, padded: without the limit, a 201

    response = await body_limited.post(
        path, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert body.pulled <= MIB // CHUNK + 2  # 17 of 1024 chunks pass the limit
    messages = await body_limited.get("/users/messages", params={"recipient": "bob"})
    assert messages.json() == []
    webhooks = await body_limited.get("/webhooks")
    assert all(entry["urls"] == [] for entry in webhooks.json()["webhooks"])


def scope_of(headers, path="/users", method="POST"):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def call(app, scope, chunks):
    """Run one request through `app` by hand: (status, JSON body, chunks the app pulled)."""
    pulled = 0
    sent = []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        return {
            "type": "http.request",
            "body": chunks[pulled - 1],
            "more_body": pulled < len(chunks),
        }

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], json.loads(body), pulled


@pytest.mark.parametrize(
    "values",
    [[b"abc"], [b"-1"], [b"1.5"], [b""], [b"+2"], [b"1_0"], [b"0x2"], [b"2", b"3"], [b"2, 3"]],
    ids=["letters", "negative", "fraction", "empty", "plus", "underscore", "hex", "two", "list"],
)
async def test_an_invalid_content_length_is_400_before_the_app_runs(settings, values):
    token = admin_token(settings).encode()
    headers = [(b"authorization", b"Bearer " + token)]
    headers += [(b"content-length", value) for value in values]
    async with limited_app(settings, BodySizeLimit, max_bytes=MIB) as app:
        status, body, pulled = await call(app, scope_of(headers), [b'{"username":"alice"}'])

    assert (status, body) == (400, {"detail": "Invalid Content-Length"})
    assert pulled == 0


async def test_a_body_longer_than_its_content_length_is_still_cut_off(settings):
    token = admin_token(settings).encode()
    headers = [(b"authorization", b"Bearer " + token), (b"content-length", b"20")]
    chunks = [b'{"username":"alice"}', *[b" " * CHUNK] * 1024]
    async with limited_app(settings, BodySizeLimit, max_bytes=MIB) as app:
        status, body, pulled = await call(app, scope_of(headers), chunks)
        async with client_of(app, token=admin_token(settings)) as client:
            assert await usernames(client) == []

    assert (status, body) == (413, TOO_LARGE)
    assert pulled <= MIB // CHUNK + 2


async def test_the_app_is_not_called_for_a_declared_oversized_body():
    calls = []

    async def app(scope, receive, send):
        calls.append(scope)

    sent = []

    async def send(message):
        sent.append(message)

    headers = [(b"content-length", str(MIB + 1).encode())]
    await BodySizeLimit(app, max_bytes=MIB)(scope_of(headers), None, send)

    assert calls == []
    assert sent[0]["status"] == 413


@pytest.mark.parametrize(
    "middleware",
    [
        lambda app: BodySizeLimit(app, max_bytes=0),
        lambda app: RateLimit(app, per_second=1, burst=1),
    ],
    ids=["body size", "rate"],
)
@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
async def test_scopes_other_than_http_pass_through_untouched(middleware, kind):
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, receive, send))

    async def receive():
        return {"type": f"{kind}.startup" if kind == "lifespan" else "websocket.connect"}

    async def send(message):
        pass

    scope = {"type": kind, "asgi": {"version": "3.0"}}
    wrapped = middleware(app)
    for _ in range(3):  # a rate limit of one would refuse the second
        await wrapped(scope, receive, send)

    assert seen == [(scope, receive, send)] * 3


# --- RateLimit -------------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@asynccontextmanager
async def rate_limited(settings, clock, **options):
    options = {"per_second": 1, "burst": 5, **options}
    async with limited_app(settings, RateLimit, clock=clock, **options) as app:
        yield app


async def statuses(client, count, path="/users"):
    return [(await client.get(path)).status_code for _ in range(count)]


async def test_a_burst_passes_then_the_next_request_is_429_with_retry_after(settings, clock):
    async with (
        rate_limited(settings, clock, per_second=1, burst=5) as app,
        client_of(app, token=admin_token(settings)) as admin,
    ):
        assert await statuses(admin, 5) == [200] * 5
        response = await admin.get("/users")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "detail": "Rate limit exceeded: at most 5 requests at once and 1 per second"
    }


async def test_a_token_comes_back_after_a_second(settings, clock):
    async with (
        rate_limited(settings, clock, per_second=1, burst=5) as app,
        client_of(app, token=admin_token(settings)) as admin,
    ):
        assert await statuses(admin, 6) == [200] * 5 + [429]
        clock.advance(1)
        assert await statuses(admin, 2) == [200, 429]


async def test_retry_after_is_the_wait_for_the_next_token(settings, clock):
    async with (
        rate_limited(settings, clock, per_second=0.25, burst=1) as app,
        client_of(app, token=admin_token(settings)) as admin,
    ):
        assert await statuses(admin, 1) == [200]
        first = await admin.get("/users")
        clock.advance(1.5)
        later = await admin.get("/users")

    assert first.headers["retry-after"] == "4"
    assert later.headers["retry-after"] == "3"  # 2.5 s, rounded up
    assert first.json()["detail"].endswith("at most 1 requests at once and 0.25 per second")


async def test_each_token_has_its_own_bucket(settings, clock):
    async with (
        rate_limited(settings, clock, burst=5) as app,
        client_of(app, token=admin_token(settings)) as admin,
    ):
        assert await statuses(admin, 6) == [200] * 5 + [429]
        async with client_of(app, ip="192.0.2.7") as anyone:
            registered = await anyone.post("/users", json={"username": "alice"})
        assert registered.status_code == 201
        async with client_of(app, token=registered.json()["token"]) as alice:
            assert await statuses(alice, 6) == [200] * 5 + [429]


async def test_callers_without_a_token_are_told_apart_by_address(settings, clock):
    async with (
        rate_limited(settings, clock, burst=5) as app,
        client_of(app, ip="192.0.2.1") as first,
        client_of(app, ip="192.0.2.2") as second,
    ):
        assert await statuses(first, 6) == [401] * 5 + [429]
        assert await statuses(second, 1) == [401]
        assert await statuses(first, 1) == [429]


async def test_health_and_ready_are_never_limited(settings, clock):
    async with (
        rate_limited(settings, clock, burst=1) as app,
        client_of(app, token=admin_token(settings)) as admin,
    ):
        assert await statuses(admin, 10, "/health") == [200] * 10
        assert await statuses(admin, 10, "/ready") == [200] * 10
        assert await statuses(admin, 2) == [200, 429]  # the probes spent none of its token


async def test_the_least_recently_seen_caller_is_forgotten_first(settings, clock):
    async with rate_limited(settings, clock, burst=1, max_buckets=2) as app:
        a, b, c = (client_of(app, ip=f"192.0.2.{n}") for n in (1, 2, 3))
        async with a, b, c:
            assert await statuses(a, 2) == [401, 429]
            assert await statuses(b, 2) == [401, 429]
            assert await statuses(a, 1) == [429]  # a is now the most recently seen
            assert await statuses(c, 1) == [401]  # two buckets at most: b's goes
            assert await statuses(b, 1) == [401]  # forgotten, so full again; a's goes
            assert await statuses(a, 1) == [401]


async def test_no_more_than_max_buckets_are_kept(settings, clock):
    app = create_app(settings)
    limiter = RateLimit(app, per_second=1, burst=1, max_buckets=3, clock=clock)
    async with app.router.lifespan_context(app):
        for n in range(10):
            async with client_of(limiter, ip=f"192.0.2.{n}") as caller:
                assert await statuses(caller, 1) == [401]

    assert limiter.bucket_count == 3


async def test_a_rate_of_zero_never_limits(settings, clock):
    async with (
        rate_limited(settings, clock, per_second=0, burst=1) as app,
        client_of(app, token=admin_token(settings)) as admin,
    ):
        assert await statuses(admin, 20) == [200] * 20


@pytest.mark.parametrize(
    ("headers", "client", "key"),
    [
        ([(b"authorization", b"Bearer hl_user_abc")], ("192.0.2.1", 1), "token"),
        ([(b"authorization", b"bearer hl_user_abc")], ("192.0.2.1", 1), "token"),
        ([(b"authorization", b"Basic dXNlcjpwYXNz")], ("192.0.2.1", 1), "ip:192.0.2.1"),
        ([(b"authorization", b"Bearer ")], ("192.0.2.1", 1), "ip:192.0.2.1"),
        ([], ("192.0.2.1", 1), "ip:192.0.2.1"),
        ([], None, "ip:unknown"),
    ],
    ids=["bearer", "lowercase scheme", "basic", "empty token", "no header", "no client"],
)
def test_callers_are_keyed_by_a_hash_of_their_known_token_else_their_address(headers, client, key):
    scope = {"type": "http", "headers": headers, "client": client}
    known = {hashlib.sha256(b"hl_user_abc").hexdigest()}

    found = caller_key(scope, known)
    unknown = caller_key(scope)

    assert unknown == ("ip:192.0.2.1" if key == "token" else key)
    if key == "token":
        assert found == "token:" + hashlib.sha256(b"hl_user_abc").hexdigest()
        assert "hl_user_abc" not in found
    else:
        assert found == key


async def test_the_app_limits_each_caller_at_the_configured_rate(make_settings):
    settings = make_settings(rate_limit_per_second=0.01, rate_limit_burst=3)
    async with limited_app(settings) as app, client_of(app, token=admin_token(settings)) as client:
        answers = [(await client.get("/users")).status_code for _ in range(4)]
        healthy = (await client.get("/health")).status_code
        async with client_of(app, ip="10.9.8.7") as stranger:
            other = (await stranger.post("/users", json={"username": "stranger"})).status_code

    assert answers == [200, 200, 200, 429]
    assert healthy == 200
    assert other == 201


async def test_a_made_up_token_per_request_counts_against_the_address(settings, clock):
    async with rate_limited(settings, clock, burst=5) as app:
        answers = []
        for n in range(12):
            async with client_of(app, token=f"hl_user_guess{n}", ip="192.0.2.9") as guesser:
                answers.append((await guesser.get("/users")).status_code)
        async with client_of(app, token=admin_token(settings), ip="192.0.2.10") as admin:
            other = (await admin.get("/users")).status_code

    assert answers == [401] * 5 + [429] * 7
    assert other == 200


async def test_failed_authentications_are_throttled_per_address(settings, clock):
    async with rate_limited(settings, clock, burst=1000, per_second=1000) as app:
        async with client_of(app, token=admin_token(settings), ip="192.0.2.9") as admin:
            assert await statuses(admin, 1) == [200]  # genuine before the guessing starts
        answers = []
        for n in range(30):
            async with client_of(app, token=f"hl_user_guess{n}", ip="192.0.2.9") as guesser:
                answers.append(await guesser.get("/users"))
        async with client_of(app, token=admin_token(settings), ip="192.0.2.9") as admin:
            genuine = await statuses(admin, 3)
        clock.advance(2)
        async with client_of(app, token="hl_user_later", ip="192.0.2.9") as guesser:
            later = (await guesser.get("/users")).status_code

    assert [a.status_code for a in answers] == [401] * FAILED_AUTH_BURST + [429] * 10
    assert answers[-1].json() == {"detail": "Too many failed authentications"}
    assert genuine == [200] * 3  # a token known to be genuine is not held back
    assert later == 401  # two seconds later, two more guesses may be judged
