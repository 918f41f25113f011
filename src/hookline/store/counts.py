"""What the outbox holds, counted: the queue as `/metrics` shows it, and an endpoint's stats."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from hookline.store import units
from hookline.store.sql import sql, ts, ts_required
from hookline.store.status import Status
from hookline.store.units import Unit

# One statement, so one snapshot on both databases; each part is a range of an index. Status
# literals rather than parameters, so that the planner may use the partial index on pending
# rows. The due ones are the part of the pending range of ix_deliveries_due (status,
# next_attempt_at) up to now; a lease is only ever taken on a due delivery (and cleared when its
# attempt is recorded), so the leased ones lie within that range: no scan of the backlog. The
# oldest is the range's first entry (min() would walk the range on SQLite).
_QUEUE = sql(
    "SELECT"
    " (SELECT count(*) FROM deliveries WHERE status = 'pending'),"
    " (SELECT count(*) FROM deliveries WHERE status = 'succeeded'),"
    " (SELECT count(*) FROM deliveries WHERE status = 'failed'),"
    " (SELECT count(*) FROM deliveries WHERE status = 'cancelled'),"
    " (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= {now}),"
    " (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= {now}"
    "  AND lease_until > {now}),"
    " (SELECT next_attempt_at FROM deliveries WHERE status = 'pending'"
    "  AND next_attempt_at <= {now} ORDER BY next_attempt_at LIMIT 1),"
    " (SELECT count(*) FROM endpoints WHERE enabled = TRUE AND deleted_at IS NULL),"
    " (SELECT count(*) FROM endpoints WHERE enabled = FALSE AND deleted_at IS NULL),"
    " (SELECT count(*) FROM events),"
    " {now}"  # the clock that judged what is due: the database's, on PostgreSQL
)
_QUEUE_STATUSES = (Status.PENDING, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
# Pings are probes: they count neither toward an endpoint's failure clock nor
# among its deliveries.
_BY_STATUS = sql(
    "SELECT d.status, count(*) FROM deliveries d JOIN events v ON v.id = d.event_id"
    " WHERE d.endpoint_id = :endpoint_id AND v.event <> 'ping' GROUP BY d.status"
)


@dataclass(frozen=True, slots=True)
class Queue:
    """What one read of the outbox found."""

    deliveries: Mapping[Status, int]  # by status
    due: int
    in_flight: int
    oldest_due_at: datetime | None
    endpoints_enabled: int
    endpoints_disabled: int
    events: int
    now: datetime  # when it was read, by the clock that judged what is due


def queue() -> Unit[Queue]:
    """The queue, the endpoints by state and the events, as one snapshot."""
    row = tuple((yield units.one(_QUEUE)))
    counted = len(_QUEUE_STATUSES)
    by_status = {status: int(n) for status, n in zip(_QUEUE_STATUSES, row[:counted], strict=True)}
    due, in_flight, oldest, enabled, disabled, events, now = row[counted:]
    return Queue(
        deliveries=by_status,
        due=int(due),
        in_flight=int(in_flight),
        oldest_due_at=ts(oldest),
        endpoints_enabled=int(enabled),
        endpoints_disabled=int(disabled),
        events=int(events),
        now=ts_required(now),
    )


def by_status(endpoint_id: str) -> Unit[dict[Status, int]]:
    """The endpoint's deliveries counted by status, pings left out (and the statuses it has
    none of)."""
    found = yield units.rows(_BY_STATUS, {"endpoint_id": endpoint_id})
    return {Status(row[0]): int(row[1]) for row in found}


# The queue's health without its history (the dashboard's overview, which must stay fast however
# many deliveries were ever made): every part is a range of the pending rows (the partial
# ix_deliveries_endpoint_pending, or the pending range of ix_deliveries_due) or of the small
# endpoints table, never a count of the delivered ones, which `queue()` makes for /metrics.
_HEALTH = sql(
    "SELECT"
    " (SELECT count(*) FROM deliveries WHERE status = 'pending'),"
    " (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= {now}),"
    " (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= {now}"
    "  AND lease_until > {now}),"
    " (SELECT next_attempt_at FROM deliveries WHERE status = 'pending'"
    "  AND next_attempt_at <= {now} ORDER BY next_attempt_at LIMIT 1),"
    " (SELECT count(*) FROM endpoints WHERE enabled = TRUE AND deleted_at IS NULL"
    "  AND failing_since IS NOT NULL),"
    " (SELECT count(*) FROM endpoints WHERE enabled = TRUE AND deleted_at IS NULL),"
    " (SELECT count(*) FROM endpoints WHERE enabled = FALSE AND deleted_at IS NULL),"
    " {now}"
)


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """What is waiting and how late, as one snapshot: no count of what was delivered."""

    pending: int
    due: int
    in_flight: int
    oldest_due_at: datetime | None
    endpoints_failing: int  # enabled, with a failure since their last success
    endpoints_enabled: int
    endpoints_disabled: int
    now: datetime  # when it was read, by the clock that judged what is due


def queue_health() -> Unit[QueueHealth]:
    """The pending deliveries (due, in flight, the oldest due) and the endpoints by state."""
    row = tuple((yield units.one(_HEALTH)))
    pending, due, in_flight, oldest, failing, enabled, disabled, now = row
    return QueueHealth(
        pending=int(pending),
        due=int(due),
        in_flight=int(in_flight),
        oldest_due_at=ts(oldest),
        endpoints_failing=int(failing),
        endpoints_enabled=int(enabled),
        endpoints_disabled=int(disabled),
        now=ts_required(now),
    )
