"""Waking workers in other processes on PostgreSQL: NOTIFY at commit, LISTEN in the worker.

The store sends NOTIFY inside the transaction of a unit that made deliveries due; it is
delivered when (and only if) that commits, so a worker never wakes for deliveries it cannot see
yet. Polling stays as the fallback: a lost notification delays a delivery by at most the poll
interval.
"""

import asyncio
import logging
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]

from hookline.store.postgres import NOTIFY_CHANNEL as CHANNEL

log = logging.getLogger("hookline.notify")

RECONNECT_AFTER = 1.0  # seconds, after the listening connection was lost


async def listen(dsn: str, wake: Callable[[], None]) -> None:
    """Call `wake` for every notification until cancelled; reconnect when the line drops.

    `dsn` is the store's (`hookline.store.postgres_dsn`), so both read the URL alike.
    """
    # One warning per outage, not one per reconnection attempt: set once one was logged,
    # cleared (with a line) when a connection listens again.
    told = False

    def listening() -> None:
        nonlocal told
        if told:
            log.info("listening for wake-ups again")
            told = False

    while True:
        try:
            await _listen_once(dsn, wake, listening)
            told = True  # it logged the loss
        except (OSError, asyncpg.PostgresError) as exc:
            if not told:
                log.warning("cannot listen for wake-ups (%s); polling until it can", exc)
                told = True
        await asyncio.sleep(RECONNECT_AFTER)


async def _listen_once(
    dsn: str, wake: Callable[[], None], listening: Callable[[], None] = lambda: None
) -> None:
    lost = asyncio.Event()
    conn = await asyncpg.connect(dsn)
    try:
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, lambda *_args: wake())
        listening()
        wake()  # deliveries may have been published while no one listened
        await lost.wait()
        log.warning("the wake-up connection was lost; reconnecting")
    finally:
        await conn.close(timeout=1)
