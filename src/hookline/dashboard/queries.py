"""What the dashboard's overview reads that no API route does: the endpoints in trouble, and
the deliveries of the last 24 hours per minute by how they turned out.

Units of work like the services' own, each taking the caller's `scope` (None for the admin,
else a user's id: that user's endpoints only).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hookline.ids import lowest_at
from hookline.models import utcnow
from hookline.store import units
from hookline.store.sql import Statement, pick, sql, ts, variants
from hookline.store.units import Unit

Scope = str | None

# Failing (a failure since the last success) or disabled: the few an operator has to look at.
# The endpoints table is small (one row per receiver); the limit bounds the page.
_TROUBLED = variants(
    "SELECT id, url, enabled, disabled_reason, failing_since FROM endpoints",
    "ORDER BY enabled, failing_since, id LIMIT :limit",
    # A deleted endpoint (DELETE keeps its row for its deliveries' sake) is gone from view.
    always=["(failing_since IS NOT NULL OR enabled = FALSE)", "deleted_at IS NULL"],
    optional={"owner_id": "owner_id = :owner_id"},
)


@dataclass(frozen=True, slots=True)
class Troubled:
    id: str
    url: str
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None


def troubled_endpoints(*, scope: Scope, limit: int = 20) -> Unit[list[Troubled]]:
    """Disabled endpoints, then failing ones, the longest failing first."""
    params = {"owner_id": scope}
    found: Sequence[Sequence[Any]] = yield units.rows(
        pick(_TROUBLED, params), {**params, "limit": limit}
    )
    return [
        Troubled(
            id=row[0],
            url=row[1],
            enabled=bool(row[2]),
            disabled_reason=row[3],
            failing_since=ts(row[4]),
        )
        for row in found
    ]


# Deliveries made in each minute, by status (what became of them). A delivery's id begins with
# the time it was made: the last 24 hours are a range of the primary key (however long the
# history), grouped by the minute of `created_at` (text on SQLite, cut at the minute).
_MINUTE = {
    "postgres": "date_trunc('minute', d.created_at)",
    "sqlite": "substr(d.created_at, 1, 16)",
}
_OWNED = " AND d.endpoint_id IN (SELECT id FROM endpoints WHERE owner_id = :owner_id)"


def _per_minute(owned: bool) -> Statement:
    texts = {
        dialect: f"SELECT {minute}, d.status, count(*) FROM deliveries d WHERE d.id >= :from_id"
        f"{_OWNED if owned else ''} GROUP BY 1, 2"
        for dialect, minute in _MINUTE.items()
    }
    return sql(texts["sqlite"], postgres=texts["postgres"], sqlite=texts["sqlite"])


_PER_MINUTE = {False: _per_minute(False), True: _per_minute(True)}
CHART_STATUSES = ("succeeded", "failed", "pending", "cancelled")
CHART_MINUTES = 24 * 60


@dataclass(frozen=True, slots=True)
class PerMinute:
    """Deliveries made in each of the last 24 hours' minutes, oldest first, by status."""

    start: datetime  # the first minute
    counts: dict[str, list[int]]  # status -> one count a minute

    @property
    def minutes(self) -> list[datetime]:
        return [self.start + timedelta(minutes=n) for n in range(CHART_MINUTES)]

    @property
    def total(self) -> int:
        return sum(sum(series) for series in self.counts.values())

    def hours(self) -> list[tuple[datetime, dict[str, int]]]:
        """The same counts summed by hour (for the table that stands in for the chart)."""
        found = []
        for hour in range(CHART_MINUTES // 60):
            span = slice(hour * 60, hour * 60 + 60)
            by_status = {status: sum(series[span]) for status, series in self.counts.items()}
            found.append((self.start + timedelta(hours=hour), by_status))
        return found


def deliveries_per_minute(*, scope: Scope, now: datetime | None = None) -> Unit[PerMinute]:
    """The last 24 hours' deliveries (a user's: its endpoints') per minute, by status."""
    now = now or utcnow()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)
    params = {"from_id": lowest_at("dlv", int(start.timestamp() * 1000))}
    if scope is not None:
        params["owner_id"] = scope
    rows: Sequence[Sequence[Any]] = yield units.rows(_PER_MINUTE[scope is not None], params)
    counts = {status: [0] * CHART_MINUTES for status in CHART_STATUSES}
    for minute, status, count in rows:
        at = ts(minute)
        if at is None or status not in counts:
            continue
        index = int((at - start).total_seconds() // 60)
        if 0 <= index < CHART_MINUTES:
            counts[status][index] += int(count)
    return PerMinute(start=start, counts=counts)


# An endpoint's deliveries of the last 24 hours by status: a range of ix_deliveries_endpoint
# (endpoint_id, id), however many it had before.
_RECENT_BY_STATUS = sql(
    "SELECT status, count(*) FROM deliveries"
    " WHERE endpoint_id = :endpoint_id AND id >= :from_id GROUP BY status"
)


def recent_by_status(*, endpoint_id: str, now: datetime | None = None) -> Unit[dict[str, int]]:
    """The endpoint's deliveries made in the last 24 hours, counted by status (the caller
    checked that the endpoint is the session's to see)."""
    since = (now or utcnow()) - timedelta(minutes=CHART_MINUTES)
    params = {
        "endpoint_id": endpoint_id,
        "from_id": lowest_at("dlv", int(since.timestamp() * 1000)),
    }
    found: Sequence[Sequence[Any]] = yield units.rows(_RECENT_BY_STATUS, params)
    counted = dict.fromkeys(CHART_STATUSES, 0)
    for status, count in found:
        counted[str(status)] = int(count)
    return counted
