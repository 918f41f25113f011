"""An endpoint's health: the auto-disable clock, disabling (and telling subscribers), enabling.

Called by the worker with the attempts it just recorded, and by the API when an admin
disables or re-enables an endpoint; runs in the caller's transaction.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, select, update

from hookline.delivery import envelope
from hookline.delivery.queue import CANCELLED, PENDING, Db
from hookline.events import service as events
from hookline.models import Delivery, Endpoint, UTCDateTime, utcnow

GONE_REASON = "the receiver answered 410 Gone"

_endpoints = cast(Table, Endpoint.__table__)
_deliveries = cast(Table, Delivery.__table__)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What the clock needs to know of one recorded attempt."""

    endpoint_id: str
    succeeded: bool
    status_code: int | None
    started_at: datetime


@cache
def _reset_clock() -> Update:
    return (
        update(_endpoints)
        .where(
            _endpoints.c.id.in_(bindparam("ids", expanding=True)),
            _endpoints.c.failing_since.is_not(None),
        )
        .values(failing_since=None)
    )


@cache
def _start_clock() -> Update:
    return (
        update(_endpoints)
        .where(_endpoints.c.id == bindparam("b_id"), _endpoints.c.failing_since.is_(None))
        .values(failing_since=bindparam("b_since", type_=UTCDateTime()))
    )


async def record(db: Db, results: Iterable[AttemptResult], *, disable_after: float) -> list[str]:
    """Advance each endpoint's clock; disable those failing too long or gone. Returns the ids
    of endpoints this disabled."""
    succeeded: set[str] = set()
    first_failure: dict[str, datetime] = {}
    gone: set[str] = set()
    for result in results:
        if result.succeeded:
            succeeded.add(result.endpoint_id)
        else:
            since = first_failure.get(result.endpoint_id)
            if since is None or result.started_at < since:
                first_failure[result.endpoint_id] = result.started_at
            if result.status_code == 410:
                gone.add(result.endpoint_id)
    # Any success resets the clock, even beside failures in the same batch.
    failing = {k: v for k, v in first_failure.items() if k not in succeeded}
    if succeeded:
        await db.execute(_reset_clock(), {"ids": list(succeeded)})
    disabled: list[str] = []
    if gone:
        disabled += await disable(db, gone, reason=GONE_REASON)
    if failing:
        await db.execute(_start_clock(), [{"b_id": k, "b_since": v} for k, v in failing.items()])
        cutoff = utcnow() - timedelta(seconds=disable_after)
        expired = await db.execute(
            select(Endpoint.id, Endpoint.failing_since).where(
                Endpoint.id.in_(list(failing.keys() - gone)),
                Endpoint.enabled.is_(True),
                Endpoint.failing_since <= cutoff,
            )
        )
        for endpoint_id, since in expired.all():
            if since is None:  # the query excludes it; this tells the type checker
                continue
            reason = (
                f"every delivery failed for more than {disable_after:g} s"
                f" (since {envelope.timestamp(since)})"
            )
            disabled += await disable(db, [endpoint_id], reason=reason)
    return disabled


async def disable(db: Db, endpoint_ids: Collection[str], *, reason: str) -> list[str]:
    """Disable these endpoints (those still enabled), cancel their pending deliveries and fire
    `webhook_disabled` for each; return the ids that were enabled until now."""
    now = utcnow()
    changed = await db.execute(
        update(Endpoint)
        .where(Endpoint.id.in_(list(endpoint_ids)), Endpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, disabled_at=now)
        .returning(Endpoint.id, Endpoint.url)
        .execution_options(synchronize_session=False)
    )
    disabled = changed.all()
    if not disabled:
        return []
    ids = [row[0] for row in disabled]
    await db.execute(
        update(Delivery)
        .where(Delivery.endpoint_id.in_(ids), Delivery.status == PENDING)
        .values(status=CANCELLED, next_attempt_at=None, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    for endpoint_id, url in disabled:
        data: dict[str, Any] = {
            "id": endpoint_id,
            "url": url,
            "reason": reason,
            "disabled_at": envelope.timestamp(now),
        }
        await events.publish_in_session(session=db, event=events.WEBHOOK_DISABLED, data=data)
    return ids


async def enable(db: Db, endpoint_id: str) -> None:
    """Enable an endpoint again with a fresh clock (its cancelled deliveries stay cancelled)."""
    await db.execute(
        update(Endpoint)
        .where(Endpoint.id == endpoint_id)
        .values(enabled=True, disabled_reason=None, disabled_at=None, failing_since=None)
        .execution_options(synchronize_session=False)
    )
