"""The auto-disable clock by itself, as the worker records attempts into it."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from hookline.config import Settings
from hookline.models import Delivery, Endpoint, Event, utcnow
from hookline.store import Store, health
from hookline.store.health import AttemptResult
from tests.delivery.helpers import delivery, seed_due
from tests.support import db as support
from tests.support.db import SessionMaker


@pytest.fixture
async def rows(settings: Settings) -> AsyncIterator[SessionMaker]:
    db = support.test_db(settings)
    try:
        yield db.sessions
    finally:
        await db.engine.dispose()


async def endpoints(rows: SessionMaker) -> tuple[str, str]:
    """Two endpoints, each with one pending delivery."""
    ids = await seed_due(rows, {"a": [(-1, "pending")], "b": [(-1, "pending")]})
    a, b = [(await delivery(rows, ids[name][0])).endpoint_id for name in ("a", "b")]
    return a, b


async def endpoint(rows: SessionMaker, endpoint_id: str) -> Endpoint:
    async with rows() as session:
        found = await session.get(Endpoint, endpoint_id)
        assert found is not None
        return found


async def record(store: Store, *results: AttemptResult, disable_after: float = 60) -> list[str]:
    return await store.write(health.record(results, disable_after=disable_after))


async def test_the_clock_starts_at_the_first_failure_and_a_success_resets_it(
    store: Store, rows: SessionMaker
) -> None:
    a, b = await endpoints(rows)
    first, later = utcnow() - timedelta(seconds=5), utcnow()

    await record(store, AttemptResult(a, False, later), AttemptResult(a, False, first))
    await record(store, AttemptResult(a, False, utcnow()))
    started = (await endpoint(rows, a)).failing_since
    # A success beside a failure in the same batch resets the clock all the same.
    await record(store, AttemptResult(b, False, first), AttemptResult(b, True, later))
    await record(store, AttemptResult(a, True, utcnow()))

    assert started == first
    assert (await endpoint(rows, a)).failing_since is None
    assert (await endpoint(rows, b)).failing_since is None


async def test_an_endpoint_failing_longer_than_disable_after_is_disabled_and_its_queue_cancelled(
    store: Store, rows: SessionMaker
) -> None:
    a, b = await endpoints(rows)
    long_ago = utcnow() - timedelta(seconds=120)

    disabled = await record(
        store, AttemptResult(a, False, long_ago), AttemptResult(b, False, utcnow())
    )
    a_now, b_now = await endpoint(rows, a), await endpoint(rows, b)
    async with rows() as session:
        statuses = dict(
            (await session.execute(select(Delivery.endpoint_id, Delivery.status))).all()
        )
        notices = await session.execute(select(Event).where(Event.event == "webhook_disabled"))
        [notice] = notices.scalars()

    assert disabled == [a]
    assert (a_now.enabled, b_now.enabled) == (False, True)
    assert a_now.disabled_reason is not None
    assert a_now.disabled_reason.startswith("every delivery failed for more than 60 s")
    assert statuses == {a: "cancelled", b: "pending"}
    assert notice.payload["id"] == a and notice.payload["reason"] == a_now.disabled_reason


async def test_an_answer_that_disables_takes_the_endpoint_down_at_once(
    store: Store, rows: SessionMaker
) -> None:
    a, _ = await endpoints(rows)

    disabled = await record(store, AttemptResult(a, False, utcnow(), disable_reason="410 Gone"))
    again = await record(store, AttemptResult(a, False, utcnow(), disable_reason="410 Gone"))

    assert (disabled, again) == ([a], [])  # an endpoint already disabled is left alone
    assert (await endpoint(rows, a)).disabled_reason == "410 Gone"
