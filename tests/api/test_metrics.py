"""GET /metrics (CONTRACT §3, §5): the queue in the Prometheus text format, for the admin only."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from hookline import __version__
from hookline.api.metrics import Family, render
from hookline.models import Delivery, utcnow
from tests.delivery.helpers import register_user, subscribe
from tests.support.app import RunningApp

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLOSED = "http://127.0.0.1:9"  # nothing listens there

Series = tuple[str, frozenset[tuple[str, str]]]

# --- A strict parser of the text format ------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
HELP_LINE = re.compile(rf"# HELP ({NAME}) (.*)")
TYPE_LINE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE_LINE = re.compile(rf"({NAME})(?:\{{(.*)\}})? (\S+)")
LABEL = re.compile(rf'({LABEL_NAME})="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_labels(text: str) -> frozenset[tuple[str, str]]:
    labels: dict[str, str] = {}
    at = 0
    while at < len(text):
        match = LABEL.match(text, at)
        assert match, f"bad labels at {text[at:]!r}"
        name, raw = match.group(1), match.group(2)
        assert name not in labels, f"label {name} twice"
        labels[name] = re.sub(r"\\[\\\"n]", lambda m: ESCAPES[m.group(0)], raw)
        at = match.end()
    return frozenset(labels.items())


def parse(text: str) -> tuple[dict[Series, float], dict[str, tuple[str, str]]]:
    """Every series with its value, and every metric's (help, type); asserts the format.

    Each metric has one HELP and one TYPE line before its samples, its samples are together,
    and no series appears twice.
    """
    assert text.endswith("\n") and "\r" not in text
    samples: dict[Series, float] = {}
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    finished: set[str] = set()
    current = None
    for line in text[:-1].split("\n"):
        if help_line := HELP_LINE.fullmatch(line):
            name = help_line.group(1)
            assert name not in helps and name not in types, f"{name} described twice"
            assert help_line.group(2).strip(), f"{name} has an empty HELP"
            helps[name] = help_line.group(2)
        elif type_line := TYPE_LINE.fullmatch(line):
            name = type_line.group(1)
            assert name in helps and name not in types, f"TYPE of {name} misplaced"
            types[name] = type_line.group(2)
        elif sample := SAMPLE_LINE.fullmatch(line):
            name = sample.group(1)
            assert name in types, f"{name} has a sample before its TYPE"
            if name != current:
                assert name not in finished, f"the samples of {name} are not together"
                if current is not None:
                    finished.add(current)
                current = name
            series = (name, parse_labels(sample.group(2) or ""))
            assert series not in samples, f"{series} twice"
            samples[series] = float(sample.group(3))
        else:
            raise AssertionError(f"not a line of the text format: {line!r}")
    assert set(helps) == set(types), "a metric has HELP without TYPE"
    assert {name for name, _ in samples} == set(types), "a metric has no sample"
    return samples, {name: (helps[name], types[name]) for name in types}


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
    """The whole output: every series there must be, with these values."""
    return {
        series("hookline_deliveries", status="pending"): values["pending"],
        series("hookline_deliveries", status="succeeded"): values["succeeded"],
        series("hookline_deliveries", status="failed"): values["failed"],
        series("hookline_deliveries", status="cancelled"): values["cancelled"],
        series("hookline_deliveries_due"): values["due"],
        series("hookline_deliveries_in_flight"): values["in_flight"],
        series("hookline_oldest_due_seconds"): values["oldest_due"],
        series("hookline_endpoints", state="enabled"): values["enabled"],
        series("hookline_endpoints", state="disabled"): values["disabled"],
        series("hookline_events"): values["events"],
        series("hookline_build_info", version=__version__): 1,
    }


GAUGES = [
    "hookline_deliveries",
    "hookline_deliveries_due",
    "hookline_deliveries_in_flight",
    "hookline_oldest_due_seconds",
    "hookline_endpoints",
    "hookline_events",
    "hookline_build_info",
]


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


async def test_every_number_matches_a_known_queue(api):
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

    oldest_due = samples.pop(series("hookline_oldest_due_seconds"))
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
    del expected[series("hookline_oldest_due_seconds")]
    assert samples == expected


async def test_pending_deliveries_not_yet_due_are_no_backlog(api):
    hook = await subscribe(api.client, f"{CLOSED}/later", "user_registered")
    await register_user(api.client, "ann")
    (delivery,) = await deliveries_of(api, hook["id"])
    await set_delivery(api, delivery, next_attempt_at=utcnow() + timedelta(seconds=60))

    samples, _ = await scrape(api)

    assert samples[series("hookline_deliveries", status="pending")] == 1
    assert samples[series("hookline_deliveries_due")] == 0
    assert samples[series("hookline_oldest_due_seconds")] == 0


# --- The format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ['say "hi"', "back\\slash", "two\nlines", 'all \\ of " them \n', "", "ünïcode"],
)
def test_label_values_are_escaped_per_the_format(value):
    text = render([Family("hookline_test", "A label value.", [({"value": value}, 1)])])

    samples, _ = parse(text)
    assert samples == {series("hookline_test", value=value): 1}
    assert text.count("\n") == 3


def test_help_text_is_escaped_per_the_format():
    text = render([Family("hookline_test", "back\\slash and\nnewline", [({}, 0.5)])])

    assert text == (
        "# HELP hookline_test back\\\\slash and\\nnewline\n"
        "# TYPE hookline_test gauge\n"
        "hookline_test 0.5\n"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(3, "3"), (0, "0"), (1.25, "1.25"), (float("inf"), "+Inf"), (float("nan"), "NaN")],
)
def test_numbers_are_written_as_prometheus_reads_them(value, shown):
    text = render([Family("hookline_test", "A number.", [({}, value)])])

    assert text.splitlines()[-1] == f"hookline_test {shown}"


def test_the_parser_refuses_a_duplicate_series():
    family = Family("hookline_test", "Twice.", [({"a": "1"}, 1), ({"a": "1"}, 2)])

    with pytest.raises(AssertionError, match="twice"):
        parse(render([family]))


def test_the_parser_refuses_a_metric_without_help():
    with pytest.raises(AssertionError):
        parse("# TYPE hookline_test gauge\nhookline_test 1\n")
