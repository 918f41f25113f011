"""`hookline api` and `hookline worker` as separate real processes on one PostgreSQL.

The two roles apart, for scale-out; a plain `postgresql://` URL works. The worker
stops on SIGTERM by finishing the attempt in flight and recording it, then exits 0.
"""

import asyncio
import socket
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import _pg_dsn
from tests.support.process import ServeProcess, clean_environ, free_port
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "hl_admin_e2e-token-for-api-and-worker-processes"


def role_env(database_url: str, port: int) -> dict[str, str]:
    return clean_environ(
        HOOKLINE_DATABASE_URL=database_url,
        HOOKLINE_PORT=str(port),
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_PING_ON_CREATE="false",
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
        HOOKLINE_DELIVERY_TIMEOUT="5",
        HOOKLINE_LEASE_SECONDS="10",
        HOOKLINE_POLL_INTERVAL="0.2",
        HOOKLINE_RETRY_SCHEDULE="0.5,1",
        HOOKLINE_ADMIN_TOKEN=ADMIN_TOKEN,
    )


async def delivery_rows(database_url: str) -> list[tuple[str, int, int]]:
    conn = await asyncpg.connect(_pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT d.status, d.attempts_made, count(a.id) FROM deliveries d"
            " LEFT JOIN attempts a ON a.delivery_id = d.id"
            " JOIN events e ON e.id = d.event_id WHERE e.event <> 'ping'"
            " GROUP BY d.id, d.status, d.attempts_made ORDER BY d.id"
        )
    finally:
        await conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_api_and_worker_processes_deliver_and_stop_cleanly(
    empty_postgres: str, tmp_path, receiver: Receiver
) -> None:
    port = free_port()
    env = role_env(empty_postgres, port)
    receiver.script("/slow", [200], delay=1.0)
    with (
        ServeProcess(tmp_path, env=env, port=port, command="api") as api,
        ServeProcess(tmp_path, env=env, port=port, command="worker") as worker,
    ):
        await api.start()
        worker.spawn()
        async with httpx.AsyncClient(
            base_url=api.base_url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as client:
            hook = await client.post(
                "/webhook", json={"event": "user_registered", "url": receiver.url("/hook")}
            )
            assert hook.status_code == 201, hook.text
            created = await client.post("/users", json={"username": "Alice"})
            assert created.status_code == 201, created.text

            await receiver.wait_for(1, path="/hook", timeout=15)
            [got] = receiver.at("/hook")
            Webhook(hook.json()["secret"]).verify(got.body, got.headers)
            assert got.headers["webhook-id"].startswith("evt_")

            slow = await client.post(
                "/webhook", json={"event": "user_registered", "url": receiver.url("/slow")}
            )
            assert slow.status_code == 201, slow.text
            assert (await client.post("/users", json={"username": "bob"})).status_code == 201
            await receiver.wait_for(1, path="/slow", timeout=15)  # now in flight

            stopping = time.monotonic()
            assert await worker.terminate(timeout=15) == 0
            stopped_after = time.monotonic() - stopping
            assert await api.terminate(timeout=15) == 0

    statuses = await delivery_rows(empty_postgres)
    # alice -> /hook, bob -> /hook and /slow: every one finished, one attempt each, the slow
    # attempt that was in flight at SIGTERM included (finished, not abandoned).
    assert statuses == [("succeeded", 1, 1)] * 3
    assert stopped_after < 5


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def test_api_with_several_uvicorn_workers_serves_and_stops(
    empty_postgres: str, tmp_path, receiver: Receiver
) -> None:
    port = free_port()
    env = role_env(empty_postgres, port)
    with (
        ServeProcess(tmp_path, env=env, port=port, command="api", args=["--workers", "2"]) as api,
        ServeProcess(tmp_path, env=env, port=port, command="worker") as worker,
    ):
        await api.start()
        worker.spawn()
        children = children_of(api.pid)
        async with httpx.AsyncClient(
            base_url=api.base_url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as client:
            hook = await client.post(
                "/webhook", json={"event": "user_registered", "url": receiver.url("/hook")}
            )
            assert hook.status_code == 201, hook.text
            for n in range(20):
                created = await client.post("/users", json={"username": f"user{n}"})
                assert created.status_code == 201, created.text
            await receiver.wait_for(20, path="/hook", timeout=15)
        api_exit = await api.terminate(timeout=15)
        worker_exit = await worker.terminate(timeout=15)

    # uvicorn's supervisor, its worker processes (and the resource tracker it may spawn).
    assert len(children) >= 2, children
    assert len({r.headers["webhook-id"] for r in receiver.at("/hook")}) == 20
    assert (api_exit, worker_exit) == (0, 0)


async def test_a_worker_stopped_while_it_starts_exits_0(tmp_path: Path) -> None:
    # Its database answers nothing (a socket that accepts and stays silent): the worker is
    # held in its start, before its event loop takes SIGTERM over. Nothing is leased yet, so a
    # stop asked for now is a clean stop, not death by the signal.
    with socket.socket() as database:
        database.bind(("127.0.0.1", 0))
        database.listen(4)
        database.settimeout(30)
        silent = f"postgresql://postgres@127.0.0.1:{database.getsockname()[1]}/hookline"
        env = clean_environ(HOOKLINE_DATABASE_URL=silent, HOOKLINE_DATA_DIR=str(tmp_path))
        with ServeProcess(tmp_path, env=env, port=free_port(), command="worker") as worker:
            worker.spawn()
            connection, _ = await asyncio.to_thread(database.accept)  # it is starting
            with connection:
                assert await worker.terminate(timeout=10) == 0, worker.log_text()
