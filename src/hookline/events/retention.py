"""Retention: prune events past the retention period, with their deliveries and attempts.

Each batch is its own short transaction: on SQLite every transaction holds the one write lock,
so one long prune would stall the worker's claims and result flushes until it ended.
"""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hookline.delivery.queue import PENDING, Db, is_postgres
from hookline.models import Attempt, Delivery, Event, UTCDateTime

log = logging.getLogger("hookline.retention")

_events = cast(Table, Event.__table__)
_deliveries = cast(Table, Delivery.__table__)
_attempts = cast(Table, Attempt.__table__)

# Built once: the worker runs a prune every so often, in many batches. Children go first,
# though the foreign keys cascade: the deletes do not depend on ON DELETE being enforced.
_DELETE_ATTEMPTS = delete(_attempts).where(
    _attempts.c.delivery_id.in_(
        select(_deliveries.c.id).where(_deliveries.c.event_id.in_(bindparam("ids", expanding=True)))
    )
)
_DELETE_DELIVERIES = delete(_deliveries).where(
    _deliveries.c.event_id.in_(bindparam("ids", expanding=True))
)
_DELETE_EVENTS = delete(_events).where(_events.c.id.in_(bindparam("ids", expanding=True)))


@cache
def _old_events(postgres: bool) -> Select[Any]:
    # A delivery retried by hand can be pending on an old event: that event stays.
    pending = exists().where(
        _deliveries.c.event_id == _events.c.id, _deliveries.c.status == PENDING
    )
    old = (
        select(_events.c.id)
        .where(_events.c.created_at < bindparam("before", type_=UTCDateTime()), ~pending)
        .order_by(_events.c.created_at)
        .limit(bindparam("batch_size"))
    )
    # Locked, no delivery can be added to these events (its foreign key waits on the row);
    # a concurrent prune skips them rather than queueing behind this one.
    return old.with_for_update(of=_events, skip_locked=True) if postgres else old


@cache
def _deliveries_of() -> Select[Any]:
    # PostgreSQL only: lock the deliveries, then read their status again, since one may have
    # been set pending after the candidates were read. SQLite's write lock, held since BEGIN
    # IMMEDIATE, already keeps everything still.
    return (
        select(_deliveries.c.event_id, _deliveries.c.status)
        .where(_deliveries.c.event_id.in_(bindparam("ids", expanding=True)))
        .with_for_update()
    )


async def prune_batch(db: Db, *, before: datetime, batch_size: int) -> int:
    """Delete up to `batch_size` events created before `before` with no pending delivery.

    Their attempts and deliveries go with them. Returns how many events were deleted.
    """
    postgres = is_postgres(db)
    found = await db.execute(_old_events(postgres), {"before": before, "batch_size": batch_size})
    ids: Sequence[str] = found.scalars().all()
    if ids and postgres:
        rows = await db.execute(_deliveries_of(), {"ids": list(ids)})
        kept = {event_id for event_id, status in rows if status == PENDING}
        ids = [event_id for event_id in ids if event_id not in kept]
    if not ids:
        return 0
    params = {"ids": list(ids)}
    await db.execute(_DELETE_ATTEMPTS, params)
    await db.execute(_DELETE_DELIVERIES, params)
    await db.execute(_DELETE_EVENTS, params)
    return len(ids)


async def prune(
    engine: AsyncEngine, *, before: datetime, batch_size: int = 500, pause: float = 0.05
) -> int:
    """Prune in batches, each its own transaction, `pause` seconds apart; return the total.

    Stops after a batch that deletes fewer than `batch_size`: the next prune gets the rest.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    total = 0
    while True:
        async with engine.begin() as conn:
            pruned = await prune_batch(conn, before=before, batch_size=batch_size)
        total += pruned
        if pruned < batch_size:
            break
        # Let the worker's claims and result flushes take the write lock between batches.
        await asyncio.sleep(pause)
    if total:
        log.info("pruned %d events created before %s", total, before.isoformat())
    return total


def cutoff(retention_days: int, now: datetime) -> datetime:
    """The creation time before which events are pruned."""
    return now - timedelta(days=retention_days)
