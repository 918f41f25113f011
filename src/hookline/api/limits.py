"""Request limits as pure ASGI middleware: a body size cap and a rate limit.

Pure ASGI, not `BaseHTTPMiddleware`: that one buffers and breaks streaming. Each middleware
answers with `{"detail": ...}` itself and, when it refuses, the app never runs or never gets
past reading the body, so nothing the request would have written is committed.
"""

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

import orjson
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Liveness and readiness probes must answer however busy a caller is.
UNLIMITED_PATHS = frozenset({"/health", "/ready"})

_DIGITS = re.compile(rb"[0-9]+")


class _BodyTooLarge(Exception):
    """Raised from `receive()` once the body has passed the limit; never leaves the middleware."""


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, None without one; ValueError unless it is one integer."""
    values = {
        part.strip()
        for name, value in scope["headers"]
        if name.lower() == b"content-length"
        for part in value.split(b",")
    }
    if not values:
        return None
    if len(values) > 1:  # repeated or listed with different values: the framing is unknown
        raise ValueError("conflicting Content-Length values")
    (value,) = values
    if not _DIGITS.fullmatch(value):  # int() would take "+5", " 5" and "1_000"
        raise ValueError("Content-Length is not a non-negative integer")
    return int(value)


def _refusal(detail: str, status_code: int) -> JSONResponse:
    # The body may still be on the wire, unread: the connection cannot be reused.
    return JSONResponse(
        {"detail": detail}, status_code=status_code, headers={"Connection": "close"}
    )


class BodySizeLimit:
    """413 for a body over `max_bytes`: declared (before the app runs) or counted as it streams."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = 1_048_576) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes
        self._detail = f"Request body is larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            length = declared_length(scope)
        except ValueError:
            await _refusal("Invalid Content-Length", 400)(scope, receive, send)
            return
        if length is not None and length > self.max_bytes:
            await _refusal(self._detail, 413)(scope, receive, send)
            return

        received = 0
        refused = False  # the body passed the limit before the app started its response
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = not started
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # whatever the app answers to the failed read (FastAPI: a 400) is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # The app may have wrapped our exception (a 400, an ExceptionGroup): any failure
            # after the refusal is the refusal. Once a response started, the server must abort.
            if not refused:
                raise
        if refused:
            await _refusal(self._detail, 413)(scope, receive, send)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


# Where auth writes the hash of a token it accepted, for the limiter to learn it is genuine.
AUTHENTICATED = "hookline.authenticated"


def bearer_hash(scope: Scope) -> str | None:
    """The SHA-256 of the request's bearer token, None without one (the limiter's memory
    never holds a usable credential)."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return hashlib.sha256(token.encode("latin-1")).hexdigest()
            break
    return None


def address_key(scope: Scope) -> str:
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


def caller_key(scope: Scope, known_tokens: Collection[str] = ()) -> str:
    """Whom a request counts against: a token that has authenticated before, else its client
    address, so that made-up tokens cannot each bring a full bucket of their own."""
    hashed = bearer_hash(scope)
    if hashed is not None and hashed in known_tokens:
        return "token:" + hashed
    return address_key(scope)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Buckets:
    """Token buckets by key, the least recently seen forgotten first past `max_buckets`."""

    def __init__(self, *, per_second: float, burst: int, max_buckets: int) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> int | None:
        """Spend one token of `key`'s bucket: None if there was one, else seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)  # a clock that steps back refills nothing
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.per_second)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        # The epsilon keeps float noise (0.1 per second) from rounding a whole second up.
        return max(1, math.ceil((1 - bucket.tokens) / self.per_second - 1e-9))

    def empty(self, key: str, now: float) -> bool:
        """Whether `key` has no token left now (without spending one)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        refilled = bucket.tokens + max(0.0, now - bucket.updated) * self.per_second
        return refilled < 1


# Failed authentications allowed per client address: this many at once, then one a second.
FAILED_AUTH_BURST = 20
FAILED_AUTH_PER_SECOND = 1.0


class RateLimit:
    """A token bucket per caller: `burst` requests at once, refilled at `per_second`.

    A caller is a token once it has authenticated, else its client address; failed
    authentications from one address are limited apart (`FAILED_AUTH_*`): past them, that
    address's requests with tokens not known to be genuine are refused without a lookup.
    `per_second <= 0` turns it off. At most `max_buckets` callers are remembered; the least
    recently seen is forgotten first (it comes back with a full bucket).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        per_second: float,
        burst: int,
        max_buckets: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.enabled = per_second > 0
        if self.enabled and not math.isfinite(per_second):
            raise ValueError("per_second must be a finite number")
        if self.enabled and burst < 1:
            raise ValueError("burst must be >= 1")
        if max_buckets < 1:
            raise ValueError("max_buckets must be >= 1")
        self.per_second = per_second
        self.burst = burst
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets = _Buckets(per_second=per_second, burst=burst, max_buckets=max_buckets)
        self._failures = _Buckets(
            per_second=FAILED_AUTH_PER_SECOND, burst=FAILED_AUTH_BURST, max_buckets=max_buckets
        )
        # Tokens seen to authenticate (hashes), most recent last.
        self._known: OrderedDict[str, None] = OrderedDict()
        self._detail = (
            f"Rate limit exceeded: at most {burst} requests at once"
            f" and {_number(per_second)} per second"
        )

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or _path(scope) in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        now = self.clock()
        hashed = bearer_hash(scope)
        known = hashed is not None and hashed in self._known
        address = address_key(scope)
        if not known and self._failures.empty(address, now):
            await self._refuse(scope, receive, send, 1, "Too many failed authentications")
            return
        wait = self._buckets.take("token:" + hashed if known and hashed else address, now)
        if wait is not None:
            await self._refuse(scope, receive, send, wait, self._detail)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        scope[AUTHENTICATED] = None
        await self.app(scope, receive, watching_send)
        if hashed is not None and scope.get(AUTHENTICATED) == hashed and not known:
            self._remember(hashed)
            self._buckets.take("token:" + hashed, now)  # its first request counts as its own
        elif status == 401:
            self._failures.take(address, self.clock())

    def _remember(self, hashed: str) -> None:
        self._known[hashed] = None
        self._known.move_to_end(hashed)
        if len(self._known) > self.max_buckets:
            self._known.popitem(last=False)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, wait: int, detail: str) -> None:
        response = JSONResponse(
            {"detail": detail}, status_code=429, headers={"Retry-After": str(wait)}
        )
        await response(scope, receive, send)


def _path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


class RefuseNul:
    """400 for a NUL character in the path or the query string: no lookup may carry one
    (PostgreSQL text cannot hold it, and no id or name contains it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            response = JSONResponse(
                {"detail": "NUL characters are not allowed in paths or query values"},
                status_code=400,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# A JSON object in a request body may have at most this many keys: each unknown one costs a
# validation error, and tens of thousands of them cost seconds of CPU before any route runs.
MAX_OBJECT_KEYS = 1000
# Bodies smaller than this cannot hold enough keys to matter: they are not looked at.
_SHAPE_CHECK_FROM = 16_384


def _widest_object(value: object) -> int:
    """The most keys any object in a parsed JSON document has (iteratively: no recursion)."""
    widest, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            widest = max(widest, len(item))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return widest


class JsonShapeLimit:
    """422 for a large JSON body with an object of over `MAX_OBJECT_KEYS` keys, before the app
    parses and validates it. Runs inside BodySizeLimit, so the body is at most 1 MiB."""

    def __init__(self, app: ASGIApp, *, max_keys: int = MAX_OBJECT_KEYS) -> None:
        self.app = app
        self.max_keys = max_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = declared_length_or_none(scope)
        if length is not None and length < _SHAPE_CHECK_FROM:
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if len(body) >= _SHAPE_CHECK_FROM and self._too_wide(body):
            detail = f"A JSON object in the body has more than {self.max_keys} fields"
            await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}]), send)

    def _too_wide(self, body: bytes) -> bool:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False  # not JSON: the route says what is wrong with it
        return _widest_object(document) > self.max_keys


def declared_length_or_none(scope: Scope) -> int | None:
    try:
        return declared_length(scope)
    except ValueError:
        return None


def _replay(messages: list[Message]) -> Receive:
    """A receive() that gives these messages, then waits for the disconnect as servers do."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive
