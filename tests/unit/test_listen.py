import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from hookline import listen
from hookline.delivery import signing
from hookline.operator_errors import OperatorError
from tests.support.process import free_port
from tests.support.receiver import Receiver

SECRET = signing.generate_secret()
BODY = json.dumps(
    {"id": "evt_1", "event": "user_registered", "data": {"username": "alice"}},
    separators=(",", ":"),
).encode()


def _headers(secret: str, body: bytes = BODY, msg_id: str = "evt_1") -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header([secret], msg_id, timestamp, body),
    }


async def _start(
    secret: str | None, out: io.StringIO, *, forward_to: str | None = None
) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(listen.build_app(secret, out, forward_to=forward_to))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_signed_webhook_is_printed_and_acknowledged(client: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, base = await _start(SECRET, out)
    try:
        async with client.post(f"{base}/hooks/a", data=BODY, headers=_headers(SECRET)) as resp:
            assert resp.status == 204
    finally:
        await runner.cleanup()

    printed = out.getvalue()
    assert "POST /hooks/a" in printed
    assert "webhook-id: evt_1" in printed
    assert "event:      user_registered" in printed
    assert "signature:  valid" in printed
    assert '"username": "alice"' in printed  # pretty-printed, not the compact wire form


async def test_badly_signed_webhook_is_refused_and_flagged(client: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, base = await _start(SECRET, out)
    other_secret = signing.generate_secret()
    try:
        async with client.post(f"{base}/", data=BODY, headers=_headers(other_secret)) as resp:
            assert resp.status == 401
    finally:
        await runner.cleanup()

    assert "signature:  INVALID" in out.getvalue()
    assert "user_registered" in out.getvalue()


async def test_without_secret_nothing_is_checked(client: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, base = await _start(None, out)
    try:
        async with client.post(f"{base}/x", data=b"not json", headers={}) as resp:
            assert resp.status == 204
    finally:
        await runner.cleanup()

    printed = out.getvalue()
    assert "signature:  not checked (no --secret)" in printed
    assert "webhook-id: -" in printed
    assert "not json" in printed


def test_malformed_secret_fails_at_start() -> None:
    with pytest.raises(ValueError):
        listen.build_app("whsec_!!!", io.StringIO())


class _FlushSignallingOutput(io.StringIO):
    """A StringIO that lets a test wait for the first flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        super().flush()
        self.flushed.set()


async def test_serve_reports_its_address_and_stops_when_cancelled(
    client: aiohttp.ClientSession,
) -> None:
    out = _FlushSignallingOutput()
    task = asyncio.create_task(listen.serve("127.0.0.1", 0, SECRET, out))
    try:
        async with asyncio.timeout(5):
            await out.flushed.wait()
        match = re.search(r"listening on (http://\S+)", out.getvalue())
        assert match is not None
        async with client.post(match[1], data=BODY, headers=_headers(SECRET)) as resp:
            assert resp.status == 204
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert "signature:  valid" in out.getvalue()


async def test_every_header_and_the_body_are_printed(client: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, base = await _start(SECRET, out)
    headers = {**_headers(SECRET), "X-Tenant": "acme", "User-Agent": "hookline/test"}
    try:
        async with client.post(f"{base}/hooks/a?x=1", data=BODY, headers=headers) as resp:
            assert resp.status == 204
    finally:
        await runner.cleanup()

    printed = out.getvalue()
    assert "POST /hooks/a?x=1" in printed
    for name, value in headers.items():
        assert f"  {name}: {value}" in printed, name  # as sent: its spelling and its value
    # The timestamp is told as a time too, so a stale signature explains itself.
    assert re.search(r"webhook-timestamp: \d+  \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", printed)
    assert "body:\n{\n" in printed


async def test_an_invalid_signature_says_why(client: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, base = await _start(SECRET, out)
    stale = _headers(SECRET)
    stale["webhook-timestamp"] = str(int(time.time()) - 3600)
    try:
        for headers in (stale, {"webhook-id": "evt_1"}):
            async with client.post(f"{base}/", data=BODY, headers=headers) as resp:
                assert resp.status == 401
    finally:
        await runner.cleanup()

    printed = out.getvalue()
    assert re.search(r"signature:  INVALID \(webhook-timestamp is 36\d\d s old", printed)
    assert "signature:  INVALID (no webhook-timestamp, webhook-signature header)" in printed


@pytest.mark.parametrize("secret", ["nope", "whsec_!!!", "whsec_", "hl_admin_abc"])
def test_a_malformed_secret_is_an_operator_error(secret: str) -> None:
    with pytest.raises(OperatorError, match="--secret"):
        listen.check_secret(secret)


def test_a_forward_url_without_a_scheme_is_http() -> None:
    assert listen.forward_url("localhost:3000/hook") == "http://localhost:3000/hook"
    for bad in ("ftp://x/y", "http://", "http://host:port/"):
        with pytest.raises(OperatorError, match="--forward-to"):
            listen.forward_url(bad)


async def test_forwarding_relays_the_request_and_passes_the_answer_back(
    client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.script("/app", [201], headers={"X-App": "yes"}, body="made it")
    out = io.StringIO()
    runner, base = await _start(SECRET, out, forward_to=receiver.url("/app"))
    headers = {**_headers(SECRET), "X-Tenant": "acme"}
    try:
        async with client.post(f"{base}/anything", data=BODY, headers=headers) as resp:
            assert resp.status == 201
            assert resp.headers["X-App"] == "yes"
            assert await resp.text() == "made it"
    finally:
        await runner.cleanup()

    [got] = receiver.at("/app")
    assert got.body == BODY
    received = CIMultiDict(got.headers)
    for name, value in headers.items():
        assert received[name] == value
    assert "<-- 201 Created for evt_1 from " in out.getvalue()


async def test_forwarding_to_an_app_that_is_down_answers_502(
    client: aiohttp.ClientSession,
) -> None:
    out = io.StringIO()
    down = f"http://127.0.0.1:{free_port()}/hook"
    runner, base = await _start(SECRET, out, forward_to=down)
    try:
        async with client.post(f"{base}/", data=BODY, headers=_headers(SECRET)) as resp:
            assert resp.status == 502
            assert "connection refused" in await resp.text()
    finally:
        await runner.cleanup()

    assert f"<-- 502 for evt_1: {down} failed: connection refused" in out.getvalue()
