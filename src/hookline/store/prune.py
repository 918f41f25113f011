"""Retention: prune events past the retention period with their deliveries and attempts,
deleted endpoints once none of their deliveries is left, and expired idempotency keys.

Each batch is its own short transaction: on SQLite every transaction holds the one write lock,
so one long prune would stall the worker's claims and result flushes until it ended.
"""

import asyncio
import logging
from datetime import datetime, timedelta

from hookline.store import Store, units
from hookline.store.sql import sql
from hookline.store.status import Status
from hookline.store.units import Unit

log = logging.getLogger("hookline.retention")

# How long an idempotency key's first answer is replayed (24 hours); older keys go.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)

# A delivery retried by hand can be pending on an old event: that event stays. On PostgreSQL
# the events are locked: no delivery can be added to them (its foreign key waits on the row),
# and a concurrent prune skips them rather than queueing behind this one.
_OLD_EVENTS = sql(
    "SELECT e.id FROM events e WHERE e.created_at < :before AND NOT EXISTS ("
    " SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending')"
    " ORDER BY e.created_at LIMIT :batch_size",
    postgres="SELECT e.id FROM events e WHERE e.created_at < :before AND NOT EXISTS ("
    " SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending')"
    " ORDER BY e.created_at LIMIT :batch_size FOR UPDATE OF e SKIP LOCKED",
)
# PostgreSQL: lock the deliveries, then read their status again, since one may have been set
# pending after the candidates were read. SQLite's write lock, held since the transaction
# began, already keeps everything still: there this only reads again what the first query saw.
_STATUSES = sql(
    "SELECT event_id, status FROM deliveries WHERE event_id {in:ids} AND status = 'pending'",
    postgres="SELECT event_id, status FROM deliveries WHERE event_id {in:ids} FOR UPDATE",
)
# Children first, though the foreign keys cascade: the deletes do not depend on ON DELETE
# being enforced.
_DELETE_ATTEMPTS = sql(
    "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id {in:ids})"
)
_DELETE_DELIVERIES = sql("DELETE FROM deliveries WHERE event_id {in:ids}")
_DELETE_EVENTS = sql("DELETE FROM events WHERE id {in:ids}")
_DELETE_KEYS = sql("DELETE FROM idempotency_keys WHERE created_at < :before")
# Nothing adds a delivery to a deleted endpoint (it has no subscriptions, and no route reaches
# it), so one with none left stays without.
_DELETE_ENDPOINTS = sql(
    "DELETE FROM endpoints WHERE deleted_at IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.endpoint_id = endpoints.id)"
)


def prune_batch(*, before: datetime, batch_size: int) -> Unit[int]:
    """Delete up to `batch_size` events created before `before` with no pending delivery.

    Their attempts and deliveries go with them. Returns how many events were deleted.
    """
    found = yield units.rows(_OLD_EVENTS, {"before": before, "batch_size": batch_size})
    ids = [row[0] for row in found]
    if not ids:
        return 0
    statuses = yield units.rows(_STATUSES, {"ids": ids})
    kept = {event_id for event_id, status in statuses if status == Status.PENDING}
    ids = [event_id for event_id in ids if event_id not in kept]
    if not ids:
        return 0
    yield units.execute(_DELETE_ATTEMPTS, {"ids": ids})
    yield units.execute(_DELETE_DELIVERIES, {"ids": ids})
    yield units.execute(_DELETE_EVENTS, {"ids": ids})
    return len(ids)


async def prune(
    store: Store, *, before: datetime, batch_size: int = 500, pause: float = 0.05
) -> int:
    """Prune in batches, each its own transaction, `pause` seconds apart; return the total.

    Stops after a batch that deletes fewer than `batch_size`: the next prune gets the rest.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    total = 0
    while True:
        pruned = await store.write_aside(prune_batch(before=before, batch_size=batch_size))
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


def deleted_endpoints() -> Unit[int]:
    """Delete the rows of deleted endpoints whose deliveries have all been pruned; how many."""
    deleted: int = yield units.execute(_DELETE_ENDPOINTS)
    return deleted


def idempotency_keys(*, before: datetime) -> Unit[int]:
    """Delete the idempotency keys created before `before`; return how many went."""
    deleted: int = yield units.execute(_DELETE_KEYS, {"before": before})
    return deleted
