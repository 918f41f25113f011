"""The body a receiver gets: compact JSON `{"id", "event", "timestamp", "data"}`."""

import json
from datetime import datetime
from typing import Any

import orjson

from hookline.store.outbox import timestamp

__all__ = ["check_data", "render", "timestamp"]


def render(*, event_id: str, event: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    envelope = {"id": event_id, "event": event, "timestamp": timestamp(created_at), "data": data}
    return orjson.dumps(envelope)


def check_data(data: dict[str, Any]) -> None:
    """ValueError unless `data` renders as JSON that any receiver can read: no NaN or
    Infinity, integers within 64 bits, no lone surrogates, nesting within orjson's limit."""
    try:
        orjson.dumps(data)
        json.dumps(data, allow_nan=False)  # orjson writes NaN as null; refuse it instead
    except (orjson.JSONEncodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"data cannot be sent as JSON: {exc}") from exc
