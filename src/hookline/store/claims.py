"""The database as the queue: lease due deliveries to a worker, record their attempts, give
leases back.

Due times and leases are read from and written with `{now}`: on PostgreSQL that is the
database's clock, which every worker shares, so a worker whose own clock is off by minutes can
neither take a delivery early nor steal a lease that has not run out. PostgreSQL claims with
`FOR UPDATE SKIP LOCKED`; SQLite's one writer serializes claims.
"""

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hookline.store import units
from hookline.store.sql import batched, js, sql, ts, ts_required
from hookline.store.status import Status
from hookline.store.units import Unit

PROBE_EVENT = "ping"  # a one-off check of an endpoint, never tried again
# What started an attempt: the schedule (the first attempt and its retries), or a person.
SCHEDULED, MANUAL = "scheduled", "manual"


@dataclass(slots=True)  # made per attempt: not frozen, whose __init__ costs ~7x
class Claimed:
    """A leased delivery with all the worker needs to send it."""

    delivery_id: str
    attempts_made: int
    event_id: str
    event: str
    # The event's data as the column holds it (JSON text): parsed only when the body is made,
    # once per event however many endpoints get it (`data`).
    payload: Any
    event_created_at: datetime
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]  # sealed; the old one too while a rotation lasts
    headers: dict[str, str] | None  # each value sealed, as stored: the sender opens them
    # Seconds to wait before sending: a rate-limited endpoint's attempts are spaced 1/rate apart.
    wait: float = 0.0
    # Its endpoint's next delivery waits for this one's result: record it without delay.
    ordered: bool = False
    # Asked for by hand (a retry, a recovery): the attempt's trigger is `manual`.
    manual: bool = False

    @property
    def data(self) -> dict[str, Any]:
        """The event's data."""
        data: dict[str, Any] = js(self.payload)
        return data

    @property
    def probe(self) -> bool:
        return self.event == PROBE_EVENT

    @property
    def trigger(self) -> str:
        return MANUAL if self.manual else SCHEDULED


@dataclass(slots=True)  # made per attempt: not frozen, whose __init__ costs ~7x
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
# Paced endpoints are served apart (below), and left out here by their columns: a list of their
# ids in `skip` would cost PostgreSQL's generic plan an element-by-element scan per endpoint.
_UNPACED = " AND endpoints.rate_limit IS NULL AND NOT endpoints.ordered"
_PROBE_LATERAL = (
    _LEASE + "SELECT due.id FROM endpoints JOIN LATERAL ("
    " SELECT d.id, d.next_attempt_at FROM deliveries d"
    " WHERE d.endpoint_id = endpoints.id AND " + _DUE.format(t="d") + ""
    " ORDER BY d.next_attempt_at LIMIT :per_endpoint FOR UPDATE SKIP LOCKED"
    ") AS due ON TRUE WHERE NOT (endpoints.id {in:skip})"
    + _UNPACED
    + " ORDER BY due.next_attempt_at LIMIT :limit) RETURNING id"
)
# SQLite has no LATERAL; a correlated IN runs the same probe per endpoint.
_PROBE_CORRELATED = (
    _LEASE + "SELECT d.id FROM endpoints JOIN deliveries d ON d.id IN ("
    " SELECT probe.id FROM deliveries probe"
    " WHERE probe.endpoint_id = endpoints.id AND " + _DUE.format(t="probe") + ""
    " ORDER BY probe.next_attempt_at LIMIT :per_endpoint"
    ") WHERE NOT (endpoints.id {in:skip})"
    + _UNPACED
    + " ORDER BY d.next_attempt_at LIMIT :limit) RETURNING id"
)
_LEASE_PER_ENDPOINT = sql(_PROBE_CORRELATED, postgres=_PROBE_LATERAL)

# The old secret signs beside the new one until its time is up (by the database's clock too).
_CLAIMED_ROWS = sql(
    "SELECT d.id, d.attempts_made, e.id, e.event, e.payload, e.created_at, p.id, p.url,"
    " p.secret, CASE WHEN p.old_secret_until > {now} THEN p.old_secret END, p.headers,"
    " p.ordered, d.manual"
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

    At most `per_endpoint` of them go to one endpoint, and none to `skip_endpoints`. Paced
    endpoints (rate-limited or ordered) are served first, each by its own rule.
    """
    cap = limit if per_endpoint is None else per_endpoint
    params: dict[str, Any] = {
        "owner": owner,
        "lease_seconds": float(lease_seconds),
        "limit": limit,
        "per_endpoint": cap,
    }
    paced = [row[0] for row in (yield units.rows(_PACED_IDS))]
    waits: dict[str, float] = {}
    paced_at = None
    if paced:
        waits, paced_at = yield from _claim_paced(params, skip_endpoints, cap)
        params["limit"] = limit - len(waits)
    leased: list[Any] = []
    if params["limit"] <= 0:
        leased = []
    elif skip_endpoints or paced:  # the oldest due rows could be paced ones: probe instead
        leased = yield units.rows(_LEASE_PER_ENDPOINT, {**params, "skip": list(skip_endpoints)})
    else:
        candidates = limit if per_endpoint is None else limit * CANDIDATES_PER_SLOT
        leased = yield units.rows(_LEASE_OLDEST, {**params, "candidates": candidates})
    ids = [*waits, *(row[0] for row in leased)]
    if not ids:
        return []
    found = yield units.rows(_CLAIMED_ROWS, {"ids": ids})
    if waits and paced_at is not None:
        spent = (ts_required((yield units.value(_CLOCK))) - paced_at).total_seconds()
        waits = {k: max(0.0, v - spent) for k, v in waits.items()}
    return [_claimed(row, waits.get(row[0], 0.0)) for row in found]


# -- paced endpoints: rate limits and ordered delivery ----------------------------------------

# How far ahead a claim schedules a rate-limited endpoint's attempts (it leases what may start
# within this many seconds, each told how long to wait). What is scheduled ahead is what a
# worker that stalls (a busy CPU) can send late all at once: rate * horizon attempts at most.
PACE_HORIZON = 0.25

# A deleted one has nothing pending: no claim need pass over it.
_PACED_IDS = sql(
    "SELECT id FROM endpoints WHERE (rate_limit IS NOT NULL OR ordered) AND deleted_at IS NULL"
)
# The paced endpoints with due work, locked on PostgreSQL so that one claim at a time moves an
# endpoint's pace (another claim skips it meanwhile).
# The paced endpoints that can take something now: a rate-limited one whose pace is within
# reach, an ordered one whose head (its oldest pending delivery) is due and not in flight. Those
# that can take nothing are left out, so they never crowd out those that can.
_PACED_DUE = (
    "SELECT p.id, p.rate_limit, p.ordered, p.rate_next_at, {clock} FROM endpoints p"
    " WHERE (p.rate_limit IS NOT NULL OR p.ordered) AND NOT (p.id {in:skip})"
    " AND (p.rate_next_at IS NULL OR p.rate_next_at < {after:horizon})"
    " AND CASE WHEN p.ordered THEN COALESCE((SELECT " + _DUE.format(t="h") + ""
    " FROM deliveries h WHERE h.endpoint_id = p.id AND h.status = 'pending'"
    " ORDER BY h.id LIMIT 1), FALSE)"
    " ELSE EXISTS (SELECT 1 FROM deliveries d WHERE d.endpoint_id = p.id AND "
    + _DUE.format(t="d")
    + ") END ORDER BY p.rate_next_at NULLS FIRST, p.id LIMIT :limit"
)
# The pace is reckoned from the time the statement runs (PostgreSQL's now() is the
# transaction's start), and the waits are shortened by what the rest of the claim took, so that
# a slow claim does not push its attempts onto the next claim's.
_PACED = sql(
    _PACED_DUE.replace("{clock}", "{now}"),
    postgres=_PACED_DUE.replace("{clock}", "clock_timestamp()") + " FOR UPDATE OF p SKIP LOCKED",
)
_CLOCK = sql("SELECT {now}", postgres="SELECT clock_timestamp()")
# An ordered endpoint's head: its oldest pending delivery, due or not; only it may be sent.
_HEAD = sql(
    "SELECT id, next_attempt_at <= {now} AND (lease_until IS NULL OR lease_until <= {now})"
    " FROM deliveries WHERE endpoint_id = :id AND status = 'pending' ORDER BY id LIMIT 1"
)
_DUE_OF = sql(
    "SELECT d.id FROM deliveries d WHERE d.endpoint_id = :id AND "
    + _DUE.format(t="d")
    + " ORDER BY d.next_attempt_at LIMIT :n {skip_locked}"
)
_LEASE_THESE = sql(_LEASE.removesuffix("IN (") + "{in:ids}")
_PACE = sql("UPDATE endpoints SET rate_next_at = :next_at WHERE id = :id")


def _claim_paced(
    params: dict[str, Any], skip: Collection[str], cap: int
) -> Unit[tuple[dict[str, float], datetime | None]]:
    """Lease what each paced endpoint may send now; the delivery ids with their waits.

    Ordered: only the head (the oldest pending delivery), when it is due and nothing of the
    endpoint is in flight; a head waiting for its retry holds the others back. Rate-limited:
    attempts start 1/rate seconds apart across every worker (the endpoint's `rate_next_at`).
    """
    found = yield units.rows(
        _PACED, {"skip": list(skip), "limit": params["limit"], "horizon": PACE_HORIZON}
    )
    waits: dict[str, float] = {}
    paced_at = ts_required(found[0][4]) if found else None
    for endpoint_id, rate, ordered, next_at, now_value in found:
        room = min(cap, params["limit"] - len(waits))
        if room <= 0:
            break
        now = ts_required(now_value)
        start = max(now, ts(next_at) or now)
        if rate is not None:
            ahead = (now - start).total_seconds() + PACE_HORIZON
            room = min(room, max(0, math.ceil(ahead * rate)))
        if ordered:
            head = yield units.one(_HEAD, {"id": endpoint_id})
            ids = [head[0]] if head is not None and head[1] and room > 0 else []
        elif room > 0:
            ids = [row[0] for row in (yield units.rows(_DUE_OF, {"id": endpoint_id, "n": room}))]
        else:
            ids = []
        if not ids:
            continue
        yield units.execute(_LEASE_THESE, {**params, "ids": ids})
        for n, delivery_id in enumerate(ids):
            waits[delivery_id] = 0.0 if rate is None else (start - now).total_seconds() + n / rate
        if rate is not None:
            pace = {"id": endpoint_id, "next_at": start + timedelta(seconds=len(ids) / rate)}
            yield units.execute(_PACE, pace)
    return waits, paced_at


def _claimed(row: Any, wait: float = 0.0) -> Claimed:
    secrets = (row[8],) if row[9] is None else (row[8], row[9])
    return Claimed(
        delivery_id=row[0],
        attempts_made=row[1],
        event_id=row[2],
        event=row[3],
        payload=row[4],
        event_created_at=ts_required(row[5]),
        endpoint_id=row[6],
        url=row[7],
        secrets=secrets,
        headers=js(row[10]),
        wait=wait,
        ordered=bool(row[11]),
        manual=bool(row[12]),
    )


# The rows `owner` still holds, locked so that no lease can lapse and be re-claimed between
# this and the update.
_HELD_ROWS = (
    "SELECT d.id, d.status, d.retry_requested_at, p.ordered FROM deliveries d"
    " JOIN endpoints p ON p.id = d.endpoint_id WHERE d.id {in:ids} AND d.lease_owner = :owner"
)
_HELD = sql(_HELD_ROWS, postgres=_HELD_ROWS + " FOR UPDATE OF d")
# finished_at: set when the delivery leaves pending now, empty while it stays pending, kept
# when it had left already (cancelled while the attempt was in flight). The manual mark stays
# only for the attempt a retry asked for meanwhile.
_FINISH = batched(
    sql(
        "UPDATE deliveries SET status = :status, attempts_made = :number,"
        " next_attempt_at = {after:delay}, lease_owner = NULL, lease_until = NULL,"
        " retry_requested_at = NULL, manual = :manual, finished_at = CASE"
        "  WHEN :finishing THEN {now} WHEN status = 'pending' THEN NULL ELSE finished_at END"
        " WHERE id = :id"
    ),
    sqlite="UPDATE deliveries SET status = r.status, attempts_made = r.number,"
    " next_attempt_at = r.next_at, lease_owner = NULL, lease_until = NULL,"
    " retry_requested_at = NULL, manual = r.manual, finished_at = CASE"
    "  WHEN r.finishing THEN {now} WHEN deliveries.status = 'pending' THEN NULL"
    "  ELSE deliveries.finished_at END"
    " FROM (SELECT value ->> 0 AS id, value ->> 1 AS status, value ->> 2 AS number,"
    "  value ->> 3 AS next_at, value ->> 4 AS manual, value ->> 5 AS finishing"
    "  FROM json_each(:rows)) AS r"
    " WHERE deliveries.id = r.id",
    columns=("id", "status", "number", "delay", "manual", "finishing"),
)
ATTEMPT_COLUMNS = (
    "delivery_id",
    "number",
    "started_at",
    "duration_ms",
    "trigger",
    "request_headers",
    "status_code",
    "response_headers",
    "response_body",
    "error_kind",
    "error",
)
RECORD_ATTEMPT = sql(
    f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)})"
    f" VALUES ({', '.join(':' + name for name in ATTEMPT_COLUMNS)})"
)
# What an attempt given without them records (one from before its headers were kept).
_ATTEMPT_DEFAULTS = {"trigger": SCHEDULED, "request_headers": None, "response_headers": None}


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
        RECORD_ATTEMPT,
        (
            {**_ATTEMPT_DEFAULTS, "delivery_id": item.delivery_id, "number": item.number}
            | item.attempt
            for item in mine
        ),
    )
    # Due again at once (a retry by hand), or an ordered endpoint's next delivery may go now:
    # a claim can take it.
    if any(update["delay"] == 0 for update in updates) or any(row[3] for row in held):
        yield units.wake()
    return mine


def _finish(item: Finished, status_now: Status, retry_requested: bool) -> dict[str, Any]:
    """Where the delivery goes: the outcome's way, unless it changed while the attempt was out."""
    status, delay = item.status, item.delay if item.status == Status.PENDING else None
    manual = False
    if status_now != Status.PENDING:
        # Cancelled while in flight: the attempt is recorded, the delivery stays cancelled.
        status, delay = status_now, None
    elif retry_requested:
        # Retried by hand while in flight: the retry asked for another attempt.
        status, delay, manual = Status.PENDING, 0.0, True
    return {
        "id": item.delivery_id,
        "status": status,
        "number": item.number,
        "delay": delay,
        "manual": manual,
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
