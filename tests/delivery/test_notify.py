"""On PostgreSQL a commit wakes idle workers in other processes (LISTEN/NOTIFY), not the poll."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from hookline import secretbox
from hookline.config import Settings
from hookline.delivery import notify
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.store import open_store
from tests.conftest import TEST_DEFAULTS, _pg_dsn
from tests.delivery.helpers import register_user, subscribe, wait_until
from tests.support.app import running_app
from tests.support.receiver import Receiver

pytestmark = pytest.mark.postgres

# The sessions of workers listening (asyncpg quotes the channel), to count or to kill.
LISTENERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    f" WHERE query LIKE 'LISTEN %{notify.CHANNEL}%'"
)
# Far longer than the test waits: only a notification can wake the worker in time.
POLL = 60.0


def pg_settings(url: str, tmp_path: Any, **overrides: Any) -> Settings:
    values = {**TEST_DEFAULTS, "data_dir": tmp_path / "data", "database_url": url}
    return Settings(_env_file=None, **{**values, **overrides})


@asynccontextmanager
async def separate_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A worker with its own store and sender, as in another process: nothing in-process can
    wake it."""
    store = open_store(settings)
    sender = Sender.from_settings(settings, box=secretbox.load(settings))
    await sender.start()
    worker = Worker(settings=settings, store=store, sender=sender)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task
        await sender.close()
        await store.close()


async def listeners(url: str) -> int:
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        count: int = await conn.fetchval(LISTENERS.replace("pg_terminate_backend(pid)", "count(*)"))
        return count
    finally:
        await conn.close()


async def wait_listening(url: str) -> None:
    await wait_until(lambda: listeners(url), timeout=5, what="a worker listening")


async def test_a_commit_wakes_a_worker_in_another_process_within_a_second(
    empty_postgres: str, tmp_path: Any, receiver: Receiver
) -> None:
    settings = pg_settings(empty_postgres, tmp_path, poll_interval=POLL)
    async with running_app(settings) as api, separate_worker(settings):
        await subscribe(api.client, receiver.url("/hook"))
        await wait_listening(empty_postgres)
        await asyncio.sleep(0.2)  # the worker's first claims (at start) are over
        began = time.monotonic()
        await register_user(api.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)
        latency = time.monotonic() - began

    assert latency < 1.0, latency


async def test_the_worker_listens_again_after_its_connection_is_killed(
    empty_postgres: str, tmp_path: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "RECONNECT_AFTER", 0.1)
    settings = pg_settings(empty_postgres, tmp_path, poll_interval=POLL)
    async with running_app(settings) as api, separate_worker(settings):
        await subscribe(api.client, receiver.url("/hook"))
        await wait_listening(empty_postgres)
        conn = await asyncpg.connect(_pg_dsn(empty_postgres))
        try:
            await conn.execute(LISTENERS)
        finally:
            await conn.close()
        await wait_listening(empty_postgres)
        await register_user(api.client, "alice")
        await receiver.wait_for(1, path="/hook", timeout=5)

    assert len(receiver.at("/hook")) == 1
