"""The database as the queue: claim due deliveries with a lease, complete them, release them.

The only module that knows the SQL dialect: PostgreSQL claims with FOR UPDATE SKIP LOCKED;
SQLite claims with one UPDATE ... RETURNING inside a write (BEGIN IMMEDIATE) transaction.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.models import Attempt, Delivery, Endpoint, Event, UTCDateTime, utcnow

PENDING, SUCCEEDED, FAILED, CANCELLED = "pending", "succeeded", "failed", "cancelled"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased delivery with all the worker needs to send it."""

    delivery_id: str
    attempts_made: int
    event_id: str
    event: str
    payload: dict[str, Any]
    event_created_at: datetime
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt to record and where it leaves its delivery."""

    delivery_id: str
    number: int
    attempt: dict[str, Any]  # Attempt columns but delivery_id and number
    status: str
    next_attempt_at: datetime | None


# A claim looks at this many times `limit` of the oldest due rows to pick from, so that a
# per-endpoint cap still fills the claim from other endpoints without scanning the backlog.
CANDIDATES_PER_SLOT = 4


async def claim(
    session: AsyncSession,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    per_endpoint: int | None = None,
    skip_endpoints: Collection[str] = (),
) -> list[Claimed]:
    """Lease up to `limit` due deliveries (a lapsed lease counts as due) to `owner`.

    At most `per_endpoint` of them go to one endpoint, and none to `skip_endpoints`.
    """
    now = utcnow()
    due = (
        select(Delivery.id, Delivery.endpoint_id, Delivery.next_attempt_at)
        .where(
            Delivery.status == PENDING,
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit if per_endpoint is None else limit * CANDIDATES_PER_SLOT)
    )
    if skip_endpoints:
        due = due.where(Delivery.endpoint_id.not_in(list(skip_endpoints)))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    candidates = due.subquery("candidates")
    rank = func.row_number().over(
        partition_by=candidates.c.endpoint_id, order_by=candidates.c.next_attempt_at
    )
    ranked = select(candidates.c.id, candidates.c.next_attempt_at, rank.label("rank")).subquery(
        "ranked"
    )
    chosen = select(ranked.c.id).order_by(ranked.c.next_attempt_at).limit(limit)
    if per_endpoint is not None:
        chosen = chosen.where(ranked.c.rank <= per_endpoint)
    leased = await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(chosen))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    ids = leased.scalars().all()
    if not ids:
        return []
    rows = await session.execute(
        select(
            Delivery.id,
            Delivery.attempts_made,
            Event.id,
            Event.event,
            Event.payload,
            Event.created_at,
            Endpoint.id,
            Endpoint.url,
            Endpoint.secret,
            Endpoint.old_secret,
            Endpoint.old_secret_until,
        )
        .join(Event, Event.id == Delivery.event_id)
        .join(Endpoint, Endpoint.id == Delivery.endpoint_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.next_attempt_at)
    )
    claimed = []
    for row in rows:
        secrets: tuple[str, ...] = (row[8],)
        if row[9] is not None and row[10] is not None and row[10] > now:
            secrets = (row[8], row[9])
        claimed.append(
            Claimed(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], secrets)
        )
    return claimed


async def complete(session: AsyncSession, *, owner: str, finished: Sequence[Finished]) -> int:
    """Record attempts whose lease `owner` still holds; return how many were recorded.

    A worker whose lease lapsed and was taken over must not overwrite the newer result, so its
    late result is dropped (the new holder sends again: at least once).
    """
    now = utcnow()
    # A delivery cancelled while its attempt was in flight records the attempt but stays
    # cancelled.
    still_pending = Delivery.status == PENDING
    attempts = []
    for item in finished:
        done = None if item.status == PENDING else now
        held = await session.execute(
            update(Delivery)
            .where(Delivery.id == item.delivery_id, Delivery.lease_owner == owner)
            .values(
                status=case((still_pending, item.status), else_=Delivery.status),
                attempts_made=item.number,
                next_attempt_at=case((still_pending, _moment(item.next_attempt_at)), else_=None),
                lease_owner=None,
                lease_until=None,
                finished_at=case((still_pending, _moment(done)), else_=Delivery.finished_at),
            )
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        if held.first() is not None:
            attempts.append(
                {"delivery_id": item.delivery_id, "number": item.number, **item.attempt}
            )
    if attempts:
        await session.execute(insert(Attempt), attempts)
    return len(attempts)


async def release(session: AsyncSession, *, owner: str, delivery_ids: Collection[str]) -> None:
    """Give leases back unsent, so any worker may claim them at once."""
    if not delivery_ids:
        return
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(delivery_ids)), Delivery.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def _moment(value: datetime | None) -> Any:
    """A datetime parameter typed as such inside CASE (PostgreSQL would take it for text)."""
    return literal(value, UTCDateTime())
