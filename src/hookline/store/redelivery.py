"""Sending deliveries again by hand, and cancelling what no longer needs sending."""

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from hookline.store import units
from hookline.store.sql import sql
from hookline.store.status import Status
from hookline.store.units import Unit

# Due now, its next attempt marked manual (its trigger). An attempt in flight holds a lease:
# its result would finish the delivery (or set its next retry later), so the retry is
# remembered for complete() to honour (claims.py). A lease that lapses is claimed again anyway,
# and the claim clears the mark.
_AGAIN_NOW = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = {now}, finished_at = NULL,"
    " manual = TRUE, retry_requested_at = CASE WHEN lease_owner IS NULL THEN NULL ELSE {now} END"
)
_RETRY_NOW = sql(_AGAIN_NOW + " WHERE id = :id")
# Pings are one-off probes, never sent again by a recovery; a pending delivery in flight is
# being sent now already.
_REQUEUE = sql(
    _AGAIN_NOW + " WHERE endpoint_id = :endpoint_id AND status {in:statuses}"
    " AND created_at >= :since AND created_at < :until"
    " AND (status <> 'pending' OR lease_owner IS NULL)"
    " AND event_id NOT IN (SELECT id FROM events WHERE event = 'ping')"
)
_CANCEL = sql(
    "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, finished_at = {now}"
    " WHERE endpoint_id {in:endpoint_ids} AND status = 'pending'"
)
_CANCEL_UNCOVERED = sql(
    "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, finished_at = {now}"
    " WHERE endpoint_id = :endpoint_id AND status = 'pending'"
    " AND event_id IN (SELECT id FROM events WHERE NOT (event {in:covered}))"
)
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


def retry_now(delivery_id: str) -> Unit[int]:
    """Make the delivery due now, whatever its status; how many rows changed (0 or 1).

    An attempt in flight meanwhile is recorded when it ends, and the delivery is attempted
    again after it.
    """
    changed: int = yield units.execute(_RETRY_NOW, {"id": delivery_id})
    if changed:
        yield units.wake()
    return changed


def requeue(
    *,
    endpoint_id: str,
    since: datetime,
    until: datetime | None,
    statuses: Collection[Status] = (Status.FAILED,),
) -> Unit[int]:
    """Make the endpoint's deliveries created in [since, until) with these statuses due now
    (pending ones waiting for a later retry too); how many."""
    changed: int = yield units.execute(
        _REQUEUE,
        {
            "endpoint_id": endpoint_id,
            "statuses": [str(s) for s in statuses],
            "since": since,
            "until": until or FOREVER,
        },
    )
    if changed:
        yield units.wake()
    return changed


def cancel(endpoint_ids: Sequence[str]) -> Unit[int]:
    """Cancel every pending delivery of these endpoints."""
    changed: int = yield units.execute(_CANCEL, {"endpoint_ids": list(endpoint_ids)})
    return changed


def cancel_uncovered(endpoint_id: str, covered: Collection[str]) -> Unit[int]:
    """Cancel the endpoint's pending deliveries of events that `covered` does not name."""
    changed: int = yield units.execute(
        _CANCEL_UNCOVERED, {"endpoint_id": endpoint_id, "covered": sorted(covered)}
    )
    return changed
