import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hookline import listen
from hookline.delivery import signing

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


async def _start(secret: str | None, out: io.StringIO) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(listen.build_app(secret, out))
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
