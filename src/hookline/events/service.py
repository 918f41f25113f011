"""Publish events into the outbox: the event row and one delivery per subscribed endpoint."""

from collections.abc import Sequence
from typing import Any

from hookline.store import outbox
from hookline.store.health import WEBHOOK_DISABLED
from hookline.store.units import Unit

USER_REGISTERED = "user_registered"
USER_SEND_MESSAGE = "user_send_message"
PING = "ping"
WILDCARD = "*"
# What an endpoint can subscribe to; `ping` is sent directly, never subscribed to.
SUBSCRIBABLE = (USER_REGISTERED, USER_SEND_MESSAGE, WEBHOOK_DISABLED)

__all__ = [
    "PING",
    "SUBSCRIBABLE",
    "USER_REGISTERED",
    "USER_SEND_MESSAGE",
    "WEBHOOK_DISABLED",
    "publish",
]


def publish(*, event: str, data: dict[str, Any], to: Sequence[str] | None = None) -> Unit[str]:
    """Add the event and its deliveries to the caller's unit of work; return the event id."""
    return outbox.publish(event=event, data=data, to=to)
