"""The event log and the delivery log: reading them, and sending deliveries again by hand."""

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.delivery.queue import FAILED, PENDING
from hookline.errors import Conflict, NotFound
from hookline.events import service as events
from hookline.events.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    EventDetail,
    EventOut,
)
from hookline.models import Attempt, Delivery, Endpoint, Event, utcnow

LOGGED_EVENTS = (*events.SUBSCRIBABLE, events.PING)


def _deliveries() -> Select[*tuple[Any, ...]]:
    return (
        select(
            Delivery.id,
            Delivery.event_id,
            Event.event,
            Delivery.endpoint_id,
            Endpoint.url,
            Delivery.status,
            Delivery.attempts_made,
            Delivery.next_attempt_at,
            Delivery.created_at,
            Delivery.finished_at,
        )
        .join(Event, Event.id == Delivery.event_id)
        .join(Endpoint, Endpoint.id == Delivery.endpoint_id)
    )


def _delivery_out(row: Any) -> DeliveryOut:
    return DeliveryOut.model_validate(row._asdict())


async def list_events(
    *, session: AsyncSession, event: str | None, limit: int, cursor: str | None
) -> list[EventOut]:
    """Events, newest first, older than `cursor` (an event id) when given."""
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if event is not None:
        name = event.strip().lower()
        if name not in LOGGED_EVENTS:
            raise NotFound(f"Event '{event}' not found")
        query = query.where(Event.event == name)
    if cursor is not None:
        query = query.where(Event.id < cursor)
    rows = (await session.execute(query)).scalars()
    return [EventOut(id=e.id, event=e.event, created_at=e.created_at, data=e.payload) for e in rows]


async def get_event(*, session: AsyncSession, event_id: str) -> EventDetail:
    found = await session.get(Event, event_id)
    if found is None:
        raise NotFound(f"Event '{event_id}' not found")
    rows = await session.execute(
        _deliveries().where(Delivery.event_id == event_id).order_by(Delivery.id)
    )
    return EventDetail(
        id=found.id,
        event=found.event,
        created_at=found.created_at,
        data=found.payload,
        deliveries=[_delivery_out(row) for row in rows],
    )


async def list_deliveries(
    *,
    session: AsyncSession,
    endpoint_id: str,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> list[DeliveryOut]:
    """An endpoint's deliveries, newest first, older than `cursor` (a delivery id) when given."""
    query = (
        _deliveries()
        .where(Delivery.endpoint_id == endpoint_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    if cursor is not None:
        query = query.where(Delivery.id < cursor)
    return [_delivery_out(row) for row in await session.execute(query)]


async def get_delivery(*, session: AsyncSession, delivery_id: str) -> DeliveryDetail:
    # One statement, so one snapshot: the delivery and its attempts agree (two statements
    # could see a result recorded in between, on PostgreSQL's read committed).
    query = (
        _deliveries()
        .add_columns(*(getattr(Attempt, name) for name in AttemptOut.model_fields))
        .outerjoin(Attempt, Attempt.delivery_id == Delivery.id)
        .where(Delivery.id == delivery_id)
        .order_by(Attempt.number)
    )
    rows = [row._asdict() for row in await session.execute(query)]
    if not rows:
        raise NotFound(f"Delivery '{delivery_id}' not found")
    return DeliveryDetail(
        **{name: rows[0][name] for name in DeliveryOut.model_fields},
        attempts=[
            AttemptOut.model_validate({name: row[name] for name in AttemptOut.model_fields})
            for row in rows
            if row["number"] is not None
        ],
    )


async def retry(*, session: AsyncSession, delivery_id: str) -> DeliveryDetail:
    """Make the delivery due now, whatever its status: the next attempt keeps its webhook-id."""
    found = await get_delivery(session=session, delivery_id=delivery_id)
    await _require_enabled(session, found.endpoint_id)
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(status=PENDING, next_attempt_at=utcnow(), finished_at=None)
        .execution_options(synchronize_session=False)
    )
    session.info[events.WAKE_WORKERS] = True
    return await get_delivery(session=session, delivery_id=delivery_id)


async def recover(
    *, session: AsyncSession, endpoint_id: str, since: datetime, until: datetime | None
) -> int:
    """Make the endpoint's failed deliveries created in [since, until) due now; how many."""
    await _require_enabled(session, endpoint_id)
    # Pings are one-off checks, never sent again.
    pings = select(Event.id).where(Event.event == events.PING)
    window = [
        Delivery.endpoint_id == endpoint_id,
        Delivery.status == FAILED,
        Delivery.event_id.not_in(pings),
    ]
    window.append(Delivery.created_at >= since)
    if until is not None:
        window.append(Delivery.created_at < until)
    result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(Delivery)
        .where(*window)
        .values(status=PENDING, next_attempt_at=utcnow(), finished_at=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        session.info[events.WAKE_WORKERS] = True
    return result.rowcount


async def _require_enabled(session: AsyncSession, endpoint_id: str) -> None:
    enabled = await session.scalar(select(Endpoint.enabled).where(Endpoint.id == endpoint_id))
    if enabled is None:
        raise NotFound(f"Webhook '{endpoint_id}' not found")
    if not enabled:
        raise Conflict(
            f"Webhook '{endpoint_id}' is disabled; enable it first"
            ' (PATCH /webhooks/{id} with {"enabled": true})'
        )
