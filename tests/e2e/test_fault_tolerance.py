"""Real `hookline api` and `hookline worker` processes on one PostgreSQL, under faults.

What the API acknowledged is never lost across crashes of any process; at least
once; deliveries held by a dead process are picked up again; anything but a 2xx (a 500, a
reset connection, a timeout) is retried on the schedule. The tests talk to the processes as a
user would (HTTP in, webhooks out) and read the database only to check what it recorded.
"""

import asyncio
import contextlib
import itertools
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.process import ServeProcess, free_port
from tests.support.roles import (
    FaultyReceiver,
    admin_client,
    bounded_gather,
    delivery_states,
    fetch,
    role_env,
    subscribe,
    wait_all_succeeded,
)

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

KILL_EVENTS = 2000
KILL_RECEIVERS = 3
KILL_EVERY = 1.0  # seconds between SIGKILLs of a worker
MAX_KILLS = 20
FLAKY_EVENTS = 300
POST_CONCURRENCY = 16


def role(tmp_path: Path, name: str, env: dict[str, str], port: int, command: str) -> ServeProcess:
    """A process with its own working directory (so its own log file)."""
    workdir = tmp_path / name
    workdir.mkdir()
    return ServeProcess(workdir, env=env, port=port, command=command)


async def register(client: httpx.AsyncClient, username: str) -> str:
    response = await client.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def overlapping_attempts(database_url: str) -> tuple[list[str], list[str]]:
    """Deliveries whose recorded attempts are not numbered 1..n, and ones whose attempts ran at
    the same time (an attempt on two workers at once)."""
    rows = await fetch(
        database_url,
        "SELECT d.id, d.attempts_made, a.number, a.started_at, a.duration_ms"
        " FROM deliveries d JOIN attempts a ON a.delivery_id = d.id"
        " ORDER BY d.id, a.number, a.started_at",
    )
    by_delivery: defaultdict[str, list[tuple[int, int, datetime, int]]] = defaultdict(list)
    for row in rows:
        by_delivery[row[0]].append((row[1], row[2], row[3], row[4]))
    misnumbered, overlapping = [], []
    for delivery_id, attempts in by_delivery.items():
        numbers = [number for _, number, _, _ in attempts]
        if numbers != list(range(1, attempts[0][0] + 1)):
            misnumbered.append(f"{delivery_id}: attempts {numbers}, attempts_made {attempts[0][0]}")
        for (_, _, started, ms), (_, number, next_started, _) in itertools.pairwise(attempts):
            if started + timedelta(milliseconds=ms) > next_started:
                overlapping.append(f"{delivery_id}: attempt {number} began before the last ended")
    return misnumbered, overlapping


async def test_two_apis_and_two_workers_deliver_everything_while_workers_are_killed(
    empty_postgres: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    schedule = {
        "lease_seconds": "3",
        "delivery_timeout": "2",
        "retry_schedule": "0.5,1,1,1,1,1,1,1",
    }
    async with contextlib.AsyncExitStack() as stack:
        # A 500 now and then, so that deliveries have several attempts for the overlap check.
        receivers = [
            await stack.enter_async_context(
                FaultyReceiver(failure_rate=0.1, faults=("500",), seed=seed)
            )
            for seed in range(KILL_RECEIVERS)
        ]
        apis = []
        for i in range(2):
            port = free_port()
            env = role_env(empty_postgres, data_dir, port, **schedule)
            apis.append(stack.enter_context(role(tmp_path, f"api{i}", env, port, "api")))
        env = role_env(empty_postgres, data_dir, 0, **schedule)
        workers = [
            stack.enter_context(role(tmp_path, f"worker{i}", env, 0, "worker")) for i in range(2)
        ]
        await asyncio.gather(*(api.start() for api in apis))
        for worker in workers:
            worker.spawn()
        clients = [await stack.enter_async_context(admin_client(api)) for api in apis]
        for receiver in receivers:
            await subscribe(clients[0], receiver.url("/hook"))

        done = asyncio.Event()
        chooser = random.Random(2024)

        async def kill_workers() -> int:
            kills = 0
            while kills < MAX_KILLS and not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), KILL_EVERY)
                if not done.is_set():
                    victim = chooser.choice(workers)
                    victim.kill()
                    victim.spawn()
                    kills += 1
            return kills

        began = time.monotonic()
        killer = asyncio.create_task(kill_workers())
        try:
            async with asyncio.timeout(60):
                user_ids = await bounded_gather(
                    (register(clients[i % 2], f"fault{i:05d}") for i in range(KILL_EVENTS)),
                    limit=POST_CONCURRENCY,
                )
            posted = time.monotonic() - began
            expected = KILL_EVENTS * KILL_RECEIVERS
            await wait_all_succeeded(empty_postgres, expected, timeout=75)
            delivered = time.monotonic() - began
        finally:
            done.set()
            kills = await killer
        assert len(set(user_ids)) == KILL_EVENTS

        for worker in workers:
            # One respawned just before the end may still be starting: a SIGTERM then would
            # find no handler yet.
            await worker.wait_for_line("worker started", timeout=20)
            assert await worker.terminate(timeout=15) == 0, "a worker did not stop cleanly"

        states = await delivery_states(empty_postgres)
        assert states == {"succeeded": expected}, states
        event_ids = {row[0] for row in await fetch(empty_postgres, "SELECT id FROM events")}
        assert len(event_ids) == KILL_EVENTS
        for receiver in receivers:
            acked = receiver.acked_ids()
            missing = event_ids - set(acked)
            assert not missing, f"{len(missing)} webhook-ids never answered 2xx at {receiver.url()}"
            assert set(acked) == event_ids, "webhooks for events that were never stored"
        misnumbered, overlapping = await overlapping_attempts(empty_postgres)
        assert not misnumbered, misnumbered[:10]
        assert not overlapping, overlapping[:10]

        duplicates = sum(n - 1 for r in receivers for n in r.acked_ids().values())
        requests = sum(len(r.requests) for r in receivers)
        [[attempts]] = await fetch(empty_postgres, "SELECT count(*) FROM attempts")
        print(
            f"\nfault tolerance: {KILL_EVENTS} events x {KILL_RECEIVERS} receivers over 2 APIs"
            f" ({POST_CONCURRENCY} concurrent POSTs) and 2 workers, {kills} SIGKILLs"
            f" (one every {KILL_EVERY:.0f} s, each worker restarted at once);"
            f" POSTs took {posted:.1f} s, all {expected} deliveries succeeded"
            f" {delivered:.1f} s after the first POST"
        )
        print(
            f"fault tolerance: {requests} requests reached the receivers"
            f" ({sum(sum(r.faults_given().values()) for r in receivers)} answered 500 on purpose),"
            f" {duplicates} duplicate 2xx deliveries; {attempts} attempts recorded,"
            " none overlapping"
        )


async def test_flaky_receiver_gets_everything_within_a_short_schedule(
    empty_postgres: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = role_env(
        empty_postgres,
        data_dir,
        port,
        lease_seconds="3",
        delivery_timeout="1",
        retry_schedule="0.2,0.4,0.8,1,1,1,1,1",
        # One endpoint takes all the traffic: let hung attempts not starve the others.
        worker_per_endpoint="16",
    )
    async with FaultyReceiver(failure_rate=0.3, seed=30, hang_for=3.0) as receiver:
        with (
            role(tmp_path, "api", env, port, "api") as api,
            role(tmp_path, "worker", env, port, "worker") as worker,
        ):
            await api.start()
            worker.spawn()
            async with admin_client(api) as client:
                await subscribe(client, receiver.url("/flaky"))
                began = time.monotonic()
                async with asyncio.timeout(30):
                    await bounded_gather(
                        (register(client, f"flaky{i:04d}") for i in range(FLAKY_EVENTS)),
                        limit=POST_CONCURRENCY,
                    )
                took = await wait_all_succeeded(empty_postgres, FLAKY_EVENTS, timeout=45)
                delivered = time.monotonic() - began
            assert await worker.terminate(timeout=15) == 0

    states = await delivery_states(empty_postgres)
    assert states == {"succeeded": FLAKY_EVENTS}, states
    event_ids = {row[0] for row in await fetch(empty_postgres, "SELECT id FROM events")}
    acked = receiver.acked_ids()
    assert set(acked) == event_ids, f"{len(event_ids - set(acked))} events never answered 2xx"
    faults = receiver.faults_given()
    assert set(faults) == {"500", "reset", "hang"}, faults
    rows = await fetch(
        empty_postgres,
        "SELECT coalesce(error_kind, 'ok'), count(*) FROM attempts GROUP BY 1 ORDER BY 1",
    )
    kinds = {row[0]: row[1] for row in rows}
    print(
        f"\nflaky receiver: {FLAKY_EVENTS} events, {len(receiver.requests)} requests, faults"
        f" {dict(faults)} ({sum(faults.values()) / len(receiver.requests):.0%});"
        f" attempts recorded by kind {kinds}; all delivered"
        f" {delivered:.1f} s after the first POST ({took:.1f} s after the last)"
    )
