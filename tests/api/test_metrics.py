"""GET /metrics: the queue in the Prometheus text format, for the admin only,
and the attempts of the process's own worker. Read back with prometheus_client's parser."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import select, update

from hookline import __version__
from hookline.api import metrics
from hookline.delivery import metrics as delivery_metrics
from hookline.models import Delivery, utcnow
from hookline.store import Status, counts
from tests.delivery.helpers import only_delivery, register_user, subscribe
from tests.support.app import RunningApp, running_app
from tests.support.receiver import Receiver

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLOSED = "http://127.0.0.1:9"  # nothing listens there

Series = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> tuple[dict[Series, float], dict[str, tuple[str, str]]]:
    """Every series with its value, and every metric family's (help, type), as Prometheus's
    own parser reads them; no series twice, no family twice, every family with a HELP."""
    samples: dict[Series, float] = {}
    described: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in described, f"{family.name} twice"
        assert family.documentation.strip(), f"{family.name} has an empty HELP"
        described[family.name] = (family.documentation, family.type)
        sample: Sample
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return samples, described


@asynccontextmanager
async def client_of(app: FastAPI, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client on `app` that sends this bearer token, or none."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    ) as client:
        yield client


def series(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())


async def scrape(api: RunningApp) -> tuple[dict[Series, float], dict[str, tuple[str, str]]]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)


def expected_metrics(**values: float) -> dict[Series, float]:
    """The whole output of a process without a worker: every series there must be."""
    return {
        series("hookline_deliveries", status="pending"): values["pending"],
        series("hookline_deliveries", status="succeeded"): values["succeeded"],
        series("hookline_deliveries", status="failed"): values["failed"],
        series("hookline_deliveries", status="cancelled"): values["cancelled"],
        series("hookline_deliveries_due"): values["due"],
        series("hookline_deliveries_in_flight"): values["in_flight"],
        series("hookline_oldest_due_age_seconds"): values["oldest_due"],
        series("hookline_endpoints", state="enabled"): values["enabled"],
        series("hookline_endpoints", state="disabled"): values["disabled"],
        series("hookline_events_total"): values["events"],
        series("hookline_build_info", version=__version__): 1,
    }


GAUGES = [
    "hookline_deliveries",
    "hookline_deliveries_due",
    "hookline_deliveries_in_flight",
    "hookline_oldest_due_age_seconds",
    "hookline_endpoints",
    "hookline_events_total",
    "hookline_build_info",
]
# The worker's, as the parser names the families (a counter's without `_total`).
WORKER_FAMILIES = {
    "hookline_attempts": "counter",
    "hookline_attempt_duration_seconds": "histogram",
    "hookline_delivery_lag_seconds": "histogram",
}


# --- Who may scrape --------------------------------------------------------------------------


async def test_metrics_without_a_token_is_401(api):
    async with client_of(api.app) as anonymous:
        response = await anonymous.get("/metrics")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert set(response.json()) == {"detail"}


async def test_metrics_with_a_user_token_is_403(api):
    alice = await register_user(api.client, "alice")
    async with client_of(api.app, alice["token"]) as user:
        response = await user.get("/metrics")

    assert response.status_code == 403
    assert set(response.json()) == {"detail"}


async def test_metrics_with_the_admin_token_as_prometheus_sends_it(api):
    token = api.settings.admin_token.get_secret_value()
    async with client_of(api.app, token) as prometheus:
        response = await prometheus.get("/metrics")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    parse(response.text)


async def test_metrics_is_documented_as_an_admin_route(api):
    operation = (await api.client.get("/openapi.json")).json()["paths"]["/metrics"]["get"]

    assert {"200", "401", "403"} <= set(operation["responses"])


# --- What it says ----------------------------------------------------------------------------


async def test_an_empty_database_shows_every_series_at_zero(api):
    samples, described = await scrape(api)

    assert samples == expected_metrics(
        pending=0,
        succeeded=0,
        failed=0,
        cancelled=0,
        due=0,
        in_flight=0,
        oldest_due=0,
        enabled=0,
        disabled=0,
        events=0,
    )
    assert described.keys() == set(GAUGES)
    assert all(kind == "gauge" for _help, kind in described.values())


async def set_delivery(api: RunningApp, delivery_id: str, **values: Any) -> None:
    async with api.app.state.test_db.sessions.begin() as session:
        await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


async def deliveries_of(api: RunningApp, endpoint_id: str) -> list[str]:
    async with api.app.state.test_db.sessions() as session:
        found = await session.scalars(
            select(Delivery.id).where(Delivery.endpoint_id == endpoint_id).order_by(Delivery.id)
        )
        return list(found)


async def test_every_number_matches_a_known_queue(api, store):
    kept = await subscribe(api.client, f"{CLOSED}/kept", "user_registered")
    dropped = await subscribe(api.client, f"{CLOSED}/dropped", "user_registered")
    for name in ("ann", "ben", "cat", "dan", "eve", "fay"):
        await register_user(api.client, name)  # 6 events, 6 pending deliveries to each
    # Disabling cancels its 6 pending deliveries and logs a webhook_disabled event (to nobody).
    patched = await api.client.patch(f"/webhooks/{dropped['id']}", json={"enabled": False})
    assert patched.status_code == 200, patched.text
    now = utcnow()

    def ago(seconds: float) -> datetime:
        return now - timedelta(seconds=seconds)

    oldest, leased, lapsed, later, succeeded, failed = await deliveries_of(api, kept["id"])
    await set_delivery(api, oldest, next_attempt_at=ago(120))
    await set_delivery(api, leased, next_attempt_at=ago(30), lease_owner="w1", lease_until=ago(-60))
    # A worker that died: its lease lapsed, the delivery waits for another.
    await set_delivery(api, lapsed, next_attempt_at=ago(10), lease_owner="w0", lease_until=ago(5))
    await set_delivery(api, later, next_attempt_at=ago(-3600))
    await set_delivery(api, succeeded, status="succeeded", next_attempt_at=None, finished_at=now)
    # Finished rows with queue columns that would pass for due and leased: status comes first.
    await set_delivery(
        api,
        failed,
        status="failed",
        next_attempt_at=ago(1000),
        lease_owner="w1",
        lease_until=ago(-60),
        finished_at=now,
    )
    cancelled = (await deliveries_of(api, dropped["id"]))[0]
    await set_delivery(api, cancelled, lease_owner="w1", lease_until=ago(-60))

    samples, _ = await scrape(api)

    oldest_due = samples.pop(series("hookline_oldest_due_age_seconds"))
    assert 120 <= oldest_due < 150
    expected = expected_metrics(
        pending=4,
        succeeded=1,
        failed=1,
        cancelled=6,
        due=3,
        in_flight=1,
        oldest_due=0,
        enabled=1,
        disabled=1,
        events=7,
    )
    del expected[series("hookline_oldest_due_age_seconds")]
    assert samples == expected
    # The dashboard's overview reads the same queue without counting the delivered ones.
    health = await store.read(counts.queue_health())
    assert (health.pending, health.due, health.in_flight) == (4, 3, 1)
    assert (health.endpoints_failing, health.endpoints_enabled, health.endpoints_disabled) == (
        0,
        1,
        1,
    )
    assert health.oldest_due_at is not None
    assert abs(health.oldest_due_at - ago(120)) < timedelta(seconds=1)


async def test_pending_deliveries_not_yet_due_are_no_backlog(api):
    hook = await subscribe(api.client, f"{CLOSED}/later", "user_registered")
    await register_user(api.client, "ann")
    (delivery,) = await deliveries_of(api, hook["id"])
    await set_delivery(api, delivery, next_attempt_at=utcnow() + timedelta(seconds=60))

    samples, _ = await scrape(api)

    assert samples[series("hookline_deliveries", status="pending")] == 1
    assert samples[series("hookline_deliveries_due")] == 0
    assert samples[series("hookline_oldest_due_age_seconds")] == 0


# --- What the worker of the process counts -------------------------------------------------


def moved(
    before: dict[Series, float], after: dict[Series, float], name: str, **labels: str
) -> float:
    return after[series(name, **labels)] - before[series(name, **labels)]


async def test_the_worker_of_the_process_counts_its_attempts_by_outcome(
    make_settings: Any, receiver: Receiver
) -> None:
    receiver.script("/flaky", [500, 200])
    async with running_app(make_settings(), run_worker=True) as api:
        before, described = await scrape(api)
        hook = await subscribe(api.client, receiver.url("/flaky"))
        await register_user(api.client, "ann")
        await only_delivery(api.app.state.test_db.sessions, hook["id"], status="succeeded")
        after, _ = await scrape(api)

    kinds = {name: kind for name, (_help, kind) in described.items()}
    assert kinds == {**dict.fromkeys(GAUGES, "gauge"), **WORKER_FAMILIES}
    # Every outcome is there from the start; these two moved, by one each.
    outcomes = {
        dict(labels)["outcome"] for name, labels in after if name == "hookline_attempts_total"
    }
    assert outcomes == set(delivery_metrics.OUTCOMES)
    for outcome in delivery_metrics.OUTCOMES:
        expected = 1 if outcome in {"succeeded", "http_status"} else 0
        assert moved(before, after, "hookline_attempts_total", outcome=outcome) == expected, outcome
    # Two attempts timed; one delivery's first attempt, a moment after its event was stored.
    assert moved(before, after, "hookline_attempt_duration_seconds_count") == 2
    assert 0 <= moved(before, after, "hookline_attempt_duration_seconds_sum") < 2 * 2.0
    assert moved(before, after, "hookline_delivery_lag_seconds_count") == 1
    assert 0 <= moved(before, after, "hookline_delivery_lag_seconds_sum") < 5
    assert moved(before, after, "hookline_delivery_lag_seconds_bucket", le="+Inf") == 1
    assert after[series("hookline_deliveries", status="succeeded")] == 1
    assert after[series("hookline_events_total")] == 1


async def test_a_process_without_a_worker_shows_no_attempt_metrics(api):
    _, described = await scrape(api)

    assert not WORKER_FAMILIES.keys() & described.keys()


# --- The gauges of a snapshot ----------------------------------------------------------------


def snapshot(**changes: Any) -> counts.Queue:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=utcnow().tzinfo)
    values: dict[str, Any] = {
        "deliveries": {
            Status.PENDING: 3,
            Status.SUCCEEDED: 5,
            Status.FAILED: 1,
            Status.CANCELLED: 0,
        },
        "due": 2,
        "in_flight": 1,
        "oldest_due_at": now - timedelta(seconds=42.5),
        "endpoints_enabled": 4,
        "endpoints_disabled": 1,
        "events": 7,
        "now": now,
    }
    values.update(changes)
    return counts.Queue(**values)


def test_a_snapshot_becomes_the_gauges() -> None:
    samples, described = parse(metrics.exposition(snapshot(), with_worker=False).decode())

    assert samples == expected_metrics(
        pending=3,
        succeeded=5,
        failed=1,
        cancelled=0,
        due=2,
        in_flight=1,
        oldest_due=42.5,
        enabled=4,
        disabled=1,
        events=7,
    )
    assert list(described) == GAUGES


@pytest.mark.parametrize("oldest_in", [None, -3.0])
def test_no_due_delivery_or_a_clock_behind_is_an_age_of_zero(oldest_in: float | None) -> None:
    now = snapshot().now
    oldest = None if oldest_in is None else now - timedelta(seconds=oldest_in)
    samples, _ = parse(
        metrics.exposition(snapshot(oldest_due_at=oldest), with_worker=False).decode()
    )

    assert samples[series("hookline_oldest_due_age_seconds")] == 0


def test_the_worker_metrics_follow_the_gauges_when_asked() -> None:
    _, described = parse(metrics.exposition(snapshot(), with_worker=True).decode())

    assert list(described) == [*GAUGES, *WORKER_FAMILIES]
