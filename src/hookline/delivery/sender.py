"""One delivery attempt: a signed POST, to a checked address, redirects not followed."""

import asyncio
import codecs
import functools
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp.abc import AbstractResolver
from pyreqwest import exceptions as rx
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.response import Response
from yarl import URL

from hookline import __version__
from hookline.config import Settings
from hookline.delivery import retry, signing, ssrf
from hookline.models import utcnow
from hookline.secretbox import SecretBox

RESPONSE_BODY_LIMIT = 4096
# What the client buffers of an answer's body ahead of the reader: the kept part and a little.
READ_BUFFER_BYTES = 16_384
# What is kept of an answer's headers: this many at most, of this many bytes in all.
RESPONSE_HEADERS_LIMIT = 50
RESPONSE_HEADERS_BYTES = 4096
USER_AGENT = f"hookline/{__version__}"


# What an attempt records in place of the value of each of its endpoint's custom headers.
REDACTED = "(redacted)"


@dataclass(slots=True)  # made per attempt: not frozen, whose __init__ costs ~7x
class Outcome:
    """What one attempt came to; `error_kind` is None only for an answered request."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error_kind: str | None = None
    error: str | None = None
    # The request's headers as sent (the signature included, the endpoint's custom header
    # values redacted; None when nothing was sent) and the answer's (None when none came),
    # lowercased names.
    request_headers: dict[str, str] | None = None
    response_headers: dict[str, str] | None = None
    # Seconds the receiver asked to wait (Retry-After on 429 or 503); not stored.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer: every other answer or failure carries an error kind."""
        return self.error_kind is None

    def as_row(self) -> dict[str, Any]:
        """The attempt's columns but its delivery, number and trigger."""
        return {
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "request_headers": self.request_headers,
            "status_code": self.status_code,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
            "error_kind": self.error_kind,
            "error": self.error,
        }


# Seconds a host's checked address is used before the name is looked up again.
DNS_TTL = 60.0
# Closing retired clients: kept here until done, so that they are not collected mid-way.
_CLOSING: set["asyncio.Task[None]"] = set()


@dataclass(frozen=True, slots=True)
class _Pinned:
    address: str
    client: Client
    until: float


class Sender:
    """Posts signed webhooks; one instance per process.

    The client is pyreqwest (Rust's reqwest and hyper): the HTTP work runs in its own thread,
    off the event loop, which keeps only the awaiting (about a fifth of aiohttp's CPU per
    request on the loop). Every name is resolved here, through the SSRF guard, and the client
    for that host is pinned to the checked address (reqwest's static resolve), so the address
    checked is the address connected to. One client per host, rebuilt when its name is looked
    up again after `DNS_TTL` seconds and resolves elsewhere; literal addresses share one.
    """

    def __init__(
        self,
        *,
        timeout: float,
        concurrency: int,
        allow_private_networks: bool = False,
        resolver: AbstractResolver | None = None,
        box: SecretBox | None = None,
        destinations: ssrf.DestinationCheck | None = None,
    ) -> None:
        """`destinations`, when given, is the process's one check (registration asks it too);
        otherwise one is made of `allow_private_networks` and `resolver`."""
        self._timeout = timeout
        self._concurrency = concurrency
        self._destinations = destinations or ssrf.DestinationCheck(
            allow_private_networks=allow_private_networks, resolver=resolver
        )
        # Secrets and custom header values come sealed as stored; only signing and the request
        # see them open.
        self._box = box
        # host -> its pinned client; literal addresses (no lookup) share `_direct`.
        self._pinned: dict[str, _Pinned] = {}
        self._looking_up: dict[str, asyncio.Future[_Pinned]] = {}
        self._direct: Client | None = None
        # Clients whose host moved: closed once no attempt can still be using them.
        self._retired: list[tuple[float, Client]] = []
        # Answers are kept as they come: a compressed one would be stored unreadable. reqwest
        # adds `accept: */*`; it is listed so that what an attempt records is what was sent.
        self._headers = {
            "user-agent": USER_AGENT,
            "content-type": "application/json",
            "accept-encoding": "identity",
            "accept": "*/*",
        }

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        resolver: AbstractResolver | None = None,
        box: SecretBox | None = None,
        destinations: ssrf.DestinationCheck | None = None,
    ) -> "Sender":
        return cls(
            timeout=settings.delivery_timeout,
            concurrency=settings.worker_concurrency,
            allow_private_networks=settings.allow_private_networks,
            resolver=resolver,
            box=box,
            destinations=destinations,
        )

    def _client(self, pin: tuple[str, str] | None = None) -> Client:
        builder = (
            ClientBuilder()
            .timeout(timedelta(seconds=self._timeout))
            .max_connections(self._concurrency)
            .follow_redirects(False)
            .error_for_status(False)
            .no_proxy()  # a proxy would connect to what it likes, past the guard
            .gzip(False)
            .brotli(False)
            .deflate(False)
            .zstd(False)
            .http1_lower_case_headers()  # names as given, as receivers always got them
            .user_agent(USER_AGENT)
            .default_headers({k: v for k, v in self._headers.items() if k != "user-agent"})
        )
        if pin is not None:
            host, address = pin
            builder = builder.resolve(host, address, 0)  # the URL's port is the one used
        return builder.build()

    async def start(self) -> None:
        self._direct = self._client()

    async def close(self) -> None:
        clients = [p.client for p in self._pinned.values()] + [c for _, c in self._retired]
        if self._direct is not None:
            clients.append(self._direct)
        self._pinned.clear()
        self._retired.clear()
        self._direct = None
        for client in clients:
            await client.close()

    async def _client_for(self, host: str, port: int) -> Client:
        """The client pinned to a checked address of `host`; raises ForbiddenDestination or
        OSError (the name does not resolve). Attempts to one host wait for one lookup."""
        pinned = self._pinned.get(host)
        if pinned is not None and pinned.until > asyncio.get_running_loop().time():
            return pinned.client
        lookup = self._looking_up.get(host)
        if lookup is None:
            # A task of its own, shielded: an attempt cancelled meanwhile leaves it to the others.
            lookup = asyncio.ensure_future(self._look_up(host, port))
            self._looking_up[host] = lookup
            lookup.add_done_callback(lambda _: self._looking_up.pop(host, None))
        return (await asyncio.shield(lookup)).client

    async def _look_up(self, host: str, port: int) -> _Pinned:
        found = await self._destinations.resolver().resolve(host, port, socket.AF_UNSPEC)
        if not found:
            raise OSError(f"{host} does not resolve to any address")
        # One address per host (reqwest's static resolve takes one): IPv4 when there is one,
        # the family reachable nearly everywhere; every address the name has was checked.
        address = next(
            (r["host"] for r in found if r["family"] == socket.AF_INET), found[0]["host"]
        )
        now = asyncio.get_running_loop().time()
        pinned = self._pinned.get(host)
        if pinned is not None and pinned.address == address:
            fresh = _Pinned(address, pinned.client, now + DNS_TTL)
        else:
            if pinned is not None:
                self._retire(pinned.client, now)
            fresh = _Pinned(address, self._client((host, address)), now + DNS_TTL)
        self._pinned[host] = fresh
        return fresh

    def _retire(self, client: Client, now: float) -> None:
        """Close `client` once an attempt begun on it must have ended (its timeout and a second)."""
        self._retired.append((now, client))
        grace = self._timeout + 1
        while self._retired and self._retired[0][0] + grace < now:
            _, old = self._retired.pop(0)
            task = asyncio.get_running_loop().create_task(old.close())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    async def send(
        self,
        *,
        url: str,
        msg_id: str,
        body: bytes,
        secrets: Sequence[str],
        headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        """POST once; never raises for anything the receiver or the network does."""
        if self._direct is None:
            raise RuntimeError("Sender.start() was not called")
        started_at = utcnow()
        started = time.perf_counter()
        stamp = int(time.time())
        # What the attempt records: set once the request goes out, and once an answer came.
        sent: dict[str, str] | None = None
        answered: dict[str, str] | None = None

        def finish(**fields: Any) -> Outcome:
            duration_ms = round((time.perf_counter() - started) * 1000)
            return Outcome(
                started_at=started_at,
                duration_ms=duration_ms,
                request_headers=sent,
                response_headers=answered,
                **fields,
            )

        route = _route(url, self._destinations.guarded)
        if route.refused is not None:
            kind, error = route.refused
            return finish(error_kind=kind, error=error)

        try:
            # Inside the try: a secret or header value that does not open is an attempt that
            # failed (recorded, retried), never a delivery dropped.
            if self._box is not None:
                secrets = [self._box.open(secret) for secret in secrets]
                headers = {name: self._box.open(value) for name, value in (headers or {}).items()}
            host, port = route.host, route.port
            if route.literal:  # connected to as it is, no lookup: checked by _route
                client = self._direct
            else:
                try:
                    client = await self._client_for(host, port)
                except ssrf.ForbiddenDestination as exc:
                    return finish(error_kind="forbidden_destination", error=str(exc))
                except OSError as exc:
                    return finish(
                        error_kind="connection_error",
                        error=_describe_os(f"Cannot connect to host {host}:{port}", exc),
                    )
            # The endpoint's custom headers first: ours override them (reserved names are
            # refused when they are set, this is the second line).
            request_headers = dict(headers or {})
            request_headers["webhook-id"] = msg_id
            request_headers["webhook-timestamp"] = str(stamp)
            request_headers["webhook-signature"] = signing.signature_header(
                secrets, msg_id, stamp, body
            )
            # Streamed: the answer's body is read only as far as the attempt keeps it (a built
            # request would read all of it, however large, into memory first).
            request = (
                client.post(url)
                .headers(request_headers)
                .body_bytes(body)
                .streamed_read_buffer_limit(READ_BUFFER_BYTES)
                .build_streamed()
            )
            # Recorded with the endpoint's own header values hidden: they are often a
            # receiver's credentials, sealed at rest, and the attempt is kept in the clear.
            if headers:
                sent = self._headers | {k.lower(): v for k, v in request_headers.items()}
                sent.update((name.lower(), REDACTED) for name in headers)
            else:  # only ours, lowercase already
                sent = self._headers | request_headers
            # Leaving the block drops the connection if the body was not read to its end.
            async with request as response:
                answered = kept_headers(response.headers.items())
                answer = await _read_limited(response)
                status = response.status
                wait = None
                if status in retry.RETRY_AFTER_STATUSES:
                    wait = retry.parse_retry_after(response.get_header("retry-after"), utcnow())
        except TimeoutError:  # pyreqwest's timeouts are TimeoutErrors too
            return finish(error_kind="timeout", error=f"no answer within {self._timeout} s")
        except rx.TransportError as exc:
            kind = "tls_error" if _is_tls(exc) else "connection_error"
            return finish(error_kind=kind, error=_describe(exc))
        except rx.RequestError as exc:
            return finish(error_kind="connection_error", error=_describe(exc))
        except ValueError as exc:  # a URL the client cannot parse
            sent = None
            return finish(error_kind="invalid_url", error=_describe(exc))
        except Exception as exc:  # a bug must not kill the worker; the attempt records it
            return finish(error_kind="internal_error", error=_describe(exc))

        if 200 <= status < 300:
            return finish(status_code=status, response_body=answer)
        return finish(
            status_code=status,
            response_body=answer,
            error_kind="http_status",
            error=f"receiver answered HTTP {status}",
            retry_after=wait,
        )


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a URL goes: its host (as the client looks it up), port, whether the host is a
    literal address, and why no request may go there, if so: (error kind, error)."""

    host: str
    port: int
    literal: bool
    refused: tuple[str, str] | None = None


@functools.lru_cache(maxsize=4096)  # the same endpoints' URLs, attempt after attempt
def _route(url: str, guarded: bool) -> _Route:
    try:
        parsed = URL(url)
    except ValueError as exc:
        return _Route("", 0, False, ("invalid_url", _describe(exc)))
    host, port = ssrf.host_and_port(parsed)
    try:
        # A literal address is connected to as it is: checked here, as no lookup comes.
        literal = ssrf.check_literal(host) if guarded else ssrf.literal_address(host) is not None
    except ssrf.ForbiddenDestination as exc:
        return _Route("", 0, False, ("forbidden_destination", str(exc)))
    if parsed.scheme not in ("http", "https") or not host:
        return _Route("", 0, False, ("invalid_url", f"not an http(s) URL: {url!r}"[:1000]))
    return _Route(host, port, literal)


def kept_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """An answer's headers as stored: lowercased names, repeated ones joined with ", ", at most
    RESPONSE_HEADERS_LIMIT of them and RESPONSE_HEADERS_BYTES in all (the rest dropped)."""
    kept: dict[str, str] = {}
    size = 0
    for name, value in items:
        # Undecodable bytes (aiohttp keeps them as surrogates) and NUL cannot be stored.
        name, value = _storable(name.lower()), _storable(value)
        if name in kept:
            size += len(value.encode()) + 2
            if size > RESPONSE_HEADERS_BYTES:
                break
            kept[name] += ", " + value
            continue
        size += len(name.encode()) + len(value.encode())
        if len(kept) >= RESPONSE_HEADERS_LIMIT or size > RESPONSE_HEADERS_BYTES:
            break
        kept[name] = value
    return kept


def _storable(text: str) -> str:
    if text.isascii() and "\x00" not in text:  # nearly every header: nothing to replace
        return text
    return text.encode("utf-8", "replace").decode().replace("\x00", "\ufffd")


_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")


async def _read_limited(response: Response) -> str:
    chunks: list[bytes] = []
    size = 0
    reader = response.body_reader
    while size < RESPONSE_BODY_LIMIT:
        chunk = await reader.read(RESPONSE_BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(bytes(chunk))
        size += len(chunks[-1])
    if not chunks:
        return ""
    # Not final: a character the limit cut in half is dropped, not turned into U+FFFD.
    text = _UTF8_DECODER("replace").decode(b"".join(chunks)[:RESPONSE_BODY_LIMIT], final=False)
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "\ufffd")


def _causes(exc: BaseException) -> list[str]:
    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    return [str(c.get("message", "")) for c in causes or [] if isinstance(c, dict)]


def _is_tls(exc: BaseException) -> bool:
    return any("tls" in c.lower() or "certificate" in c.lower() for c in _causes(exc))


_GENERIC_CAUSES = ("error sending request for url", "client error (")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, rx.PyreqwestError):
        # reqwest's chain of causes, without its generic links and the URL (whose path or
        # query may hold a token): "ConnectError: tcp connect error: Connection refused …"
        causes = [c for c in _causes(exc) if not c.startswith(_GENERIC_CAUSES)]
        text = ": ".join(causes) or exc.message
    else:
        text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]


def _describe_os(what: str, exc: OSError) -> str:
    return f"{type(exc).__name__}: {what} [{exc.strerror or exc}]"[:1000]
