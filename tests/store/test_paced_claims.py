"""Paced endpoints in the claim: a rate limit spaces attempts 1/rate apart across
claims, an ordered endpoint gives only its head, and neither holds back other endpoints."""

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from hookline.config import Settings
from hookline.models import Delivery, Endpoint, utcnow
from hookline.store import Status, Store, claims
from hookline.store.claims import Claimed, Finished
from tests.delivery.helpers import delivery, seed_due
from tests.support import db as support
from tests.support.db import SessionMaker


@pytest.fixture
async def rows(settings: Settings) -> AsyncIterator[SessionMaker]:
    found = support.test_db(settings)
    try:
        yield found.sessions
    finally:
        await found.engine.dispose()


async def claim(store: Store, owner: str = "w", **options: Any) -> list[Claimed]:
    options = {"limit": 64, "lease_seconds": 30.0, "per_endpoint": 64, **options}
    return await store.write(claims.claim(owner=owner, **options))


async def pace(rows: SessionMaker, endpoint_id: str, **values: Any) -> None:
    async with rows.begin() as session:
        await session.execute(update(Endpoint).where(Endpoint.id == endpoint_id).values(**values))


def finished(item: Claimed, status: Status, delay: float | None = None) -> Finished:
    attempt = {
        "started_at": utcnow(),
        "duration_ms": 1,
        "status_code": 200 if status == Status.SUCCEEDED else 500,
        "response_body": "",
        "error_kind": None if status == Status.SUCCEEDED else "http_status",
        "error": None,
    }
    return Finished(item.delivery_id, item.endpoint_id, 1, attempt, status, delay)


async def endpoint_of(rows: SessionMaker, ids: dict[str, list[str]], name: str) -> str:
    return (await delivery(rows, ids[name][0])).endpoint_id


async def test_a_rate_limit_spaces_the_attempts_and_holds_back_nothing_else(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(
        rows,
        {
            "limited": [(-10 + n * 0.01, "pending") for n in range(30)],
            "free": [(-1, "pending")] * 5,
        },
    )
    limited = await endpoint_of(rows, ids, "limited")
    await pace(rows, limited, rate_limit=10.0)

    first = await claim(store)
    second = await claim(store, "w2")

    of_limited = [c for c in first if c.endpoint_id == limited]
    # What may start within the horizon, each told when its turn comes: 1/rate apart.
    ahead = math.ceil(claims.PACE_HORIZON * 10)
    assert [c.delivery_id for c in of_limited] == ids["limited"][:ahead]
    assert [c.wait for c in of_limited] == pytest.approx([n / 10 for n in range(ahead)], abs=0.05)
    assert sorted(c.delivery_id for c in first if c.endpoint_id != limited) == sorted(ids["free"])
    # Another worker continues the same pace: its turn comes after those (at most the one due
    # at the horizon's end is within its reach).
    later = [c for c in second if c.endpoint_id == limited]
    assert len(later) <= 1 and all(c.wait > (ahead - 1) / 10 for c in later)


async def test_a_rate_limit_is_shared_by_every_claim_and_resumes_as_time_passes(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(rows, {"limited": [(-10, "pending")] * 10})
    limited = await endpoint_of(rows, ids, "limited")
    await pace(rows, limited, rate_limit=2.0)

    first = await claim(store, "w1")
    before_its_time = await claim(store, "w2")
    await pace(rows, limited, rate_next_at=utcnow())  # as if half a second had passed
    later = await claim(store, "w3")

    assert [c.wait for c in first] == pytest.approx([0.0], abs=0.05)
    assert before_its_time == []
    assert len(later) == 1 and later[0].delivery_id != first[0].delivery_id


async def test_an_ordered_endpoint_gives_its_head_only_and_the_next_after_it_is_done(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(rows, {"ordered": [(-5, "pending")] * 3, "free": [(-1, "pending")] * 2})
    ordered = await endpoint_of(rows, ids, "ordered")
    await pace(rows, ordered, ordered=True)

    first = await claim(store)
    while_in_flight = await claim(store, "w2")
    await store.write(
        claims.complete(owner="w", finished=[finished(first[0], Status.PENDING, delay=60)])
    )
    while_head_waits = await claim(store, "w3")
    async with rows.begin() as session:  # the head's retry comes due
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids["ordered"][0])
            .values(next_attempt_at=utcnow())
        )
    retried = await claim(store, "w4")
    await store.write(
        claims.complete(owner="w4", finished=[finished(retried[0], Status.SUCCEEDED)])
    )
    after_success = await claim(store, "w5")

    assert [c.delivery_id for c in first if c.endpoint_id == ordered] == [ids["ordered"][0]]
    assert sorted(c.delivery_id for c in first if c.endpoint_id != ordered) == sorted(ids["free"])
    assert while_in_flight == []
    assert while_head_waits == []  # a retry of the head keeps its place
    assert [c.delivery_id for c in retried] == [ids["ordered"][0]]
    assert [c.delivery_id for c in after_success] == [ids["ordered"][1]]


async def test_completing_an_ordered_endpoints_delivery_wakes_the_workers(
    store: Store, rows: SessionMaker
) -> None:
    ids = await seed_due(rows, {"ordered": [(-5, "pending")] * 2})
    ordered = await endpoint_of(rows, ids, "ordered")
    await pace(rows, ordered, ordered=True)
    woken: list[bool] = []
    store.on_wake(lambda: woken.append(True))

    [head] = await claim(store)
    await store.write(claims.complete(owner="w", finished=[finished(head, Status.SUCCEEDED)]))

    assert woken


async def test_ordered_endpoints_whose_heads_are_in_flight_do_not_crowd_out_the_others(
    store: Store, rows: SessionMaker
) -> None:
    plan = {f"o{n:02d}": [(-5, "pending")] * 2 for n in range(70)}
    ids = await seed_due(rows, plan)
    for name in plan:
        await pace(rows, await endpoint_of(rows, ids, name), ordered=True)

    first = await claim(store, "w1", limit=64)
    second = await claim(store, "w2", limit=64)

    heads = {ids[name][0] for name in plan}
    assert len(first) == 64 and {c.delivery_id for c in first} <= heads
    # The 64 in flight can take nothing more: the six others get their turn.
    assert {c.delivery_id for c in second} == heads - {c.delivery_id for c in first}
