"""`GET /metrics`: the delivery queue in the Prometheus text format (version 0.0.4).

Every number is read from the database, which every API and worker process shares, so any
one API process answers for all of them. The format is a few lines of text, written here by
hand: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import Response

from hookline import __version__
from hookline.api.auth import ADMIN_ONLY
from hookline.api.deps import StoreDep
from hookline.api.responses import AUTH
from hookline.store import STATUSES, counts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


def families(snapshot: counts.Queue) -> list[Family]:
    """The metrics a snapshot makes, in the order they are shown."""
    oldest = 0.0
    if snapshot.oldest_due_at is not None:
        oldest = max(0.0, (snapshot.now - snapshot.oldest_due_at).total_seconds())
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
async def metrics(store: StoreDep) -> Response:
    """The delivery queue, endpoints and events, for Prometheus (admin token as bearer_token)."""
    snapshot = await store.read(counts.queue())
    return Response(render(families(snapshot)), media_type=CONTENT_TYPE)
