"""A receiver that answers with a body far larger than what an attempt keeps.

An attempt stores the first 4,096 characters of the answer; the sender reads no more than that
(and what the connection already buffered) and then drops the connection. A receiver sending a
body of hundreds of megabytes, or one that never ends, must cost no more memory than a small
answer, and the attempt ends as soon as the kept part arrived, not when the body does.
"""

import asyncio
import time

from hookline.delivery import signing
from hookline.delivery.sender import RESPONSE_BODY_LIMIT, Sender
from tests.support.raw_receiver import Served, raw_receiver

DELIVERY_TIMEOUT = 10.0
PROMPTLY = 5.0
CHUNK = b"x" * 65_536
ANNOUNCED = 1 << 30  # a 1 GiB body, by its Content-Length
# What a sender that stops reading lets the receiver write: the kernel's socket buffers on both
# sides and the client's own read buffer; a few MiB, never the body.
WRITTEN_AT_MOST = 32 << 20


async def endless_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: Served
) -> None:
    """200 with a 1 GiB body, written until the client leaves."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % ANNOUNCED)
    while served.written < ANNOUNCED:
        if writer.is_closing():
            break
        writer.write(CHUNK)
        await writer.drain()
        served.written += len(CHUNK)
    served.client_went_away.set()


async def test_a_huge_answer_is_read_only_as_far_as_the_attempt_keeps_it() -> None:
    sender = Sender(timeout=DELIVERY_TIMEOUT, concurrency=1, allow_private_networks=True)
    await sender.start()
    try:
        async with raw_receiver(endless_body) as (url, served):
            started = time.monotonic()
            outcome = await asyncio.wait_for(
                sender.send(
                    url=url, msg_id="msg_big", body=b"{}", secrets=[signing.generate_secret()]
                ),
                DELIVERY_TIMEOUT + PROMPTLY,
            )
            took = time.monotonic() - started
            # The connection is dropped, not drained for the next attempt.
            await asyncio.wait_for(served.client_went_away.wait(), PROMPTLY)
    finally:
        await sender.close()

    assert outcome.ok, outcome
    assert outcome.status_code == 200
    assert outcome.response_body == "x" * RESPONSE_BODY_LIMIT
    assert took < PROMPTLY, f"the attempt took {took:.1f} s"
    assert served.written < WRITTEN_AT_MOST, f"the sender read {served.written >> 20} MiB"
