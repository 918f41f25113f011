"""The outbox: an event and its deliveries, added to the caller's unit of work."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hookline import filtering
from hookline.ids import new_id
from hookline.models import utcnow
from hookline.store import claims, units
from hookline.store.sql import js, sql
from hookline.store.units import Unit

_ADD_EVENT = sql(
    "INSERT INTO events (id, event, payload, user_id, created_at)"
    " VALUES (:id, :event, :payload, :user_id, :created_at)"
)
# Due at once, by the database's clock (the one claims compare with).
_ADD_DELIVERY = sql(
    "INSERT INTO deliveries"
    " (id, event_id, endpoint_id, status, attempts_made, next_attempt_at, created_at)"
    " VALUES (:id, :event_id, :endpoint_id, 'pending', 0, {now}, :created_at)"
)

# Subscribed, or subscribed to everything ("*"), and enabled; the admin's (no owner), or the
# endpoints of the user the event concerns.
# Its filter is evaluated here, on the event about to be stored.
_SUBSCRIBERS = sql(
    "SELECT e.id, e.filter FROM endpoints e"
    " WHERE e.id IN (SELECT s.endpoint_id FROM subscriptions s WHERE s.event IN (:event, '*'))"
    " AND e.enabled = TRUE AND e.deleted_at IS NULL"
    " AND (e.owner_id IS NULL OR e.owner_id = :user_id)"
)


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a `Z`, as every hookline timestamp is written."""
    # strftime("%Y-%m-%dT%H:%M:%S.%fZ") by hand: the same text for a fifth of the cost (every
    # delivery's body has one).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - the fastest here
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


@dataclass(frozen=True, slots=True)
class Published:
    event_id: str
    deliveries: int  # how many endpoints get it


def publish(
    *,
    event: str,
    data: dict[str, Any],
    user_id: str | None = None,
    to: Sequence[str] | None = None,
    created_at: datetime | None = None,
) -> Unit[Published]:
    """Add the event and its deliveries to the caller's unit of work.

    The deliveries go to every enabled endpoint subscribed to `event` (or to "*") that is the
    admin's or belongs to `user_id` (the user the event concerns), or to the endpoints `to`
    names (a ping to a new endpoint).
    """
    event_id, created_at = new_id("evt"), created_at or utcnow()
    if to is None:
        found = yield units.rows(_SUBSCRIBERS, {"event": event, "user_id": user_id})
        envelope = None
        endpoint_ids = []
        for endpoint_id, filter_ in found:
            if filter_ is not None:
                envelope = envelope or {
                    "id": event_id,
                    "event": event,
                    "timestamp": timestamp(created_at),
                    "data": data,
                }
                if not filtering.matches(js(filter_), envelope):
                    continue
            endpoint_ids.append(endpoint_id)
    else:
        endpoint_ids = list(to)
    yield from enqueue(
        event=event,
        data=data,
        endpoint_ids=endpoint_ids,
        created_at=created_at,
        user_id=user_id,
        event_id=event_id,
    )
    return Published(event_id, len(endpoint_ids))


def enqueue(
    *,
    event: str,
    data: dict[str, Any],
    endpoint_ids: Sequence[str],
    created_at: datetime,
    event_id: str | None = None,
    user_id: str | None = None,
) -> Unit[str]:
    """Store the event and one pending delivery per endpoint; wake the workers if any."""
    event_id = event_id or new_id("evt")
    yield units.execute(
        _ADD_EVENT,
        {
            "id": event_id,
            "event": event,
            "payload": data,
            "user_id": user_id,
            "created_at": created_at,
        },
    )
    if endpoint_ids:
        yield units.execute_many(
            _ADD_DELIVERY,
            (
                {
                    "id": new_id("dlv"),
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "created_at": created_at,
                }
                for endpoint_id in endpoint_ids
            ),
        )
        yield units.wake()
    return event_id


_ADD_FINISHED = sql(
    "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts_made, next_attempt_at,"
    " created_at, finished_at) VALUES (:id, :event_id, :endpoint_id, :status, 1, NULL,"
    " :created_at, :finished_at)"
)


def record_sent(
    *,
    event_id: str,
    event: str,
    created_at: datetime,
    data: dict[str, Any],
    sent: Sequence[tuple[str, dict[str, Any]]],
) -> Unit[list[str]]:
    """Record an event that was sent at once (a ping by hand): one finished delivery per
    endpoint with its one attempt (trigger `manual`), never retried.

    `sent` pairs an endpoint id with its attempt's columns (Outcome.as_row()). Returns the
    delivery ids, in that order.
    """
    yield units.execute(
        _ADD_EVENT,
        {
            "id": event_id,
            "event": event,
            "payload": data,
            "user_id": None,
            "created_at": created_at,
        },
    )
    finished = utcnow()
    deliveries, attempts = [], []
    for endpoint_id, attempt in sent:
        delivery_id = new_id("dlv")
        ok = attempt.get("error_kind") is None
        deliveries.append(
            {
                "id": delivery_id,
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "status": "succeeded" if ok else "failed",
                "created_at": created_at,
                "finished_at": finished,
            }
        )
        attempts.append(
            {**attempt, "delivery_id": delivery_id, "number": 1, "trigger": claims.MANUAL}
        )
    if deliveries:
        yield units.execute_many(_ADD_FINISHED, deliveries)
        yield units.execute_many(claims.RECORD_ATTEMPT, attempts)
    return [str(d["id"]) for d in deliveries]
