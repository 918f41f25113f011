"""Waking workers in other processes on PostgreSQL: NOTIFY at commit, LISTEN in the worker.

NOTIFY inside a transaction is delivered when (and only if) it commits, so a worker never
wakes for deliveries it cannot see yet. Polling stays as the fallback: a lost notification
delays a delivery by at most the poll interval.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("hookline.notify")

CHANNEL = "hookline_wake"
NOTIFY: TextClause = text(f"NOTIFY {CHANNEL}")
RECONNECT_AFTER = 1.0  # seconds, after the listening connection was lost


def connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """asyncpg.connect arguments for the engine's database, read as the engine reads its URL
    (so `?ssl=require` and the like mean the same to both)."""
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    return dict(kwargs)


async def listen(connect: dict[str, Any], wake: Callable[[], None]) -> None:
    """Call `wake` for every notification until cancelled; reconnect when the line drops."""
    while True:
        try:
            await _listen_once(connect, wake)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot listen for wake-ups (%s); polling until it can", exc)
        await asyncio.sleep(RECONNECT_AFTER)


async def _listen_once(connect: dict[str, Any], wake: Callable[[], None]) -> None:
    lost = asyncio.Event()
    conn = await asyncpg.connect(**connect)
    try:
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, lambda *_args: wake())
        wake()  # deliveries may have been published while no one listened
        await lost.wait()
        log.warning("the wake-up connection was lost; reconnecting")
    finally:
        await conn.close(timeout=1)
