"""The database as the queue: claim due deliveries with a lease, complete them, release them.

The only module that knows the SQL dialect: PostgreSQL claims with FOR UPDATE SKIP LOCKED;
SQLite claims with one UPDATE ... RETURNING inside a write (BEGIN IMMEDIATE) transaction.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hookline.models import Attempt, Delivery, Endpoint, Event, UTCDateTime, utcnow

PENDING, SUCCEEDED, FAILED, CANCELLED = "pending", "succeeded", "failed", "cancelled"

# The worker runs these on a bare connection (cheaper than an ORM session); a session works too.
Db = AsyncConnection | AsyncSession


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
    headers: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt to record and where it leaves its delivery."""

    delivery_id: str
    number: int
    attempt: dict[str, Any]  # Attempt columns but delivery_id and number
    status: str
    next_attempt_at: datetime | None
    endpoint_id: str = ""

    @property
    def succeeded(self) -> bool:
        return self.attempt.get("error_kind") is None


# A claim looks at this many times `limit` of the oldest due rows to pick from, so that a
# per-endpoint cap still fills the claim from other endpoints without scanning the backlog.
CANDIDATES_PER_SLOT = 4

# The statements below are built once (per dialect) with bound parameters: building SQLAlchemy
# expressions costs more than running them, and these run for every batch the worker handles.
_deliveries = cast(Table, Delivery.__table__)
_attempts = cast(Table, Attempt.__table__)
_endpoints = cast(Table, Endpoint.__table__)


def _due(table: Any) -> list[Any]:
    now = bindparam("now", type_=UTCDateTime())
    return [
        # A literal, so that the planner sees it implies ix_deliveries_endpoint_pending's WHERE.
        table.c.status == literal_column(f"'{PENDING}'"),
        table.c.next_attempt_at <= now,
        or_(table.c.lease_until.is_(None), table.c.lease_until <= now),
    ]


def _leasing(chosen: Select[Any]) -> Update:
    return (
        update(_deliveries)
        .where(_deliveries.c.id.in_(chosen))
        .values(
            lease_owner=bindparam("owner"),
            lease_until=bindparam("until", type_=UTCDateTime()),
        )
        .returning(_deliveries.c.id)
    )


@cache
def _lease_oldest(postgres: bool) -> Update:
    """The oldest due rows across endpoints, through ix_deliveries_due: O(limit)."""
    due = (
        select(_deliveries.c.id, _deliveries.c.endpoint_id, _deliveries.c.next_attempt_at)
        .where(*_due(_deliveries))
        .order_by(_deliveries.c.next_attempt_at)
        .limit(bindparam("candidates"))
    )
    if postgres:
        due = due.with_for_update(skip_locked=True)
    candidates = due.subquery("candidates")
    rank = func.row_number().over(
        partition_by=candidates.c.endpoint_id, order_by=candidates.c.next_attempt_at
    )
    ranked = select(candidates.c.id, candidates.c.next_attempt_at, rank.label("rank")).subquery(
        "ranked"
    )
    chosen = (
        select(ranked.c.id)
        .where(ranked.c.rank <= bindparam("per_endpoint"))
        .order_by(ranked.c.next_attempt_at)
        .limit(bindparam("limit"))
    )
    return _leasing(chosen)


@cache
def _lease_per_endpoint(postgres: bool) -> Update:
    """The oldest due rows of each endpoint not skipped, through ix_deliveries_endpoint_pending.

    Used when endpoints are skipped (their slots are full): the due index would have to walk
    their whole due backlog (a hanging receiver's can be most of the table), while this probes
    each other endpoint once, so it costs O(endpoints), whatever the backlog. (Looking at the
    oldest due rows first and probing only when they are all skipped ones was tried: with a
    hanging receiver's backlog those rows are its own, so the window is wasted work, and the
    worker drained 2.5 times slower in P4.)
    """
    not_skipped = _endpoints.c.id.not_in(bindparam("skip", expanding=True))
    if postgres:
        # Each probe locks (SKIP LOCKED) the rows it returns, so concurrent claims move past
        # each other's rows endpoint by endpoint. The price: up to `per_endpoint` row locks per
        # endpoint with due work, chosen or not (locking only the chosen rows was tried: two
        # concurrent claims then pick the same rows and the second gets what is left).
        probe = (
            select(_deliveries.c.id, _deliveries.c.next_attempt_at)
            .where(_deliveries.c.endpoint_id == _endpoints.c.id, *_due(_deliveries))
            .order_by(_deliveries.c.next_attempt_at)
            .limit(bindparam("per_endpoint"))
            .with_for_update(skip_locked=True)
            .lateral("due")
        )
        chosen = (
            select(probe.c.id)
            .select_from(_endpoints.join(probe, true()))
            .where(not_skipped)
            .order_by(probe.c.next_attempt_at)
            .limit(bindparam("limit"))
        )
        return _leasing(chosen)
    # SQLite has no LATERAL; a correlated IN runs the same probe per endpoint.
    inner = _deliveries.alias("inner")
    probe_ids = (
        select(inner.c.id)
        .where(inner.c.endpoint_id == _endpoints.c.id, *_due(inner))
        .order_by(inner.c.next_attempt_at)
        .limit(bindparam("per_endpoint"))
        .correlate(_endpoints)
    )
    chosen = (
        select(_deliveries.c.id)
        .select_from(_endpoints.join(_deliveries, _deliveries.c.id.in_(probe_ids)))
        .where(not_skipped)
        .order_by(_deliveries.c.next_attempt_at)
        .limit(bindparam("limit"))
    )
    return _leasing(chosen)


@cache
def _claimed_rows() -> Select[Any]:
    return (
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
            Endpoint.headers,
        )
        .join(Event, Event.id == Delivery.event_id)
        .join(Endpoint, Endpoint.id == Delivery.endpoint_id)
        .where(Delivery.id.in_(bindparam("ids", expanding=True)))
        .order_by(Delivery.next_attempt_at)
    )


async def claim(
    db: Db,
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
    postgres = is_postgres(db)
    params: dict[str, Any] = {
        "now": now,
        "until": now + timedelta(seconds=lease_seconds),
        "owner": owner,
        "limit": limit,
        "per_endpoint": limit if per_endpoint is None else per_endpoint,
        "candidates": limit if per_endpoint is None else limit * CANDIDATES_PER_SLOT,
    }
    if skip_endpoints:
        params["skip"] = list(skip_endpoints)
    lease = _lease_per_endpoint(postgres) if skip_endpoints else _lease_oldest(postgres)
    leased = await db.execute(lease, params)
    ids = leased.scalars().all()
    if not ids:
        return []
    rows = await db.execute(_claimed_rows(), {"ids": list(ids)})
    claimed = []
    for row in rows:
        secrets: tuple[str, ...] = (row[8],)
        if row[9] is not None and row[10] is not None and row[10] > now:
            secrets = (row[8], row[9])
        claimed.append(
            Claimed(
                row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], secrets, row[11]
            )
        )
    return claimed


@cache
def _held(postgres: bool) -> Select[Any]:
    held = select(_deliveries.c.id).where(
        _deliveries.c.id.in_(bindparam("ids", expanding=True)),
        _deliveries.c.lease_owner == bindparam("owner"),
    )
    # Lock them, so that no lease can lapse and be re-claimed between this and the update.
    return held.with_for_update() if postgres else held


@cache
def _finish() -> Update:
    # A delivery cancelled while its attempt was in flight records the attempt but stays
    # cancelled.
    still_pending = _deliveries.c.status == PENDING
    return (
        update(_deliveries)
        .where(_deliveries.c.id == bindparam("b_id"))
        .values(
            status=case((still_pending, bindparam("b_status")), else_=_deliveries.c.status),
            attempts_made=bindparam("b_number"),
            next_attempt_at=case(
                (still_pending, bindparam("b_next", type_=UTCDateTime())), else_=None
            ),
            lease_owner=None,
            lease_until=None,
            finished_at=case(
                (still_pending, bindparam("b_done", type_=UTCDateTime())),
                else_=_deliveries.c.finished_at,
            ),
        )
    )


@cache
def _record() -> Insert:
    return insert(_attempts)


async def complete(db: Db, *, owner: str, finished: Sequence[Finished]) -> list[Finished]:
    """Record attempts whose lease `owner` still holds; return those recorded.

    A worker whose lease lapsed and was taken over must not overwrite the newer result, so its
    late result is dropped (the new holder sends again: at least once).
    """
    if not finished:
        return []
    postgres = is_postgres(db)
    ids = [item.delivery_id for item in finished]
    held = set((await db.execute(_held(postgres), {"ids": ids, "owner": owner})).scalars())
    mine = [item for item in finished if item.delivery_id in held]
    if not mine:
        return []
    now = utcnow()
    await db.execute(
        _finish(),
        [
            {
                "b_id": item.delivery_id,
                "b_status": item.status,
                "b_number": item.number,
                "b_next": item.next_attempt_at,
                "b_done": None if item.status == PENDING else now,
            }
            for item in mine
        ],
    )
    await db.execute(
        _record(),
        [{"delivery_id": item.delivery_id, "number": item.number, **item.attempt} for item in mine],
    )
    return mine


@cache
def _release() -> Update:
    return (
        update(_deliveries)
        .where(
            _deliveries.c.id.in_(bindparam("ids", expanding=True)),
            _deliveries.c.lease_owner == bindparam("owner"),
        )
        .values(lease_owner=None, lease_until=None)
    )


async def release(db: Db, *, owner: str, delivery_ids: Collection[str]) -> None:
    """Give leases back unsent, so any worker may claim them at once."""
    if delivery_ids:
        await db.execute(_release(), {"ids": list(delivery_ids), "owner": owner})


def is_postgres(db: Db) -> bool:
    dialect = db.dialect if isinstance(db, AsyncConnection) else db.get_bind().dialect
    return dialect.name == "postgresql"
