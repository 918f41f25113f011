"""A failed flush of attempt results logs its traceback without the statement's parameters
(receivers' answers, the custom header values sent): the real store on each database, the
worker's `Trouble` (which the flush reports through) or any log call (hookline's formatters),
both log formats."""

import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from hookline import logs
from hookline.config import Settings
from hookline.delivery import outage
from hookline.models import utcnow
from hookline.store import Status, Store, claims
from hookline.store.claims import Finished
from tests.delivery.helpers import seed_due
from tests.support import db as support

BODY = "receiver-answer-4f3e2d1c0b9a"
TOKEN = "Bearer header-credential-8a7b6c5d4e3f"


@pytest.fixture
async def rows(settings: Settings) -> AsyncIterator[support.SessionMaker]:
    found = support.test_db(settings)
    try:
        yield found.sessions
    finally:
        await found.engine.dispose()


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, list[io.StringIO]]]:
    """A logger writing each record in text and in JSON."""
    logger = logging.getLogger("hookline.test.flush")
    outputs = [io.StringIO(), io.StringIO()]
    handlers = []
    for output, formatter in zip(
        outputs, (logs.TextFormatter(), logs.JsonFormatter()), strict=True
    ):
        handler = logging.StreamHandler(output)
        handler.setFormatter(formatter)
        handlers.append(handler)
        logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, outputs
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True


def attempt(**changed: Any) -> dict[str, Any]:
    return {
        "started_at": utcnow(),
        "duration_ms": 12,
        "request_headers": {"authorization": TOKEN, "webhook-id": "evt_1"},
        "status_code": 200,
        "response_headers": {"content-type": "text/plain"},
        "response_body": BODY,
        "error_kind": None,
        "error": None,
        **changed,
    }


# A bug (a required column left empty): PostgreSQL's DETAIL holds the failing row, every
# column. A body the sender did not clean (a lone surrogate): asyncpg quotes the parameter.
FAILURES = {
    "not-null": attempt(duration_ms=None),
    "unencodable": attempt(response_body=BODY + "\udcff"),
}


@pytest.mark.parametrize("via", ["trouble", "logger"])
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_record_logs_neither_the_answer_nor_the_headers_sent(
    settings: Settings,
    store: Store,
    rows: support.SessionMaker,
    lines: tuple[logging.Logger, list[io.StringIO]],
    failure: str,
    via: str,
) -> None:
    await seed_due(rows, {"e": [(-1, "pending")]})
    [item] = await store.write(claims.claim(owner="w1", limit=1, lease_seconds=30.0))
    finished = Finished(item.delivery_id, item.endpoint_id, 1, FAILURES[failure], Status.SUCCEEDED)
    logger, outputs = lines
    trouble = outage.Trouble(logger, retry_every=1)

    with pytest.raises(Exception) as failed:
        await store.write(claims.complete(owner="w1", finished=[finished]))
    if via == "trouble":
        trouble.failed("recording attempts", failed.value, " (1); will retry")
    else:  # as uvicorn logs a request's failure: the exception as it was raised
        logger.error("recording attempts failed (1); will retry", exc_info=failed.value)

    text, json_lines = (output.getvalue() for output in outputs)
    for written in (text, json_lines):
        assert "recording attempts failed (1); will retry" in written
        assert "Traceback" in written  # a bug keeps its traceback
        assert BODY not in written
        assert TOKEN not in written and "header-credential" not in written
    if failure == "not-null":  # what failed is named, on either database
        assert "duration_ms" in text
    if not settings.is_sqlite:
        assert "SQLSTATE" in text
        assert "its text is left out" in text


def test_an_error_without_a_database_error_in_its_chain_is_logged_as_it_is() -> None:
    try:
        try:
            raise KeyError("response_body")
        except KeyError as exc:
            raise RuntimeError("recording failed") from exc
    except RuntimeError as exc:
        assert logs.loggable(exc) is exc
