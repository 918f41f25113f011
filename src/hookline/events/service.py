"""Publish events into the outbox: the event row and one delivery per endpoint it reaches."""

from collections.abc import Sequence
from typing import Any

from hookline.delivery import envelope
from hookline.errors import NotFound, Unprocessable
from hookline.events import types
from hookline.events.schemas import EventIn, EventSent
from hookline.events.types import PING, USER_REGISTERED, USER_SEND_MESSAGE, WILDCARD
from hookline.models import utcnow
from hookline.store import outbox, units
from hookline.store.health import WEBHOOK_DISABLED
from hookline.store.outbox import Published
from hookline.store.sql import sql
from hookline.store.units import Unit

_USER_ID = sql("SELECT id FROM users WHERE username = :username")

__all__ = [
    "PING",
    "USER_REGISTERED",
    "USER_SEND_MESSAGE",
    "WEBHOOK_DISABLED",
    "WILDCARD",
    "Published",
    "publish",
    "send",
]


def publish(
    *,
    event: str,
    data: dict[str, Any],
    user_id: str | None = None,
    to: Sequence[str] | None = None,
) -> Unit[Published]:
    """Add the event and its deliveries to the caller's unit of work.

    It reaches the admin's endpoints that subscribe to it and those of `user_id`, the user it
    concerns, or the endpoints `to` names.
    """
    return outbox.publish(event=event, data=data, user_id=user_id, to=to)


def send(body: EventIn) -> Unit[EventSent]:
    """An application's event (POST /events): its type known and not built in or archived, its
    data valid against the type's schema, then published as hookline's own events are."""
    found = yield from types.find(body.event)
    if found is None:
        raise NotFound(f"Event '{body.event}' not found")
    if found.builtin:
        raise Unprocessable(
            f"Event type '{found.name}' is built in: hookline sends it itself;"
            " POST /events sends the types you define (POST /event-types)"
        )
    if found.archived:
        raise Unprocessable(f"Event type '{found.name}' is archived: it cannot be sent")
    try:
        envelope.check_data(body.data)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    types.validate(found.name, found.schema_, body.data)
    user_id = None
    if body.user is not None:
        user_id = yield units.value(_USER_ID, {"username": body.user.lower()})
        if user_id is None:
            raise NotFound(f"User '{body.user}' does not exist")
    created_at = utcnow()
    published = yield from outbox.publish(
        event=found.name, data=body.data, user_id=user_id, created_at=created_at
    )
    return EventSent(
        id=published.event_id,
        event=found.name,
        timestamp=created_at,
        deliveries=published.deliveries,
    )
