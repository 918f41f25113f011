"""The body a receiver gets: compact JSON `{"id", "event", "timestamp", "data"}` (CONTRACT §6)."""

from datetime import datetime
from typing import Any

import orjson


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a `Z`, as every hookline timestamp is written."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render(*, event_id: str, event: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    envelope = {"id": event_id, "event": event, "timestamp": timestamp(created_at), "data": data}
    return orjson.dumps(envelope)
