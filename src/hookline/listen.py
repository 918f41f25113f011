"""`hookline listen`: a local receiver that prints each webhook it gets (every header, the
body) and checks its signature; with `--forward-to URL` it relays each one to a local app and
passes the app's answer back, as `stripe listen --forward-to` does."""

import asyncio
import json
import sys
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from hookline import operator_errors
from hookline.delivery import signing

NOT_CHECKED = "not checked (no --secret)"
TOLERANCE = 300  # seconds a signature's timestamp may be off, as receivers check it
FORWARD_TIMEOUT = 30.0  # hookline gives up sooner (HOOKLINE_DELIVERY_TIMEOUT, 15 s)
# Of the app's answer, at most this much is shown (all of it is passed back).
SHOWN_ANSWER = 1024

# Headers of one hop only (RFC 9110 §7.6.1), and those the relaying client sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)


def check_secret(secret: str | None) -> None:
    """An OperatorError unless `secret` is None or a `whsec_<base64>` webhook secret."""
    if secret is None:
        return
    remedy = "pass the endpoint's whsec_… secret (GET /endpoints/{id}/secret)"
    if not secret.startswith(signing.SECRET_PREFIX):
        raise operator_errors.OperatorError(
            "--secret is not a webhook secret: it does not start with whsec_", remedy
        )
    try:
        signing.secret_key(secret)
    except ValueError as exc:
        raise operator_errors.OperatorError(f"--secret is not valid: {exc}", remedy) from exc


def forward_url(url: str | None) -> str | None:
    """The URL to relay to (`localhost:3000/hook` gets `http://`); an OperatorError when it is
    not an http(s) URL."""
    if url is None:
        return None
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise operator_errors.OperatorError(
            f"--forward-to {url!r} is not a URL ({exc})", "pass e.g. http://127.0.0.1:3000/webhook"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise operator_errors.OperatorError(
            f"--forward-to {url!r} is not an http:// or https:// URL",
            "pass e.g. http://127.0.0.1:3000/webhook",
        )
    return text


def _pretty_body(body: bytes) -> tuple[str, str]:
    """Return the event name and a readable rendering of a webhook body."""
    if not body:
        return "-", "(empty body)"
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        # Not JSON (or not UTF-8): show it anyway, since that is what the sender sent.
        return "-", body.decode("utf-8", errors="replace")
    event = payload.get("event") if isinstance(payload, dict) else None
    rendered = json.dumps(payload, indent=2, ensure_ascii=False)
    return ("-" if event is None else str(event)), rendered


def _signature_result(secret: str | None, request: web.Request, body: bytes) -> str:
    if secret is None:
        return NOT_CHECKED
    headers = request.headers
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if signing.verify(secret, msg_id, timestamp, signature, body, tolerance=TOLERANCE):
        return "valid"
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if not value
    ]
    if missing:
        return f"INVALID (no {', '.join(missing)} header)"
    if not (timestamp.isascii() and timestamp.isdigit()):
        return "INVALID (webhook-timestamp is not Unix seconds)"
    skew = time.time() - int(timestamp)
    if abs(skew) > TOLERANCE:
        return f"INVALID (webhook-timestamp is {_skew(skew)}: more than {TOLERANCE} s off)"
    return "INVALID (no signature matches the secret)"


def _skew(seconds: float) -> str:
    return f"{seconds:.0f} s old" if seconds >= 0 else f"{-seconds:.0f} s in the future"


def _timestamp_note(value: str) -> str:
    """A webhook-timestamp as a local time and how long ago, e.g. `(12:00:01 +0100, 0 s ago)`."""
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        return ""
    moment = datetime.fromtimestamp(int(value)).astimezone()
    skew = time.time() - int(value)
    return f"  ({moment:%Y-%m-%d %H:%M:%S %z}, {_skew(skew).replace(' old', ' ago')})"


def _header_lines(request: web.Request) -> list[str]:
    """Every header as it came: its name's spelling, order and repetitions."""
    lines = []
    for raw_name, raw_value in request.raw_headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("utf-8", errors="replace")
        note = _timestamp_note(value) if name.lower() == "webhook-timestamp" else ""
        lines.append(f"  {name}: {value}{note}")
    return lines


@dataclass(frozen=True, slots=True)
class _Relayed:
    """The app's answer to a relayed webhook."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes
    millis: int


def build_app(secret: str | None, out: TextIO, *, forward_to: str | None = None) -> web.Application:
    """Return the receiver app; ValueError when the secret is not a valid webhook secret.

    Without `forward_to` it answers 204 (401 to a bad signature, when it has the secret); with
    it, each request is relayed there as it came (method, headers, body) and the app's answer
    goes back (502 when the app cannot be reached, 504 when it does not answer in time).
    """
    if secret is not None:
        signing.secret_key(secret)  # fail at start rather than mark every webhook INVALID
    target = forward_url(forward_to)
    session: aiohttp.ClientSession | None = None

    async def receive(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        event, rendered = _pretty_body(body)
        result = _signature_result(secret, request, body)
        msg_id = request.headers.get("webhook-id", "-")
        lines = [
            f"--- {datetime.now().astimezone():%Y-%m-%d %H:%M:%S %z}"
            f"  {request.method} {request.path_qs}",
            f"webhook-id: {msg_id}",
            f"event:      {event}",
            f"signature:  {result}",
            "headers:",
            *_header_lines(request),
            "body:",
            rendered,
        ]
        out.write("\n".join(lines) + "\n\n")
        # Flush per webhook, so output piped to a file or another program shows up at once.
        out.flush()
        if target is None:
            return web.Response(status=401 if result.startswith("INVALID") else 204)
        assert session is not None
        return await _relay(session, target, request, body, msg_id, out)

    async def open_session(_app: web.Application) -> None:
        nonlocal session
        session = aiohttp.ClientSession(
            # Bytes pass through as they are: no decompression, no default headers added.
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
        )

    async def close_session(_app: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", receive)
    if target is not None:
        app.on_startup.append(open_session)
        app.on_cleanup.append(close_session)
    return app


async def _relay(
    session: aiohttp.ClientSession,
    target: str,
    request: web.Request,
    body: bytes,
    msg_id: str,
    out: TextIO,
) -> web.Response:
    """Send the request on to `target` and answer with what it answered."""
    headers = CIMultiDict(
        (name, value) for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP
    )
    began = time.monotonic()
    try:
        relayed = await _send(session, request.method, target, headers, body, began)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        timed_out = isinstance(exc, TimeoutError)
        status = 504 if timed_out else 502
        why = f"no answer within {FORWARD_TIMEOUT:g} s" if timed_out else _reason(exc)
        out.write(f"<-- {status} for {msg_id}: {target} failed: {why}\n\n")
        out.flush()
        return web.Response(
            status=status, text=f"hookline listen: cannot forward to {target}: {why}\n"
        )
    shown = relayed.body[:SHOWN_ANSWER].decode("utf-8", errors="replace")
    more = f" … ({len(relayed.body)} bytes)" if len(relayed.body) > SHOWN_ANSWER else ""
    out.write(
        f"<-- {relayed.status} {relayed.reason} for {msg_id} from {target}"
        f" in {relayed.millis} ms\n" + (f"{shown}{more}\n" if shown else "") + "\n"
    )
    out.flush()
    answer_headers = CIMultiDict(
        (name, value) for name, value in relayed.headers.items() if name.lower() not in _HOP_BY_HOP
    )
    return web.Response(
        status=relayed.status, reason=relayed.reason, headers=answer_headers, body=relayed.body
    )


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    target: str,
    headers: CIMultiDict[str],
    body: bytes,
    began: float,
) -> _Relayed:
    async with session.request(
        method, target, headers=headers, data=body, allow_redirects=False
    ) as response:
        answer = await response.read()
        return _Relayed(
            status=response.status,
            reason=response.reason or "",
            headers=CIMultiDict(response.headers),
            body=answer,
            millis=round((time.monotonic() - began) * 1000),
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = exc.os_error
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused (is the app running?)"
        return inner.strerror.lower() if inner.strerror else str(inner)
    return str(exc) or type(exc).__name__


async def serve(
    host: str,
    port: int,
    secret: str | None,
    out: TextIO = sys.stdout,
    *,
    forward_to: str | None = None,
) -> None:
    """Serve the receiver on host:port until cancelled; a malformed --secret or --forward-to,
    or an address that cannot be listened on, is an OperatorError."""
    check_secret(secret)
    runner = web.AppRunner(build_app(secret, out, forward_to=forward_to), access_log=None)
    await runner.setup()
    try:
        with operator_errors.binding(host, port, host_option="--host", port_option="--port"):
            await web.TCPSite(runner, host, port).start()
        # Report the bound address, which differs from `port` when it was 0.
        target = forward_url(forward_to)
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            if ":" in bound_host:
                bound_host = f"[{bound_host}]"
            relay = f", forwarding to {target}" if target else ""
            out.write(f"listening on http://{bound_host}:{bound_port}{relay}\n")
        out.flush()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
