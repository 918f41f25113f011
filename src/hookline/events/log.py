"""The event log and the delivery log: reading them, and sending deliveries again by hand."""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from hookline.errors import Conflict, NotFound
from hookline.events import types
from hookline.events.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    EventDetail,
    EventOut,
)
from hookline.store import redelivery, units
from hookline.store.sql import js, pick, sql, ts, ts_required, variants
from hookline.store.status import Status
from hookline.store.units import Unit

_EVENTS = variants(
    "SELECT id, event, payload, created_at FROM events",
    "ORDER BY id DESC LIMIT :limit",
    optional={"event": "event = :event", "cursor": "id < :cursor"},
)
_EVENT = sql("SELECT id, event, payload, created_at FROM events WHERE id = :id")

# The last column, the endpoint's owner, decides who may see the delivery.
_DELIVERY_COLUMNS = (
    "d.id, d.event_id, v.event, d.endpoint_id, e.url, d.status, d.attempts_made,"
    " d.next_attempt_at, d.created_at, d.finished_at, e.owner_id"
)
_OWNER = 10
_DELIVERY_TABLES = (
    "deliveries d JOIN events v ON v.id = d.event_id JOIN endpoints e ON e.id = d.endpoint_id"
)
_OF_EVENT = sql(
    f"SELECT {_DELIVERY_COLUMNS} FROM {_DELIVERY_TABLES} WHERE d.event_id = :event_id ORDER BY d.id"
)
_OF_ENDPOINT = variants(
    f"SELECT {_DELIVERY_COLUMNS} FROM {_DELIVERY_TABLES}",
    "ORDER BY d.id DESC LIMIT :limit",
    always=["d.endpoint_id = :endpoint_id"],
    optional={"status": "d.status = :status", "cursor": "d.id < :cursor"},
)
# Across endpoints (GET /deliveries): the primary key's range, newest first; with an
# endpoint, ix_deliveries_endpoint's.
_ACROSS = variants(
    f"SELECT {_DELIVERY_COLUMNS} FROM {_DELIVERY_TABLES}",
    "ORDER BY d.id DESC LIMIT :limit",
    optional={
        "endpoint_id": "d.endpoint_id = :endpoint_id",
        "owner_id": "e.owner_id = :owner_id",
        "status": "d.status = :status",
        "event": "v.event = :event",
        "cursor": "d.id < :cursor",
    },
)
# One statement, so one snapshot: the delivery and its attempts agree (two statements could
# see a result recorded in between, on PostgreSQL's read committed).
_ATTEMPT_COLUMNS = ", ".join(f"a.{name}" for name in AttemptOut.model_fields)
_WITH_ATTEMPTS = sql(
    f"SELECT {_DELIVERY_COLUMNS}, {_ATTEMPT_COLUMNS} FROM {_DELIVERY_TABLES}"
    " LEFT JOIN attempts a ON a.delivery_id = d.id WHERE d.id = :id ORDER BY a.number"
)
_ENDPOINT_ENABLED = sql(
    "SELECT enabled, owner_id FROM endpoints WHERE id = :id AND deleted_at IS NULL"
)
_DELIVERY_ENDPOINT = sql(
    "SELECT d.endpoint_id, e.enabled, e.owner_id, e.deleted_at IS NOT NULL FROM deliveries d"
    " JOIN endpoints e ON e.id = d.endpoint_id WHERE d.id = :id"
)

# Whose deliveries the caller sees: None for the admin (all), else a user's id (its endpoints').
Scope = str | None


def _visible(owner_id: str | None, scope: Scope) -> bool:
    return scope is None or owner_id == scope


def _delivery_out(row: Sequence[Any]) -> DeliveryOut:
    return DeliveryOut(
        id=row[0],
        event_id=row[1],
        event=row[2],
        endpoint_id=row[3],
        url=row[4],
        status=row[5],
        attempts_made=row[6],
        next_attempt_at=ts(row[7]),
        created_at=ts_required(row[8]),
        finished_at=ts(row[9]),
    )


def _event_out(row: Sequence[Any]) -> EventOut:
    return EventOut(id=row[0], event=row[1], data=js(row[2]), created_at=ts_required(row[3]))


def list_events(*, event: str | None, limit: int, cursor: str | None) -> Unit[list[EventOut]]:
    """Events, newest first, older than `cursor` (an event id) when given."""
    name = None
    if event is not None:
        found = yield from types.find(event)
        if found is None:
            raise NotFound(f"Event '{event}' not found")
        name = found.name
    params = {"event": name, "cursor": cursor}
    found = yield units.rows(pick(_EVENTS, params), {**params, "limit": limit})
    return [_event_out(row) for row in found]


def get_event(*, event_id: str, scope: Scope = None) -> Unit[EventDetail]:
    """One event with its deliveries; a user sees an event only through its own endpoints'
    deliveries, and only those."""
    found = yield units.one(_EVENT, {"id": event_id})
    if found is None:
        raise NotFound(f"Event '{event_id}' not found")
    rows = yield units.rows(_OF_EVENT, {"event_id": event_id})
    deliveries = [row for row in rows if _visible(row[_OWNER], scope)]
    if scope is not None and not deliveries:
        raise NotFound(f"Event '{event_id}' not found")
    return EventDetail(
        **_event_out(found).model_dump(), deliveries=[_delivery_out(row) for row in deliveries]
    )


def list_deliveries(
    *, endpoint_id: str, status: str | None, limit: int, cursor: str | None, scope: Scope = None
) -> Unit[list[DeliveryOut]]:
    """An endpoint's deliveries, newest first, older than `cursor` (a delivery id) when given."""
    yield from _endpoint_enabled(endpoint_id, scope)  # its 404
    params = {"status": status, "cursor": cursor}
    found = yield units.rows(
        pick(_OF_ENDPOINT, params), {**params, "endpoint_id": endpoint_id, "limit": limit}
    )
    return [_delivery_out(row) for row in found]


def list_all_deliveries(
    *,
    status: str | None,
    event: str | None,
    endpoint_id: str | None,
    limit: int,
    cursor: str | None,
    scope: Scope = None,
) -> Unit[list[DeliveryOut]]:
    """Deliveries across endpoints (a user's: its own endpoints'), newest first, older than
    `cursor` (a delivery id) when given; a deleted endpoint's too."""
    name = None
    if event is not None:
        found = yield from types.find(event)
        if found is None:
            raise NotFound(f"Event '{event}' not found")
        name = found.name
    params = {
        "endpoint_id": endpoint_id,
        "owner_id": scope,
        "status": status,
        "event": name,
        "cursor": cursor,
    }
    rows = yield units.rows(pick(_ACROSS, params), {**params, "limit": limit})
    return [_delivery_out(row) for row in rows]


def get_delivery(*, delivery_id: str, scope: Scope = None) -> Unit[DeliveryDetail]:
    rows = yield units.rows(_WITH_ATTEMPTS, {"id": delivery_id})
    if not rows or not _visible(rows[0][_OWNER], scope):
        raise NotFound(f"Delivery '{delivery_id}' not found")
    names, first = list(AttemptOut.model_fields), _OWNER + 1
    attempts = [
        dict(zip(names, row[first:], strict=True)) for row in rows if row[first] is not None
    ]
    return DeliveryDetail(
        **_delivery_out(rows[0]).model_dump(),
        attempts=[_attempt_out(attempt) for attempt in attempts],
    )


def _attempt_out(columns: dict[str, Any]) -> AttemptOut:
    return AttemptOut.model_validate(
        columns
        | {
            "started_at": ts_required(columns["started_at"]),
            "request_headers": js(columns["request_headers"]),
            "response_headers": js(columns["response_headers"]),
        }
    )


def retry(*, delivery_id: str, scope: Scope = None) -> Unit[DeliveryDetail]:
    """Make the delivery due now, whatever its status: the next attempt keeps its webhook-id."""
    found = yield units.one(_DELIVERY_ENDPOINT, {"id": delivery_id})
    if found is None or not _visible(found[2], scope):
        raise NotFound(f"Delivery '{delivery_id}' not found")
    if found[3]:
        raise Conflict(f"Webhook '{found[0]}' was deleted: nothing more is sent to it")
    _require_enabled(found[0], found[1])
    yield from redelivery.retry_now(delivery_id)
    return (yield from get_delivery(delivery_id=delivery_id))


def recover(
    *,
    endpoint_id: str,
    since: datetime,
    until: datetime | None,
    statuses: Collection[str] = (Status.FAILED,),
    scope: Scope = None,
) -> Unit[int]:
    """Make the endpoint's deliveries created in [since, until) whose status is one of
    `statuses` due now (their next attempt manual); how many."""
    _require_enabled(endpoint_id, (yield from _endpoint_enabled(endpoint_id, scope)))
    # Pings are one-off checks: the store never sends them again.
    requeued: int = yield from redelivery.requeue(
        endpoint_id=endpoint_id,
        since=since,
        until=until,
        statuses=sorted({Status(status) for status in statuses}),
    )
    return requeued


def _endpoint_enabled(endpoint_id: str, scope: Scope) -> Unit[bool]:
    found = yield units.one(_ENDPOINT_ENABLED, {"id": endpoint_id})
    if found is None or not _visible(found[1], scope):
        raise NotFound(f"Webhook '{endpoint_id}' not found")
    return bool(found[0])


def _require_enabled(endpoint_id: str, enabled: Any) -> None:
    if not enabled:
        raise Conflict(
            f"Webhook '{endpoint_id}' is disabled; enable it first"
            ' (PATCH /endpoints/{id} with {"enabled": true})'
        )
