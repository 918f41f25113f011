"""An endpoint's health: disabling it (cancelling what it had pending, telling subscribers) and
enabling it again."""

from collections.abc import Collection
from typing import Any

from hookline.models import utcnow
from hookline.store import outbox, redelivery, units
from hookline.store.sql import sql
from hookline.store.units import Unit

WEBHOOK_DISABLED = "webhook_disabled"

_DISABLE = sql(
    "UPDATE endpoints SET enabled = FALSE, disabled_reason = :reason, disabled_at = :now"
    " WHERE id {in:ids} AND enabled = TRUE RETURNING id, url"
)
_ENABLE = sql(
    "UPDATE endpoints SET enabled = TRUE, disabled_reason = NULL, disabled_at = NULL,"
    " failing_since = NULL WHERE id = :id"
)


def timestamp(when: Any) -> str:
    """A time as the envelope writes it (UTC, microseconds, Z)."""
    return str(when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def disable(endpoint_ids: Collection[str], *, reason: str) -> Unit[list[str]]:
    """Disable these endpoints (those still enabled), cancel their pending deliveries and fire
    `webhook_disabled` for each; return the ids that were enabled until now."""
    now = utcnow()
    found = yield units.rows(_DISABLE, {"ids": sorted(endpoint_ids), "reason": reason, "now": now})
    disabled = [(row[0], row[1]) for row in found]
    if not disabled:
        return []
    ids = [endpoint_id for endpoint_id, _ in disabled]
    yield from redelivery.cancel(ids)
    for endpoint_id, url in disabled:
        data = {"id": endpoint_id, "url": url, "reason": reason, "disabled_at": timestamp(now)}
        yield from outbox.publish(event=WEBHOOK_DISABLED, data=data)
    return ids


def enable(endpoint_id: str) -> Unit[None]:
    """Enable an endpoint again with a fresh clock (its cancelled deliveries stay cancelled)."""
    yield units.execute(_ENABLE, {"id": endpoint_id})
