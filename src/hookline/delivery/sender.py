"""One delivery attempt: a signed POST through a shared aiohttp session, redirects not followed."""

import codecs
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.connector import Connection
from aiohttp.http import RawResponseMessage
from aiohttp.streams import StreamReader

from hookline import __version__
from hookline.config import Settings
from hookline.delivery import retry, signing, ssrf
from hookline.models import utcnow
from hookline.secretbox import SecretBox

RESPONSE_BODY_LIMIT = 4096
# What is kept of an answer's headers: this many at most, of this many bytes in all.
RESPONSE_HEADERS_LIMIT = 50
RESPONSE_HEADERS_BYTES = 4096
# Informational (1xx) responses a receiver may send before its answer; one or two are legal.
MAX_INFORMATIONAL_RESPONSES = 10
USER_AGENT = f"hookline/{__version__}"


# What an attempt records in place of the value of each of its endpoint's custom headers.
REDACTED = "(redacted)"


@dataclass(frozen=True, slots=True)
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


class TooManyInformationalResponses(aiohttp.ClientError):
    """The receiver kept sending 1xx responses instead of an answer."""


class _Response(aiohttp.ClientResponse):
    """A response that refuses an endless stream of 1xx responses.

    ClientResponse.start() reads 1xx responses in a loop without a bound, so a receiver
    streaming `102 Processing` would hold the attempt (and a CPU core) until the timeout.
    start() reads each response with `protocol.read()`; for the length of start() that read is
    wrapped to count them. The error ends start(), and aiohttp then closes the connection.
    """

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        if protocol is None:
            return await super().start(connection)
        read = protocol.read
        informational = 0

        async def counted_read() -> tuple[RawResponseMessage, StreamReader]:
            nonlocal informational
            message, payload = await read()
            # The codes start() reads past: 1xx but 101 (Switching Protocols).
            if 100 <= message.code <= 199 and message.code != 101:
                informational += 1
                if informational > MAX_INFORMATIONAL_RESPONSES:
                    raise TooManyInformationalResponses(
                        f"the receiver sent more than {MAX_INFORMATIONAL_RESPONSES}"
                        " informational (1xx) responses"
                    )
            return message, payload

        protocol.read = counted_read  # type: ignore[method-assign]
        try:
            return await super().start(connection)
        finally:
            # The connection (and its protocol) may serve the next request: its own read again.
            del protocol.read


class Sender:
    """Posts signed webhooks; one instance (one connection pool) per process."""

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
        # No limit_per_host: aiohttp counts it per host and port, so endpoints sharing one
        # (paths on one server) would queue behind each other's slow attempts. The worker
        # caps attempts per endpoint itself.
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._concurrency = concurrency
        self._destinations = destinations or ssrf.DestinationCheck(
            allow_private_networks=allow_private_networks, resolver=resolver
        )
        # Secrets and custom header values come sealed as stored; only signing and the request
        # see them open.
        self._box = box
        self._session: aiohttp.ClientSession | None = None
        # Answers are kept as they come: a compressed one would be stored unreadable.
        self._headers = {
            "user-agent": USER_AGENT,
            "content-type": "application/json",
            "accept-encoding": "identity",
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

    async def start(self) -> None:
        # Every name the client connects to is resolved through the guard, so the address it
        # checked is the address it connects to (and only checked answers are cached).
        connector = aiohttp.TCPConnector(
            limit=self._concurrency, ttl_dns_cache=60, resolver=self._destinations.resolver()
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            response_class=_Response,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=self._headers,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        if self._session is None:
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

        if self._destinations.guarded:
            # aiohttp connects to literal addresses without asking the resolver.
            try:
                ssrf.check_literal(url)
            except ssrf.ForbiddenDestination as exc:
                return finish(error_kind="forbidden_destination", error=str(exc))
            except ValueError as exc:
                return finish(error_kind="invalid_url", error=_describe(exc))

        try:
            # Inside the try: a secret or header value that does not open is an attempt that
            # failed (recorded, retried), never a delivery dropped.
            if self._box is not None:
                secrets = [self._box.open(secret) for secret in secrets]
                headers = {name: self._box.open(value) for name, value in (headers or {}).items()}
            # The endpoint's custom headers first: ours override them (reserved names are
            # refused when they are set, this is the second line).
            request_headers = dict(headers or {})
            request_headers["webhook-id"] = msg_id
            request_headers["webhook-timestamp"] = str(stamp)
            request_headers["webhook-signature"] = signing.signature_header(
                secrets, msg_id, stamp, body
            )
            # Recorded with the endpoint's own header values hidden: they are often a
            # receiver's credentials, sealed at rest, and the attempt is kept in the clear.
            if headers:
                sent = self._headers | {k.lower(): v for k, v in request_headers.items()}
                sent.update((name.lower(), REDACTED) for name in headers)
            else:  # only ours, lowercase already
                sent = self._headers | request_headers
            async with self._session.post(
                url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                answered = kept_headers(response.headers.items())
                answer = await _read_limited(response)
                status = response.status
                wait = None
                if status in retry.RETRY_AFTER_STATUSES:
                    wait = retry.parse_retry_after(response.headers.get("retry-after"), utcnow())
        except TimeoutError:
            return finish(error_kind="timeout", error=f"no answer within {self._timeout.total} s")
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            return finish(error_kind="tls_error", error=_describe(exc))
        except aiohttp.InvalidURL as exc:
            return finish(error_kind="invalid_url", error=_describe(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ssrf.ForbiddenDestination):
                sent = None  # refused before connecting: nothing went out
                return finish(error_kind="forbidden_destination", error=str(exc.os_error))
            return finish(error_kind="connection_error", error=_describe(exc))
        except (aiohttp.ClientError, OSError) as exc:
            return finish(error_kind="connection_error", error=_describe(exc))
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


async def _read_limited(response: aiohttp.ClientResponse) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_BODY_LIMIT:
        chunk = await response.content.read(RESPONSE_BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if not chunks:
        return ""
    # Not final: a character the limit cut in half is dropped, not turned into U+FFFD.
    text = _UTF8_DECODER("replace").decode(b"".join(chunks), final=False)
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "\ufffd")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]
