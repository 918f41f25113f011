"""The database as the queue: lease due deliveries to a worker, record their attempts, give
leases back.

Due times and leases are read from and written with `{now}`: on PostgreSQL that is the
database's clock, which every worker shares, so a worker whose own clock is off by minutes can
neither take a delivery early nor steal a lease that has not run out. PostgreSQL claims with
`FOR UPDATE SKIP LOCKED`; SQLite's one writer serializes claims.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hookline.store import units
from hookline.store.sql import js, sql, ts_required
from hookline.store.status import Status
from hookline.store.units import Unit

PROBE_EVENT = "ping"  # a one-off check of an endpoint, never tried again


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
    secrets: tuple[str, ...]  # sealed; the old one too while a rotation lasts
    headers: dict[str, str] | None

    @property
    def probe(self) -> bool:
        return self.event == PROBE_EVENT


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt to record and where its outcome leaves the delivery."""

    delivery_id: str
    endpoint_id: str
    number: int
    attempt: dict[str, Any]  # Attempt columns but delivery_id and number
    status: Status
    delay: float | None = None  # seconds until the next attempt, when pending

    @property
    def succeeded(self) -> bool:
        return self.attempt.get("error_kind") is None


# A claim looks at this many times `limit` of the oldest due rows to pick from, so that a
# per-endpoint cap still fills the claim from other endpoints without scanning the backlog.
CANDIDATES_PER_SLOT = 4

# Due: pending, its time come, and not leased (or its lease run out). The status is a literal
# so that the planner sees it implies ix_deliveries_endpoint_pending's WHERE.
_DUE = (
    "{t}.status = 'pending' AND {t}.next_attempt_at <= {{now}}"
    " AND ({t}.lease_until IS NULL OR {t}.lease_until <= {{now}})"
)
# Leasing clears a retry asked for before this attempt: the attempt it asked for is this one.
_LEASE = (
    "UPDATE deliveries SET lease_owner = :owner, lease_until = {after:lease_seconds},"
    " retry_requested_at = NULL WHERE id IN ("
)

# The oldest due rows across endpoints, through ix_deliveries_due: O(limit).
_LEASE_OLDEST = sql(
    _LEASE + "SELECT ranked.id FROM ("
    " SELECT candidates.id, candidates.next_attempt_at, row_number() OVER ("
    "  PARTITION BY candidates.endpoint_id ORDER BY candidates.next_attempt_at) AS rank"
    " FROM (SELECT d.id, d.endpoint_id, d.next_attempt_at FROM deliveries d"
    "  WHERE " + _DUE.format(t="d") + " ORDER BY d.next_attempt_at LIMIT :candidates"
    "  {skip_locked}) AS candidates"
    ") AS ranked WHERE ranked.rank <= :per_endpoint"
    " ORDER BY ranked.next_attempt_at LIMIT :limit) RETURNING id"
)

# The oldest due rows of each endpoint not skipped, through ix_deliveries_endpoint_pending.
#
# Used when endpoints are skipped (their slots are full): the due index would have to walk
# their whole due backlog (a hanging receiver's can be most of the table), while this probes
# each other endpoint once, so it costs O(endpoints), whatever the backlog. (Looking at the
# oldest due rows first and probing only when they are all skipped ones was tried: with a
# hanging receiver's backlog those rows are its own, so the window is wasted work, and the
# worker drained 2.5 times slower in P4.)
# Each probe locks (SKIP LOCKED) the rows it returns, so concurrent claims move past each other's
# rows endpoint by endpoint. The price: up to `per_endpoint` row locks per endpoint with due
# work, chosen or not (locking only the chosen rows was tried: two concurrent claims then pick
# the same rows and the second gets what is left).
_PROBE_LATERAL = (
    _LEASE + "SELECT due.id FROM endpoints JOIN LATERAL ("
    " SELECT d.id, d.next_attempt_at FROM deliveries d"
    " WHERE d.endpoint_id = endpoints.id AND " + _DUE.format(t="d") + ""
    " ORDER BY d.next_attempt_at LIMIT :per_endpoint FOR UPDATE SKIP LOCKED"
    ") AS due ON TRUE WHERE NOT (endpoints.id {in:skip})"
    " ORDER BY due.next_attempt_at LIMIT :limit) RETURNING id"
)
# SQLite has no LATERAL; a correlated IN runs the same probe per endpoint.
_PROBE_CORRELATED = (
    _LEASE + "SELECT d.id FROM endpoints JOIN deliveries d ON d.id IN ("
    " SELECT probe.id FROM deliveries probe"
    " WHERE probe.endpoint_id = endpoints.id AND " + _DUE.format(t="probe") + ""
    " ORDER BY probe.next_attempt_at LIMIT :per_endpoint"
    ") WHERE NOT (endpoints.id {in:skip})"
    " ORDER BY d.next_attempt_at LIMIT :limit) RETURNING id"
)
_LEASE_PER_ENDPOINT = sql(_PROBE_CORRELATED, postgres=_PROBE_LATERAL)

# The old secret signs beside the new one until its time is up (by the database's clock too).
_CLAIMED_ROWS = sql(
    "SELECT d.id, d.attempts_made, e.id, e.event, e.payload, e.created_at, p.id, p.url,"
    " p.secret, CASE WHEN p.old_secret_until > {now} THEN p.old_secret END, p.headers"
    " FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints p ON p.id = d.endpoint_id"
    " WHERE d.id {in:ids} ORDER BY d.next_attempt_at"
)


def claim(
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    per_endpoint: int | None = None,
    skip_endpoints: Collection[str] = (),
) -> Unit[list[Claimed]]:
    """Lease up to `limit` due deliveries (a lapsed lease counts as due) to `owner`.

    At most `per_endpoint` of them go to one endpoint, and none to `skip_endpoints`.
    """
    params: dict[str, Any] = {
        "owner": owner,
        "lease_seconds": float(lease_seconds),
        "limit": limit,
        "per_endpoint": limit if per_endpoint is None else per_endpoint,
    }
    if skip_endpoints:
        leased = yield units.rows(_LEASE_PER_ENDPOINT, {**params, "skip": list(skip_endpoints)})
    else:
        candidates = limit if per_endpoint is None else limit * CANDIDATES_PER_SLOT
        leased = yield units.rows(_LEASE_OLDEST, {**params, "candidates": candidates})
    if not leased:
        return []
    found = yield units.rows(_CLAIMED_ROWS, {"ids": [row[0] for row in leased]})
    return [_claimed(row) for row in found]


def _claimed(row: Any) -> Claimed:
    secrets = (row[8],) if row[9] is None else (row[8], row[9])
    return Claimed(
        delivery_id=row[0],
        attempts_made=row[1],
        event_id=row[2],
        event=row[3],
        payload=js(row[4]),
        event_created_at=ts_required(row[5]),
        endpoint_id=row[6],
        url=row[7],
        secrets=secrets,
        headers=js(row[10]),
    )


# The rows `owner` still holds, locked so that no lease can lapse and be re-claimed between
# this and the update.
_HELD = sql(
    "SELECT id, status, retry_requested_at FROM deliveries"
    " WHERE id {in:ids} AND lease_owner = :owner",
    postgres="SELECT id, status, retry_requested_at FROM deliveries"
    " WHERE id {in:ids} AND lease_owner = :owner FOR UPDATE",
)
# finished_at: set when the delivery leaves pending now, empty while it stays pending, kept
# when it had left already (cancelled while the attempt was in flight).
_FINISH = sql(
    "UPDATE deliveries SET status = :status, attempts_made = :number,"
    " next_attempt_at = {after:delay}, lease_owner = NULL, lease_until = NULL,"
    " retry_requested_at = NULL, finished_at = CASE"
    "  WHEN :finishing THEN {now} WHEN status = 'pending' THEN NULL ELSE finished_at END"
    " WHERE id = :id"
)
_RECORD = sql(
    "INSERT INTO attempts"
    " (delivery_id, number, started_at, duration_ms, status_code, response_body, error_kind,"
    " error) VALUES (:delivery_id, :number, :started_at, :duration_ms, :status_code,"
    " :response_body, :error_kind, :error)"
)


def complete(*, owner: str, finished: Sequence[Finished]) -> Unit[list[Finished]]:
    """Record the attempts whose lease `owner` still holds; return those recorded.

    A worker whose lease lapsed and was taken over must not overwrite the newer result, so its
    late result is dropped (the new holder sends again: at least once).
    """
    if not finished:
        return []
    held = yield units.rows(_HELD, {"ids": [item.delivery_id for item in finished], "owner": owner})
    now_status = {row[0]: (Status(row[1]), row[2] is not None) for row in held}
    mine = [item for item in finished if item.delivery_id in now_status]
    if not mine:
        return []
    updates = [_finish(item, *now_status[item.delivery_id]) for item in mine]
    yield units.execute_many(_FINISH, updates)
    yield units.execute_many(
        _RECORD,
        ({"delivery_id": item.delivery_id, "number": item.number, **item.attempt} for item in mine),
    )
    if any(update["delay"] == 0 for update in updates):
        yield units.wake()  # due again at once (a retry by hand): a claim can take it now
    return mine


def _finish(item: Finished, status_now: Status, retry_requested: bool) -> dict[str, Any]:
    """Where the delivery goes: the outcome's way, unless it changed while the attempt was out."""
    status, delay = item.status, item.delay if item.status == Status.PENDING else None
    if status_now != Status.PENDING:
        # Cancelled while in flight: the attempt is recorded, the delivery stays cancelled.
        status, delay = status_now, None
    elif retry_requested:
        # Retried by hand while in flight (CONTRACT §7): the retry asked for another attempt.
        status, delay = Status.PENDING, 0.0
    return {
        "id": item.delivery_id,
        "status": status,
        "number": item.number,
        "delay": delay,
        "finishing": status_now == Status.PENDING and status != Status.PENDING,
    }


_RELEASE = sql(
    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
    " WHERE id {in:ids} AND lease_owner = :owner"
)


def release(*, owner: str, delivery_ids: Collection[str]) -> Unit[int]:
    """Give leases back unsent, so any worker may claim them at once; how many went back."""
    if not delivery_ids:
        return 0
    released: int = yield units.execute(_RELEASE, {"ids": list(delivery_ids), "owner": owner})
    return released
