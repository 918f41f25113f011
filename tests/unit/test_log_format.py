"""Log lines (logs.py), the start-up warnings (weak_settings.py), one warning per outage
(delivery/outage.py) and the per-attempt line (delivery/report.py), without a process."""

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from hookline import logs, weak_settings
from hookline.api.access_log import AccessLog
from hookline.config import Settings
from hookline.delivery import outage, report
from hookline.delivery.policy import Decision
from hookline.delivery.sender import Outcome
from hookline.store import Status, StoreUnavailable
from hookline.store.claims import Claimed


def record(
    message: str = "hello", level: int = logging.INFO, **fields: object
) -> logging.LogRecord:
    made = logging.LogRecord("hookline.test", level, __file__, 1, message, None, None)
    for key, value in logs.fields(**fields).items():
        setattr(made, key, value)
    return made


# --- The two formats -------------------------------------------------------------------------


def test_a_text_line_ends_with_its_fields_quoted_when_they_must_be() -> None:
    line = logs.TextFormatter().format(
        record(
            "attempt failed",
            logging.WARNING,
            host="example.com",
            attempt=2,
            ok=False,
            reason='every "delivery" failed',
            path="/a b\nc",
            skipped=None,
        )
    )

    assert line.endswith(
        " WARNING hookline.test attempt failed host=example.com attempt=2 ok=false"
        ' reason="every \\"delivery\\" failed" path="/a b\\nc"'
    )
    assert "\n" not in line and "skipped" not in line


def test_a_text_line_begins_as_loggings_own_formatter_writes_it() -> None:
    """The line is filled without Formatter.format and its time text is kept for a second:
    the same text, second after second, with or without fields."""
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    formatter = logs.TextFormatter()
    for created in (1764763200.0, 1764763200.999, 1764763201.5, 1764763199.25, 1764849600.007):
        line = record("attempt succeeded", attempt=1, host="example.com")
        line.created, line.msecs = created, int((created - int(created)) * 1000) + 0.0
        bare = record("two\nlines")
        bare.created, bare.msecs = line.created, line.msecs
        assert formatter.format(line) == f"{plain.format(line)} attempt=1 host=example.com"
        assert formatter.format(bare) == plain.format(bare)


def test_a_json_line_holds_the_same_fields_typed() -> None:
    when = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    line = logs.JsonFormatter().format(record("attempt failed", attempt=2, retry_at=when, ok=True))

    parsed = json.loads(line)
    assert parsed["level"] == "INFO" and parsed["logger"] == "hookline.test"
    assert parsed["message"] == "attempt failed"
    assert parsed["attempt"] == 2 and parsed["ok"] is True
    assert parsed["retry_at"] == "2026-05-01T12:00:00.123Z"
    assert parsed["time"].endswith("Z")


def test_a_json_line_keeps_its_traceback_inside_the_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, True)
        made.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(made)

    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """logs.configure() on a string, undone afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    try:
        yield stream
    finally:
        logs.unconfigure()
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False


def test_configure_sends_uvicorns_lines_through_and_never_its_access_log(configured) -> None:
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("uvicorn.access").info('1.2.3.4 - "GET /?token=abc HTTP/1.1" 200')

    lines = [json.loads(line) for line in configured.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["Started server process"]


def test_asyncpg_retrying_its_pool_is_one_line_a_minute_without_traceback(configured) -> None:
    pool = logging.getLogger("asyncpg.pool")
    for _ in range(5):
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except ConnectionRefusedError:
            pool.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    pool.warning("something else")

    lines = [json.loads(line) for line in configured.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "Failed to restore the pool connection floor; retrying"
        " (ConnectionRefusedError: [Errno 111] Connect call failed)",
        "something else",
    ]
    assert "exception" not in lines[0]


# --- The access log --------------------------------------------------------------------------


async def test_a_request_is_one_line_without_its_query_or_headers(caplog) -> None:
    app = FastAPI()

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    logged = AccessLog(app)
    transport = httpx.ASGITransport(app=logged)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.INFO, logger="hookline.access"):
            response = await client.get(
                "/things/a?token=hl_user_secret", headers={"Authorization": "Bearer hl_admin_x"}
            )
            missing = await client.post("/nowhere")
    assert response.status_code == 200 and missing.status_code == 404

    lines = [logs.fields_of(r) for r in caplog.records]
    assert [(f["method"], f["path"], f["status"]) for f in lines] == [
        ("GET", "/things/a", 200),
        ("POST", "/nowhere", 404),
    ]
    assert all(isinstance(f["duration_ms"], float) for f in lines)
    assert "hl_user_secret" not in caplog.text and "hl_admin_x" not in caplog.text


# --- Start-up warnings -----------------------------------------------------------------------


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)


def test_safe_settings_warn_of_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    os.chmod(tmp_path / "data", 0o750)  # the group may read it: not "other users"

    assert weak_settings.find(settings_for(tmp_path, admin_token=SecretStr("x" * 32))) == []
    assert weak_settings.find(settings_for(tmp_path)) == []  # a generated token is long


def test_each_weakening_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    os.chmod(tmp_path / "data", 0o755)
    settings = settings_for(tmp_path, allow_private_networks=True, admin_token=SecretStr("x" * 31))

    found = weak_settings.find(settings)

    assert [setting for setting, _why in found] == [
        "HOOKLINE_ALLOW_PRIVATE_NETWORKS",
        "HOOKLINE_ADMIN_TOKEN",
        "HOOKLINE_DATA_DIR",
    ]
    assert "0755" in found[2][1]
    assert "x" * 31 not in " ".join(why for _, why in found)


def test_a_missing_data_dir_is_not_warned_of(tmp_path: Path) -> None:
    assert weak_settings.find(settings_for(tmp_path)) == []


def test_each_warning_is_a_warning_line(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="hookline"):
        weak_settings.warn(settings_for(tmp_path, allow_private_networks=True))

    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert logs.fields_of(line) == {"setting": "HOOKLINE_ALLOW_PRIVATE_NETWORKS"}


# --- One warning per outage ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_one_warning_then_one_line_when_it_ends(caplog) -> None:
    clock = Clock()
    trouble = outage.Trouble(logging.getLogger("hookline.test"), retry_every=1, clock=clock)
    with caplog.at_level(logging.INFO, logger="hookline.test"):
        for _ in range(100):
            trouble.failed("claiming deliveries", StoreUnavailable("connection refused"))
            clock.now += 1
        trouble.succeeded()
        trouble.succeeded()  # no outage any more: nothing to say

    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert logs.fields_of(caplog.records[1]) == {"outage_s": 100.0, "failed_tries": 100}
    assert not any(r.exc_info for r in caplog.records)


def test_another_failure_keeps_its_traceback_once_a_minute(caplog) -> None:
    clock = Clock()
    trouble = outage.Trouble(logging.getLogger("hookline.test"), retry_every=1, clock=clock)
    with caplog.at_level(logging.INFO, logger="hookline.test"):
        for _ in range(121):  # two minutes at one a second
            trouble.failed("claiming deliveries", RuntimeError("no such table"))
            clock.now += 1

    assert [r.levelname for r in caplog.records] == ["ERROR"] * 3
    assert all(r.exc_info for r in caplog.records)
    assert "(59 more since the last report)" in caplog.records[1].getMessage()


# --- The attempt line ------------------------------------------------------------------------


def claimed(url: str) -> Claimed:
    return Claimed(
        delivery_id="dlv_1",
        attempts_made=0,
        event_id="evt_1",
        event="user_registered",
        payload={"secret_stuff": "PAYLOAD"},
        event_created_at=datetime.now(UTC) - timedelta(seconds=1),
        endpoint_id="wh_1",
        url=url,
        secrets=("sealed-secret",),
        headers={"x-api-key": "HEADER-SECRET"},
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://user:pw@Example.COM:8443/hook?token=abc#x", "example.com"),
        ("http://[::1]:9000/x", "::1"),
        ("http://[::1/x", "?"),
    ],
)
def test_the_host_alone_is_logged(url: str, host: str) -> None:
    assert report.host_of(url) == host


def test_an_attempt_line_has_its_fields_and_nothing_else(caplog) -> None:
    outcome = Outcome(
        started_at=datetime.now(UTC),
        duration_ms=12,
        status_code=503,
        response_body="RESPONSE-BODY",
        error_kind="http_status",
        error="receiver answered HTTP 503 for https://example.com/hook?token=abc",
    )
    decision = Decision(Status.PENDING, delay=5.0)
    with caplog.at_level(logging.INFO, logger="hookline.worker"):
        report.attempt(claimed("https://example.com/hook?token=abc"), 1, outcome, decision)

    [line] = caplog.records
    assert line.levelno == logging.WARNING and line.getMessage() == "attempt failed"
    fields = dict(logs.fields_of(line))
    retry_at = fields.pop("retry_at")
    assert isinstance(retry_at, datetime)
    assert fields == {
        "event_id": "evt_1",
        "event": "user_registered",
        "delivery_id": "dlv_1",
        "endpoint_id": "wh_1",
        "host": "example.com",
        "attempt": 1,
        "status_code": 503,
        "error_kind": "http_status",
        "duration_ms": 12,
        "delivery": "pending",
        "retry_in_s": 5.0,
    }
    text = logs.TextFormatter().format(line) + logs.JsonFormatter().format(line)
    for secret in ("token=abc", "PAYLOAD", "HEADER-SECRET", "sealed-secret", "RESPONSE-BODY"):
        assert secret not in text


def test_a_line_made_by_line_reads_as_one_made_by_log(configured) -> None:
    logger = logging.getLogger("hookline.worker")
    fields = {"delivery_id": "dlv_1", "attempt": 2, "status_code": None, "host": "example.com"}
    logs.line(logger, logging.WARNING, "attempt failed", **fields)
    logger.log(logging.WARNING, "attempt failed", extra=logs.fields(**fields))
    logs.line(logger, logging.DEBUG, "below the level")  # INFO and up only: not written

    made, logged = (json.loads(line) for line in configured.getvalue().splitlines())
    made.pop("time"), logged.pop("time")
    assert made == logged
    assert made == {
        "level": "WARNING",
        "logger": "hookline.worker",
        "message": "attempt failed",
        "delivery_id": "dlv_1",
        "attempt": 2,
        "host": "example.com",
    }
