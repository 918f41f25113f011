"""What a worker counts as it sends: attempts by outcome, their durations, and how long an
event waited for its first attempt. For Prometheus, through prometheus_client.

These live in the memory of the process whose worker made the attempts: `hookline serve`
shows them in its `/metrics`, and `hookline worker` serves them on its own port when
HOOKLINE_WORKER_METRICS_PORT is set (`serve_http`). The numbers of the queue (deliveries,
endpoints, events) are read from the database instead, by the API (api/metrics.py).
"""

from datetime import datetime
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram

from hookline.delivery.sender import Outcome

# No `_created` series beside each counter and histogram: Prometheus does not need them, and
# they double the output of the text format.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

SUCCEEDED = "succeeded"
# The `outcome` label: `succeeded`, or the attempt's error kind (sender.py). Each is shown
# from the start, at 0; a kind the sender adds later appears when it first happens.
OUTCOMES = (
    SUCCEEDED,
    "http_status",
    "timeout",
    "connection_error",
    "tls_error",
    "invalid_url",
    "forbidden_destination",
    "internal_error",
)

# Receivers answer in milliseconds to seconds; an attempt lasts at most
# HOOKLINE_DELIVERY_TIMEOUT (15 s by default).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)
# From milliseconds (an idle worker woken at the commit) to hours (a backlog).
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)

# This process's delivery metrics, apart from prometheus_client's default registry.
REGISTRY = CollectorRegistry(auto_describe=True)

ATTEMPTS = Counter(
    "hookline_attempts",
    "Delivery attempts made by the workers of this process, by outcome: succeeded, or the"
    " error kind of a failed attempt.",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPT_DURATION = Histogram(
    "hookline_attempt_duration_seconds",
    "How long delivery attempts took, from the request's start to the answer read or the error.",
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
DELIVERY_LAG = Histogram(
    "hookline_delivery_lag_seconds",
    "From an event stored to the start of a delivery's first attempt.",
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)

# Each outcome's counter, shown from the start; looked up here, not through labels() (a lock
# and a tuple of the label values) at every attempt.
_ATTEMPTS_BY_OUTCOME = {outcome: ATTEMPTS.labels(outcome=outcome) for outcome in OUTCOMES}


def outcome_label(outcome: Outcome) -> str:
    return SUCCEEDED if outcome.ok else str(outcome.error_kind)


def observe(outcome: Outcome, *, first: bool, event_created_at: datetime) -> None:
    """Count one finished attempt; `first` when it was its delivery's first.

    The lag compares the API's clock (the event's time) with this worker's (the attempt's
    start): clocks apart by a second move it by that much, and it is never below 0.
    """
    label = outcome_label(outcome)
    counter = _ATTEMPTS_BY_OUTCOME.get(label)
    (ATTEMPTS.labels(outcome=label) if counter is None else counter).inc()
    ATTEMPT_DURATION.observe(outcome.duration_ms / 1000)
    if first:
        lag = (outcome.started_at - event_created_at).total_seconds()
        DELIVERY_LAG.observe(max(0.0, lag))


def serve_http(port: int, host: str) -> WSGIServer:
    """Serve this registry at http://host:port/metrics from a daemon thread, until the
    server returned is shut down. An address that cannot be bound raises OSError."""
    server, _thread = prometheus_client.start_http_server(port, addr=host, registry=REGISTRY)
    return server
