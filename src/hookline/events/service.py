"""Publish events into the outbox: the event row and one delivery per subscribed endpoint."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, or_, select

from hookline.delivery.queue import Db
from hookline.ids import new_id
from hookline.models import Delivery, Endpoint, Event, Subscription, utcnow
from hookline.store import outbox
from hookline.store.units import Unit

USER_REGISTERED = "user_registered"
USER_SEND_MESSAGE = "user_send_message"
WEBHOOK_DISABLED = "webhook_disabled"
PING = "ping"
WILDCARD = "*"
# What an endpoint can subscribe to; `ping` is sent directly, never subscribed to.
SUBSCRIBABLE = (USER_REGISTERED, USER_SEND_MESSAGE, WEBHOOK_DISABLED)

# Set on the session by publish_in_session(); the request wakes the workers after it commits.
WAKE_WORKERS = "hookline.wake_workers"


# Built once: publish() runs in every request that changes something.
_ADD_EVENT = insert(Event)
_ADD_DELIVERY = insert(Delivery)
_SUBSCRIBED = (
    select(Subscription.endpoint_id)
    .join(Endpoint, Endpoint.id == Subscription.endpoint_id)
    .where(
        or_(Subscription.event == bindparam("event"), Subscription.event == WILDCARD),
        Endpoint.enabled.is_(True),
    )
    .distinct()
)


def publish(*, event: str, data: dict[str, Any], to: Sequence[str] | None = None) -> Unit[str]:
    """Add the event and its deliveries to the caller's unit of work; return the event id."""
    return outbox.publish(event=event, data=data, to=to)


async def publish_in_session(
    *, session: Db, event: str, data: dict[str, Any], to: Sequence[str] | None = None
) -> str:
    """Add the event and its deliveries to the session's transaction; return the event id.

    The deliveries go to every enabled endpoint subscribed to `event` (or to "*"), or to the
    endpoints `to` names (a ping to a new endpoint).
    """
    now = utcnow()
    event_id = new_id("evt")
    await session.execute(
        _ADD_EVENT, {"id": event_id, "event": event, "payload": data, "created_at": now}
    )
    if to is None:
        endpoint_ids = (await session.execute(_SUBSCRIBED, {"event": event})).scalars().all()
    else:
        endpoint_ids = list(to)
    if endpoint_ids:
        await session.execute(
            _ADD_DELIVERY,
            [
                {
                    "id": new_id("dlv"),
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "status": "pending",
                    "attempts_made": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for endpoint_id in endpoint_ids
            ],
        )
        session.info[WAKE_WORKERS] = True
    return event_id
