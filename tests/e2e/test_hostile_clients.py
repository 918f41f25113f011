"""Hostile clients against a real `hookline serve`: endless headers, idle and half-sent
requests. Everything targets 127.0.0.1, and every loop is bounded in bytes and seconds."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.process import ServeProcess, clean_environ, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

ADMIN = "hl_admin_hostile-clients-test-token-0123456789"
HEADER_TIMEOUT = 1.5


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    port = free_port()
    env = clean_environ(
        HOOKLINE_DATA_DIR=str(tmp_path / "data"),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ADMIN_TOKEN=ADMIN,
        HOOKLINE_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
    )
    with ServeProcess(tmp_path, env=env, port=port) as process:
        await process.start()
        yield process


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def flood_head(port: int, pieces: bytes, *, limit_bytes: int) -> tuple[bytes, int]:
    """Send a request head that never ends, `pieces` at a time, until the server answers or
    closes, or `limit_bytes` are sent; return (its answer, bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(reader.read(4096))
    sent = 0
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while sent < limit_bytes and not answer.done():
            writer.write(pieces)
            sent += len(pieces)
            try:
                await asyncio.wait_for(writer.drain(), 5)
            except (ConnectionError, TimeoutError):
                break
        with contextlib.suppress(ConnectionError, TimeoutError):
            return await asyncio.wait_for(answer, 5), sent
        return b"", sent
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def health_ok(port: int) -> bool:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        return (await client.get("/health")).status_code == 200


@pytest.mark.parametrize(
    "pieces",
    [b"X-Pad: " + b"a" * 8_000 + b"\r\n", b"a" * 65_536],
    ids=["many header lines", "one endless header line"],
)
async def test_an_endless_request_head_is_cut_off_with_431(serve: ServeProcess, pieces) -> None:
    before = rss_mib(serve.pid)

    answer, sent = await flood_head(serve.port, pieces, limit_bytes=64 * 1024 * 1024)

    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # Refused after the first 64 KiB, not 64 MiB later (loopback socket buffers take a few MiB
    # more before the client sees the answer).
    assert sent < 16 * 1024 * 1024
    assert rss_mib(serve.pid) < max(300, before + 50)
    assert await health_ok(serve.port)


async def test_three_flooding_connections_at_once_leave_memory_and_health_alone(
    serve: ServeProcess,
) -> None:
    pieces = b"X-Pad: " + b"b" * 8_000 + b"\r\n"
    floods = [flood_head(serve.port, pieces, limit_bytes=64 * 1024 * 1024) for _ in range(3)]

    answers = await asyncio.gather(*floods, health_ok(serve.port))

    assert all(a.startswith(b"HTTP/1.1 431") for a, _ in answers[:3])
    assert answers[3] is True
    assert rss_mib(serve.pid) < 300


async def test_idle_and_half_sent_connections_are_closed_while_health_answers(
    serve: ServeProcess,
) -> None:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    half: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(300):
            idle.append(await asyncio.open_connection("127.0.0.1", serve.port))
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            await writer.drain()
            half.append((reader, writer))
        began = time.monotonic()

        healthy_meanwhile = [await health_ok(serve.port) for _ in range(5)]
        closed_idle = await asyncio.gather(
            *(asyncio.wait_for(r.read(), HEADER_TIMEOUT + 5) for r, _ in idle)
        )
        answered_half = await asyncio.gather(
            *(asyncio.wait_for(r.read(), HEADER_TIMEOUT + 5) for r, _ in half)
        )
        waited = time.monotonic() - began
    finally:
        for _, writer in idle + half:
            writer.close()

    assert healthy_meanwhile == [True] * 5
    assert closed_idle == [b""] * 300  # nothing sent: closed without an answer
    assert all(a.startswith(b"HTTP/1.1 408") for a in answered_half)
    assert waited < HEADER_TIMEOUT + 5
    assert await health_ok(serve.port)


async def test_a_body_that_stops_half_way_is_answered_408(serve: ServeProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(
        b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"username": '
    )
    await writer.drain()

    answer = await asyncio.wait_for(reader.read(), 3 * HEADER_TIMEOUT + 5)
    writer.close()

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
