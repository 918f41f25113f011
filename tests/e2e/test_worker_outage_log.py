"""A real `hookline worker` whose database goes away for a while, then comes back.

The worker reaches PostgreSQL through a TCP proxy the test cuts (every connection reset, new
ones refused) for several seconds: many polls. Its log must tell of the outage in one
warning and of the recovery in one line, with no traceback, and it must deliver again after.
The worker's own metrics port (HOOKLINE_WORKER_METRICS_PORT) counts what it delivered.
"""

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.support.process import ServeProcess, free_port
from tests.support.proxy import TcpProxy
from tests.support.receiver import Receiver
from tests.support.roles import admin_client, role_env, subscribe

pytestmark = pytest.mark.e2e

POLL_INTERVAL = 0.2
OUTAGE_SECONDS = 4.0  # 20 polls


def through(proxy: TcpProxy, database_url: str) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


async def attempts_counted(metrics_url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(metrics_url)
    assert response.status_code == 200, response.text
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name == "hookline_attempts":
            for sample in family.samples:
                counted[sample.labels["outcome"]] = sample.value
    return counted


async def test_a_database_outage_is_one_warning_and_the_worker_carries_on(
    empty_postgres: str, tmp_path: Path
) -> None:
    pg = make_url(empty_postgres)
    api_port, metrics_port = free_port(), free_port()
    async with Receiver() as receiver, TcpProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy:
        api_env = role_env(empty_postgres, tmp_path / "data", api_port)
        worker_env = role_env(
            through(proxy, empty_postgres),
            tmp_path / "data",
            api_port,
            poll_interval=str(POLL_INTERVAL),
            worker_metrics_port=str(metrics_port),
        )
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        with (
            ServeProcess(tmp_path, env=api_env, port=api_port, command="api") as api,
            ServeProcess(tmp_path, env=worker_env, port=api_port, command="worker") as worker,
        ):
            await api.start()
            worker.spawn()
            await worker.wait_for_line("worker started", timeout=20)
            async with admin_client(api) as client:
                await subscribe(client, receiver.url("/hook"))
                created = await client.post("/users", json={"username": "before"})
                assert created.status_code == 201, created.text
                await receiver.wait_for(1, timeout=15)
                assert (await attempts_counted(metrics_url)).get("succeeded") == 1

                await proxy.cut()
                await asyncio.sleep(OUTAGE_SECONDS)
                # Published meanwhile (the API's own connection is direct): due when it is back.
                created = await client.post("/users", json={"username": "during"})
                assert created.status_code == 201, created.text
                await proxy.restore()

                await worker.wait_for_line("database available again", timeout=20)
                await receiver.wait_for(2, timeout=20)
                succeeded = await wait_for_count(metrics_url, 2)
            assert worker.running, "the worker died during the outage"
            assert await worker.terminate(timeout=20) == 0
            log = worker.log_text()

    lines = log.splitlines()
    unavailable = [line for line in lines if "database unavailable" in line]
    back = [line for line in lines if "database available again" in line]
    assert len(unavailable) == 1, unavailable
    assert " WARNING hookline.worker " in unavailable[0]
    assert len(back) == 1, back
    assert "failed_tries=" in back[0] and "outage_s=" in back[0]
    assert "Traceback" not in log
    assert not [line for line in lines if " ERROR " in line]
    # The LISTEN connection: one line for its loss, one for listening again, whatever the
    # number of reconnection attempts in between.
    listen_lines = [line for line in lines if "hookline.notify" in line]
    assert len(listen_lines) <= 3, listen_lines
    assert succeeded == 2


async def wait_for_count(metrics_url: str, expected: float, *, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while True:
        succeeded = (await attempts_counted(metrics_url)).get("succeeded", 0)
        if succeeded >= expected or time.monotonic() > deadline:
            return succeeded
        await asyncio.sleep(0.1)
