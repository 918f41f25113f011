"""`GET /metrics`: the delivery queue in the Prometheus text format (version 0.0.4).

Every number is read from the database, which every API and worker process shares, so any
one API process answers for all of them. The format is a few lines of text, written here by
hand: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from hookline import __version__
from hookline.api.auth import ADMIN_ONLY
from hookline.api.deps import SessionDep
from hookline.api.responses import AUTH
from hookline.delivery.queue import CANCELLED, FAILED, PENDING, SUCCEEDED
from hookline.models import Delivery, Endpoint, Event, UTCDateTime, utcnow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = (PENDING, SUCCEEDED, FAILED, CANCELLED)

Labels = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its name, help text, type and samples (labels, value)."""

    name: str
    help: str
    samples: Sequence[tuple[Labels, float]]
    type: str = "gauge"


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP and TYPE, then the samples, of each family in turn."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(v)}"' for name, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read of the database found."""

    deliveries: Mapping[str, int]  # by status
    due: int
    in_flight: int
    oldest_due_at: datetime | None
    endpoints_enabled: int
    endpoints_disabled: int
    events: int


_deliveries = cast(Table, Delivery.__table__)
_endpoints = cast(Table, Endpoint.__table__)
_events = cast(Table, Event.__table__)


def _count(table: Table, *where: ColumnElement[bool]) -> ScalarSelect[int]:
    return select(func.count()).select_from(table).where(*where).scalar_subquery()


@cache
def _snapshot() -> Select[*tuple[Any, ...]]:
    """One statement, so one snapshot on every dialect, each part a range of an index.

    Counts by status are ranges of ix_deliveries_due (status, next_attempt_at); the due ones
    are the part of the pending range up to now, whose first entry is the oldest.
    """
    d = _deliveries
    now = bindparam("now", type_=UTCDateTime())
    # Literals, so that the planner may use ix_deliveries_endpoint_pending (status = 'pending').
    pending = d.c.status == literal_column(f"'{PENDING}'")
    due = (pending, d.c.next_attempt_at <= now)
    return select(
        *(_count(d, d.c.status == literal_column(f"'{s}'")).label(s) for s in STATUSES),
        _count(d, *due).label("due"),
        # A lease is only ever taken on a due delivery (and cleared when its attempt is
        # recorded), so the leased ones are within the due range: no scan of the whole backlog.
        _count(d, *due, d.c.lease_until > now).label("in_flight"),
        # The first entry of the due range (min() would walk the range on SQLite).
        select(d.c.next_attempt_at)
        .where(*due)
        .order_by(d.c.next_attempt_at)
        .limit(1)
        .scalar_subquery()
        .label("oldest"),
        _count(_endpoints, _endpoints.c.enabled.is_(True)).label("enabled"),
        _count(_endpoints, _endpoints.c.enabled.is_(False)).label("disabled"),
        _count(_events).label("events"),
    )


async def read(*, session: AsyncSession, now: datetime) -> Snapshot:
    """The queue as the database has it at `now`."""
    row = (await session.execute(_snapshot(), {"now": now})).one()
    return Snapshot(
        deliveries={status: int(row._mapping[status]) for status in STATUSES},
        due=int(row.due),
        in_flight=int(row.in_flight),
        oldest_due_at=row.oldest,
        endpoints_enabled=int(row.enabled),
        endpoints_disabled=int(row.disabled),
        events=int(row.events),
    )


def families(snapshot: Snapshot, now: datetime) -> list[Family]:
    """The metrics a snapshot makes, in the order they are shown."""
    oldest = 0.0
    if snapshot.oldest_due_at is not None:
        oldest = max(0.0, (now - snapshot.oldest_due_at).total_seconds())
    return [
        Family(
            "hookline_deliveries",
            "Deliveries by status.",
            [({"status": s}, snapshot.deliveries[s]) for s in STATUSES],
        ),
        Family(
            "hookline_deliveries_due",
            "Pending deliveries whose next attempt is due now, in flight ones included.",
            [({}, snapshot.due)],
        ),
        Family(
            "hookline_deliveries_in_flight",
            "Pending deliveries leased to a worker now (an attempt under way).",
            [({}, snapshot.in_flight)],
        ),
        Family(
            "hookline_oldest_due_seconds",
            "Seconds since the oldest due delivery became due (0 when none is due).",
            [({}, oldest)],
        ),
        Family(
            "hookline_endpoints",
            "Webhook endpoints by state.",
            [
                ({"state": "enabled"}, snapshot.endpoints_enabled),
                ({"state": "disabled"}, snapshot.endpoints_disabled),
            ],
        ),
        Family("hookline_events", "Events in the event log.", [({}, snapshot.events)]),
        Family(
            "hookline_build_info", "The running hookline version.", [({"version": __version__}, 1)]
        ),
    ]


router = APIRouter(tags=["metrics"], dependencies=[ADMIN_ONLY], responses=AUTH)


@router.get(
    "/metrics",
    # A bare Response has no media type of its own: the schema shows the 200 below, and the
    # errors as the JSON they are.
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(session: SessionDep) -> Response:
    """The delivery queue, endpoints and events, for Prometheus (admin token as bearer_token)."""
    now = utcnow()
    snapshot = await read(session=session, now=now)
    return Response(render(families(snapshot, now)), media_type=CONTENT_TYPE)
