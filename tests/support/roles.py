"""`hookline api` and `hookline worker` processes on one PostgreSQL, and receivers that misbehave.

env = role_env(database_url, tmp_path / "data", port)     # one secret key for every process
with ServeProcess(tmp_path / "api", env=env, port=port, command="api") as api:
    ...
async with FaultyReceiver(failure_rate=0.3, faults=("500", "reset", "hang")) as receiver:
    ...
    receiver.acked_ids()   # the webhook-ids answered 2xx at least once
"""

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from aiohttp import web
from cryptography.fernet import Fernet

from tests.conftest import _pg_dsn
from tests.support.process import ServeProcess, clean_environ
from tests.support.receiver import Received, Receiver

T = TypeVar("T")

ADMIN_TOKEN = "hl_admin_e2e-token-for-fault-tolerance-tests-0123"
# Every process must open the endpoint secrets the API sealed: one key for all of them.
SECRET_KEY = Fernet.generate_key().decode("ascii")
FAULTS = ("500", "reset", "hang")


def role_env(database_url: str, data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment of an api or worker process; `settings` are HOOKLINE_<NAME> overrides."""
    env = clean_environ(
        HOOKLINE_DATABASE_URL=database_url,
        HOOKLINE_DATA_DIR=str(data_dir),
        HOOKLINE_SECRET_KEY=SECRET_KEY,
        HOOKLINE_ADMIN_TOKEN=ADMIN_TOKEN,
        HOOKLINE_PORT=str(port),
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_PING_ON_CREATE="false",
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_POLL_INTERVAL="0.2",
    )
    env.update({f"HOOKLINE_{name.upper()}": value for name, value in settings.items()})
    return env


def admin_client(api: ServeProcess, *, timeout: float = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=api.base_url,
        timeout=timeout,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )


async def subscribe(client: httpx.AsyncClient, url: str, event: str = "user_registered") -> None:
    response = await client.post("/webhook", json={"event": event, "url": url})
    assert response.status_code == 201, response.text


async def bounded_gather(jobs: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Run the jobs with at most `limit` at a time, results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


async def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_pg_dsn(database_url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def delivery_states(database_url: str) -> dict[str, int]:
    """Deliveries by state: a pending one is `leased`, `retrying` or `due` (never attempted)."""
    rows = await fetch(
        database_url,
        "SELECT CASE WHEN status <> 'pending' THEN status"
        " WHEN lease_owner IS NOT NULL THEN 'leased'"
        " WHEN attempts_made > 0 THEN 'retrying' ELSE 'due' END AS state, count(*)"
        " FROM deliveries GROUP BY state",
    )
    return {row[0]: row[1] for row in rows}


async def wait_all_succeeded(database_url: str, expected: int, *, timeout: float) -> float:
    """Poll the deliveries until `expected` succeeded; the seconds it took."""
    began = time.monotonic()
    states: dict[str, int] = {}
    try:
        async with asyncio.timeout(timeout):
            while states.get("succeeded", 0) < expected:
                assert "failed" not in states, f"a delivery failed: {states}"
                await asyncio.sleep(0.25)
                states = await delivery_states(database_url)
    except TimeoutError:
        raise AssertionError(f"not all {expected} delivered within {timeout} s: {states}") from None
    return time.monotonic() - began


class FaultyReceiver(Receiver):
    """A receiver that fails `failure_rate` of the requests it gets, picked by a seeded random.

    A failure is one of `faults`: "500"; "reset", the connection closed without an answer; or
    "hang", no answer until `hang_for` seconds (past the sender's timeout). One webhook-id fails
    at most `max_failures_per_id` times in a row, so no retry schedule of more steps runs out.
    `answered` pairs each request with what it got ("200" or a fault).
    """

    def __init__(
        self,
        *,
        failure_rate: float,
        faults: Iterable[str] = FAULTS,
        seed: int = 7,
        max_failures_per_id: int = 4,
        hang_for: float = 3.0,
    ) -> None:
        super().__init__()
        self.faults = tuple(faults)
        assert set(self.faults) <= set(FAULTS), self.faults
        self.failure_rate = failure_rate
        self.max_failures_per_id = max_failures_per_id
        self.hang_for = hang_for
        self.answered: list[tuple[Received, str]] = []
        self._random = random.Random(seed)
        self._failures_in_a_row: Counter[str] = Counter()

    async def __aenter__(self) -> "FaultyReceiver":
        await super().__aenter__()
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body)
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        webhook_id = received.headers.get("webhook-id", "")
        answer = "200"
        if (
            self._random.random() < self.failure_rate
            and self._failures_in_a_row[webhook_id] < self.max_failures_per_id
        ):
            answer = self._random.choice(self.faults)
            self._failures_in_a_row[webhook_id] += 1
        else:
            self._failures_in_a_row[webhook_id] = 0
        self.answered.append((received, answer))
        if answer == "reset":
            assert request.transport is not None
            request.transport.close()  # the answer below is never written
        elif answer == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hang_for)
        status = int(answer) if answer.isdigit() else 200
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def acked_ids(self) -> Counter[str]:
        """How many 2xx answers each webhook-id got."""
        return Counter(
            r.headers.get("webhook-id", "") for r, answer in self.answered if answer == "200"
        )

    def faults_given(self) -> Counter[str]:
        return Counter(answer for _, answer in self.answered if answer != "200")
