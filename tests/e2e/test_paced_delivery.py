"""Rate limits and ordered delivery with real processes and a real receiver.

On PostgreSQL: one `hookline api` and three `hookline worker` processes share one database, so
the limit and the order hold across processes; on SQLite, `hookline serve` runs both roles.
"""

import random
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.process import ServeProcess, clean_environ, free_port
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

ADMIN_TOKEN = "hl_admin_e2e-token-for-paced-delivery-tests"
RATE = 20.0
# What a receiver may see beyond `RATE` in one second: attempts are scheduled 1/RATE apart by
# the database's clock, but each worker starts its wait when the claim's answer reaches it, so
# a claim answered late pushes its attempts closer to the next claim's (measured here: 1 or 2).
BURST = 3


def environment(database_url: str, port: int, data_dir: Path, poll: float) -> dict[str, str]:
    return clean_environ(
        HOOKLINE_DATABASE_URL=database_url,
        # One data dir (and so one generated secret key) for every process.
        HOOKLINE_DATA_DIR=str(data_dir),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_PING_ON_CREATE="false",
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
        HOOKLINE_DELIVERY_TIMEOUT="5",
        HOOKLINE_LEASE_SECONDS="10",
        HOOKLINE_POLL_INTERVAL=str(poll),
        HOOKLINE_RETRY_SCHEDULE=",".join(["0.05"] * 12),
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_ADMIN_TOKEN=ADMIN_TOKEN,
    )


@asynccontextmanager
async def hookline(
    database: str, tmp_path: Path, *, poll: float = 0.2
) -> AsyncIterator[httpx.AsyncClient]:
    """`serve` on SQLite; on PostgreSQL an api and three workers. A client on its API."""
    port = free_port()
    with ExitStack() as processes:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'hookline.db'}"
            serve = processes.enter_context(
                ServeProcess(
                    tmp_path, env=environment(url, port, tmp_path / "data", poll), port=port
                )
            )
            await serve.start()
        else:
            url = database
            env = environment(url, port, tmp_path / "data", poll)
            api = processes.enter_context(ServeProcess(tmp_path, env=env, port=port, command="api"))
            await api.start()
            for n in range(3):
                workdir = tmp_path / f"worker{n}"
                workdir.mkdir()
                worker = ServeProcess(workdir, env=env, port=port, command="worker")
                processes.enter_context(worker).spawn()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=10,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as client:
            yield client


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return "sqlite"
    url: str = request.getfixturevalue("empty_postgres")
    return url


async def endpoint(client: httpx.AsyncClient, url: str, **options: Any) -> dict[str, Any]:
    if (await client.get("/event-types/tick")).status_code == 404:
        defined = await client.post("/event-types", json={"name": "tick"})
        assert defined.status_code == 201, defined.text
    response = await client.post("/endpoints", json={"url": url, "events": ["tick"], **options})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def send_ticks(client: httpx.AsyncClient, count: int) -> None:
    for n in range(count):
        sent = await client.post("/events", json={"event": "tick", "data": {"n": n}})
        assert sent.status_code == 201, sent.text


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any one-second window."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_a_rate_limit_holds_across_workers_and_slows_no_other_endpoint(
    database: str, tmp_path: Path, receiver: Receiver
) -> None:
    # Every worker process on PostgreSQL; within serve on SQLite. Enough that sending them
    # outlasts the burst and the limited endpoint's backlog takes many seconds to drain.
    events = 300 if database != "sqlite" else 200
    async with hookline(database, tmp_path) as client:
        await endpoint(client, receiver.url("/limited"), rate_limit=RATE)
        await endpoint(client, receiver.url("/free"))
        started = time.monotonic()
        await send_ticks(client, events)
        sent = time.monotonic()
        await receiver.wait_for(events, path="/free", timeout=60)
        free_done = time.monotonic() - sent
        await receiver.wait_for(events, path="/limited", timeout=events / RATE + 60)
        limited_done = time.monotonic() - started

    limited = [r.at for r in receiver.at("/limited")]
    most = busiest_second(limited)
    print(
        f"busiest second: {most}; sent in {sent - started:.1f} s; free done"
        f" {free_done:.1f} s after, limited in {limited_done:.1f} s"
    )
    assert most <= RATE + BURST
    assert limited_done >= (events - RATE) / RATE * 0.95  # it was paced, not just sent
    # The unlimited endpoint kept up with the sending; the limited one's backlog waited.
    assert free_done < 10
    assert len([at for at in limited if at <= sent]) < events


async def test_an_ordered_endpoint_sees_first_successes_in_stored_order(
    database: str, tmp_path: Path, receiver: Receiver
) -> None:
    events = 300 if database != "sqlite" else 200
    chance = random.Random(20261203)
    # Each attempt fails with probability 0.3 (the answers go out in arrival order).
    answers = [500 if chance.random() < 0.3 else 200 for _ in range(events * 3)] + [200]
    receiver.script("/ordered", answers)
    # A head's retry is due 0.05 s after it failed; nothing wakes a worker then but its poll.
    async with hookline(database, tmp_path, poll=0.05) as client:
        await endpoint(client, receiver.url("/ordered"), ordered=True)
        await send_ticks(client, events)
        successes = answers.count(200)
        needed = next(i for i, _ in enumerate(answers) if answers[: i + 1].count(200) == events)
        await receiver.wait_for(needed + 1, path="/ordered", timeout=180)

    received = receiver.at("/ordered")
    first_successes: list[int] = []
    seen: set[int] = set()
    for got, status in zip(received, answers, strict=False):
        n = int(httpx.Response(200, content=got.body).json()["data"]["n"])
        if status == 200 and n not in seen:
            seen.add(n)
            first_successes.append(n)
    assert successes >= events
    assert first_successes == list(range(events))
    # One at a time: no attempt started before the one before it was answered (an attempt for
    # n + 1 never comes before n has succeeded).
    order = [int(httpx.Response(200, content=g.body).json()["data"]["n"]) for g in received]
    assert order == sorted(order)
