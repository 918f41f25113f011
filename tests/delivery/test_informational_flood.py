"""A receiver that answers with informational (1xx) responses and never a final one.

The HTTP client (hyper, in its own thread) reads past 1xx responses without a bound, as HTTP
allows. A receiver streaming `102 Processing` must cost what a receiver that never answers
costs: the attempt ends at the delivery timeout, as a timeout; the event loop is not held
meanwhile (the other attempts and the API go on); the connection is dropped. A few 1xx
responses before the answer are legal and change nothing.
"""

import asyncio
import time

import pytest

from hookline.delivery import signing
from hookline.delivery.sender import Outcome, Sender
from tests.support.raw_receiver import Handler, Served, raw_receiver

DELIVERY_TIMEOUT = 2.0
PROMPTLY = 10.0
# Informational responses before the answer in the tests that answer.
A_FEW = 10
# The event loop's longest stall allowed while the flood lasts (a tick is due every 10 ms).
LOOP_STALL = 1.0
FLOOD_WRITES = 200_000
BATCH = 100


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
async def test_endless_informational_responses_end_at_the_timeout_off_the_event_loop(
    status_line: bytes,
) -> None:
    stalls: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            stalls.append(loop.time() - due)

    async with raw_receiver(flood(status_line)) as (url, served):
        ticking = asyncio.create_task(ticker())
        try:
            outcome, took = await send_once(url)
        finally:
            ticking.cancel()
        # The connection is dropped, not kept for the next attempt.
        await asyncio.wait_for(served.client_went_away.wait(), PROMPTLY)

    assert served.written > 10 * A_FEW, "the receiver never got to flood"
    assert DELIVERY_TIMEOUT - 0.1 <= took < DELIVERY_TIMEOUT + 2
    assert not outcome.ok
    assert (outcome.status_code, outcome.error_kind) == (None, "timeout")
    assert stalls and max(stalls) < LOOP_STALL, f"the event loop stalled {max(stalls):.2f} s"


async def test_a_few_informational_responses_then_an_answer_succeed() -> None:
    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: Served
    ) -> None:
        informational = b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 102 Processing\r\n\r\n" * (
            A_FEW - 1
        )
        writer.write(informational)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        served.written += A_FEW
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
