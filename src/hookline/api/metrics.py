"""`GET /metrics`: the delivery queue, and the attempts of this process's worker, for Prometheus
(text format 0.0.4, written by prometheus_client).

Two sources:

- the queue, endpoints and events are read from the database at each scrape (one statement,
  store/counts.py), which every API and worker process shares: any one API process answers
  for all of them;
- attempt counts and durations, and the delivery lag, are counted by a worker as it sends
  (delivery/metrics.py): they are shown here only when this process runs one (`hookline
  serve`). `hookline worker` processes serve theirs on HOOKLINE_WORKER_METRICS_PORT.
"""

from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hookline import __version__
from hookline.api.auth import ADMIN_ONLY
from hookline.api.deps import StoreDep
from hookline.api.responses import AUTH
from hookline.delivery import metrics as delivery_metrics
from hookline.store import STATUSES, counts

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class QueueCollector(Collector):
    """The gauges of one snapshot of the outbox, in the order they are shown."""

    def __init__(self, snapshot: counts.Queue) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        oldest = 0.0
        if snapshot.oldest_due_at is not None:
            oldest = max(0.0, (snapshot.now - snapshot.oldest_due_at).total_seconds())
        deliveries = GaugeMetricFamily(
            "hookline_deliveries", "Deliveries by status.", labels=["status"]
        )
        for status in STATUSES:
            deliveries.add_metric([str(status)], snapshot.deliveries[status])
        yield deliveries
        yield GaugeMetricFamily(
            "hookline_deliveries_due",
            "Pending deliveries whose next attempt is due now, in flight ones included.",
            value=snapshot.due,
        )
        yield GaugeMetricFamily(
            "hookline_deliveries_in_flight",
            "Pending deliveries leased to a worker now (an attempt under way).",
            value=snapshot.in_flight,
        )
        yield GaugeMetricFamily(
            "hookline_oldest_due_age_seconds",
            "Seconds since the oldest due delivery became due (0 when none is due).",
            value=oldest,
        )
        endpoints = GaugeMetricFamily(
            "hookline_endpoints", "Webhook endpoints by state.", labels=["state"]
        )
        endpoints.add_metric(["enabled"], snapshot.endpoints_enabled)
        endpoints.add_metric(["disabled"], snapshot.endpoints_disabled)
        yield endpoints
        # A gauge: the log is pruned after HOOKLINE_RETENTION_DAYS, so the count also falls.
        yield GaugeMetricFamily(
            "hookline_events_total",
            "Events in the event log (pruned after HOOKLINE_RETENTION_DAYS).",
            value=snapshot.events,
        )
        build = GaugeMetricFamily(
            "hookline_build_info", "The running hookline version.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build


class Scrape(Collector):
    """What one scrape shows: the collectors' metrics, one after the other."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def exposition(snapshot: counts.Queue, *, with_worker: bool) -> bytes:
    """The text a scrape answers: the snapshot's gauges, then the worker's metrics if any."""
    parts: list[Collector] = [QueueCollector(snapshot)]
    if with_worker:
        parts.append(delivery_metrics.REGISTRY)
    return generate_latest(Scrape(parts))


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
async def metrics(request: Request, store: StoreDep) -> Response:
    """The delivery queue, endpoints and events, and this process's delivery attempts, for
    Prometheus (admin token as bearer_token)."""
    snapshot = await store.read(counts.queue())
    with_worker = getattr(request.app.state.runtime, "worker", None) is not None
    return Response(exposition(snapshot, with_worker=with_worker), media_type=CONTENT_TYPE)
