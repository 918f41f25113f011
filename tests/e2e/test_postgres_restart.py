"""The machine's PostgreSQL restarted under running `hookline api` and `hookline worker`.

What the API acknowledged is never lost. While the database is unreachable the
API answers 503 with Retry-After (nothing was written, the client may send it again); once it
is back, the same processes carry on by themselves. Other tests share this server: the cluster
is up and accepting connections again before the test returns, pass or fail.
"""

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.support.pg_cluster import Cluster
from tests.support.process import ServeProcess, free_port
from tests.support.receiver import Receiver
from tests.support.roles import admin_client, fetch, role_env, subscribe, wait_all_succeeded

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

POSTERS = 4
CLIENT_TIMEOUT = 10.0
RECOVERY_LIMIT = 20.0  # seconds from the restart's end to the first 201 again
AFTER_RECOVERY = 40  # 201s to see after the restart before the posting stops


class ErrorWhileDatabaseDown(AssertionError):
    """The API answered something else than 503 (or 201) while PostgreSQL restarted."""


@dataclass(frozen=True)
class Post:
    username: str
    began: float
    ended: float
    outcome: str  # the status code, or the name of the client's exception
    retry_after: str | None


class Posters:
    """`POSTERS` clients POSTing new users back to back, every answer recorded."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.posts: list[Post] = []
        self._names = (f"pg{n:05d}" for n in itertools.count())
        self._stop = asyncio.Event()
        self._posted = asyncio.Condition()

    def created_since(self, moment: float) -> list[Post]:
        return [p for p in self.posts if p.outcome == "201" and p.began >= moment]

    def answered(self, *outcomes: str) -> set[str]:
        return {p.username for p in self.posts if p.outcome in outcomes}

    async def run(self) -> None:
        await asyncio.gather(*(self._post_until_stopped() for _ in range(POSTERS)))

    def stop(self) -> None:
        self._stop.set()

    async def wait_created(self, count: int, *, since: float, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout), self._posted:
                await self._posted.wait_for(lambda: len(self.created_since(since)) >= count)
        except TimeoutError:
            outcomes = Counter(p.outcome for p in self.posts if p.began >= since)
            raise AssertionError(
                f"not {count} users created within {timeout} s; answers since: {outcomes}"
            ) from None

    async def _post_until_stopped(self) -> None:
        while not self._stop.is_set():
            username = next(self._names)
            began = time.monotonic()
            try:
                response = await self.client.post("/users", json={"username": username})
                outcome = str(response.status_code)
                retry_after = response.headers.get("retry-after")
            except httpx.HTTPError as exc:
                outcome, retry_after = type(exc).__name__, None
            async with self._posted:
                self.posts.append(Post(username, began, time.monotonic(), outcome, retry_after))
                self._posted.notify_all()
            await asyncio.sleep(0.01)


async def test_postgres_restart_gives_503_then_recovers_and_loses_nothing(
    empty_postgres: str, tmp_path: Path
) -> None:
    cluster = Cluster.serving(empty_postgres)
    if cluster is None:
        reason = "no local PostgreSQL cluster (pg_lsclusters) serves HOOKLINE_TEST_POSTGRES_URL"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()
    env = role_env(
        empty_postgres,
        tmp_path / "data",
        port,
        lease_seconds="3",
        delivery_timeout="2",
        retry_schedule="0.5,1,1,1,1,1,1,1",
    )
    async with Receiver() as receiver:
        with (
            ServeProcess(tmp_path, env=env, port=port, command="api") as api,
            ServeProcess(tmp_path, env=env, port=port, command="worker") as worker,
        ):
            await api.start()
            worker.spawn()
            async with admin_client(api, timeout=CLIENT_TIMEOUT) as client:
                await subscribe(client, receiver.url("/hook"))
                posters = Posters(client)
                posting = asyncio.create_task(posters.run())
                try:
                    await posters.wait_created(20, since=0, timeout=15)
                    # The worker is up and delivering before the database goes away.
                    await receiver.wait_for(1, timeout=20)
                    restart_began = time.monotonic()
                    try:
                        restart_took = await cluster.restart(timeout=60)
                    finally:
                        await cluster.ensure_up(timeout=60)
                    restart_ended = time.monotonic()
                    await posters.wait_created(1, since=restart_ended, timeout=RECOVERY_LIMIT)
                    recovered_at = min(p.ended for p in posters.created_since(restart_ended))
                    await posters.wait_created(AFTER_RECOVERY, since=restart_ended, timeout=20)
                finally:
                    posters.stop()
                    async with asyncio.timeout(CLIENT_TIMEOUT + 5):
                        await posting

                outcomes = Counter(p.outcome for p in posters.posts)
                refused = [p for p in posters.posts if p.outcome == "503"]
                assert set(outcomes) != {"201"}, "every POST got a 201: no outage was seen"
                assert all(p.retry_after for p in refused), "a 503 without Retry-After"
                assert not {"ReadTimeout", "WriteTimeout", "PoolTimeout"} & set(outcomes), outcomes
                slowest = max(p.ended - p.began for p in posters.posts)

                # What got a 201 is stored, what got a 503 is not (an error or a dropped
                # connection leaves the client not knowing: either may be).
                created, unavailable = posters.answered("201"), posters.answered("503")
                stored = {
                    row[0] for row in await fetch(empty_postgres, "SELECT username FROM users")
                }
                assert created <= stored, f"acknowledged, then lost: {sorted(created - stored)}"
                assert not unavailable & stored, f"503 but stored: {sorted(unavailable & stored)}"
                unknown = posters.answered(*(set(outcomes) - {"201", "503"}))
                # The client sends the refused ones again and they are created.
                for username in sorted(unavailable):
                    again = await client.post("/users", json={"username": username})
                    assert again.status_code == 201, (username, again.status_code, again.text)
                users = len(stored) + len(unavailable)

                # Every stored event reaches the receiver; the processes never restarted.
                took = await wait_all_succeeded(empty_postgres, users, timeout=30)
            assert api.running and worker.running and api.starts == worker.starts == 1
            assert await worker.terminate(timeout=15) == 0

        event_ids = {row[0] for row in await fetch(empty_postgres, "SELECT id FROM events")}
        assert len(event_ids) == users
        arrived = {r.headers.get("webhook-id") for r in receiver.requests}
        assert event_ids <= arrived, f"{len(event_ids - arrived)} events never reached the receiver"
        print(
            f"\npostgres restart: cluster {cluster.version}/{cluster.name} restarted in"
            f" {restart_took:.1f} s while {POSTERS} clients POSTed /users; answers"
            f" {dict(outcomes)}; non-201 answers from"
            f" {min(p.began for p in posters.posts if p.outcome != '201') - restart_began:+.2f} s"
            f" to {max(p.ended for p in posters.posts if p.outcome != '201') - restart_began:+.2f}"
            f" s after the restart began; slowest answer {slowest:.2f} s; first 201"
            f" {recovered_at - restart_ended:.2f} s after the restart ended; {users} users"
            f" ({len(unavailable)} sent again after a 503; of {len(unknown)} answered neither 201"
            f" nor 503, {len(unknown & stored)} were stored), all delivered {took:.1f} s later"
        )
        others = {k: n for k, n in outcomes.items() if k not in {"201", "503"}}
        if others:
            raise ErrorWhileDatabaseDown(f"answers besides 201 and 503: {others}")
