"""A receiver that answers with informational (1xx) responses and never a final one.

aiohttp's client reads 1xx responses in a loop without a bound: a receiver streaming
`102 Processing` held an attempt (and a CPU core, and memory) until the delivery timeout or
beyond. The attempt must fail after a few of them, as any failure, and the connection is dropped.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from hookline.delivery import signing
from hookline.delivery.sender import MAX_INFORMATIONAL_RESPONSES, Outcome, Sender

# Generous, so that only the bound on 1xx responses can end the attempt in time.
DELIVERY_TIMEOUT = 30.0
PROMPTLY = 10.0
FLOOD_WRITES = 200_000
BATCH = 100


@dataclass
class Served:
    """What the raw receiver saw: informational responses written, and how it stopped."""

    written: int = 0
    client_went_away: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Served], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))


@asynccontextmanager
async def raw_receiver(handler: Handler) -> AsyncIterator[tuple[str, Served]]:
    """A bare TCP server on 127.0.0.1 answering each request with `handler`."""
    served = Served()
    handlers: list[tuple[asyncio.Future[None], asyncio.StreamWriter]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        handlers.append((done, writer))
        try:
            await _read_request(reader)
            await handler(reader, writer, served)
        except (ConnectionError, asyncio.IncompleteReadError):
            served.client_went_away.set()
        finally:
            writer.close()
            done.set_result(None)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", served
    finally:
        server.close()
        # Dropping the connections ends the handlers (cancelling them would log errors).
        for _, writer in handlers:
            writer.transport.abort()
        await asyncio.gather(*(done for done, _ in handlers))
        await server.wait_closed()


def flood(status_line: bytes) -> Handler:
    """Write `status_line` responses in a tight loop until the client leaves (or a bound)."""
    batch = (status_line + b"\r\n\r\n") * BATCH

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: Served
    ) -> None:
        while served.written < FLOOD_WRITES:
            if writer.is_closing() or reader.at_eof():
                served.client_went_away.set()
                return
            writer.write(batch)
            await writer.drain()
            served.written += BATCH
        # Out of writes but still no final answer: the client must leave on its own.
        await reader.read()
        served.client_went_away.set()

    return handler


async def send_once(url: str) -> tuple[Outcome, float]:
    sender = Sender(timeout=DELIVERY_TIMEOUT, concurrency=1, allow_private_networks=True)
    await sender.start()
    started = time.monotonic()
    try:
        outcome = await asyncio.wait_for(
            sender.send(url=url, msg_id="msg_1xx", body=b"{}", secrets=[signing.generate_secret()]),
            PROMPTLY,
        )
    except TimeoutError:
        pytest.fail(f"the attempt did not end within {PROMPTLY} s")
    finally:
        await sender.close()
    return outcome, time.monotonic() - started


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 102 Processing", b"HTTP/1.1 100 Continue"])
async def test_endless_informational_responses_fail_the_attempt_promptly(
    status_line: bytes,
) -> None:
    async with raw_receiver(flood(status_line)) as (url, served):
        outcome, took = await send_once(url)
        # The connection is dropped, not kept for the next attempt.
        await asyncio.wait_for(served.client_went_away.wait(), PROMPTLY)

    assert took < PROMPTLY
    assert not outcome.ok
    assert outcome.status_code is None
    assert outcome.error_kind == "connection_error"
    assert outcome.error is not None
    assert f"more than {MAX_INFORMATIONAL_RESPONSES} informational (1xx) responses" in outcome.error
    assert served.written < FLOOD_WRITES


async def test_a_few_informational_responses_then_an_answer_succeed() -> None:
    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: Served
    ) -> None:
        informational = b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 102 Processing\r\n\r\n" * (
            MAX_INFORMATIONAL_RESPONSES - 1
        )
        writer.write(informational)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        served.written += MAX_INFORMATIONAL_RESPONSES
        await writer.drain()

    async with raw_receiver(answer) as (url, _):
        outcome, took = await send_once(url)

    assert outcome.ok, outcome
    assert outcome.status_code == 200
    assert outcome.response_body == "ok"
    assert took < PROMPTLY


async def test_a_single_continue_then_an_answer_succeeds() -> None:
    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: Served
    ) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async with raw_receiver(answer) as (url, _):
        outcome, _took = await send_once(url)

    assert outcome.ok, outcome
    assert (outcome.status_code, outcome.response_body) == (200, "ok")
