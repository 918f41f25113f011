"""Group commit under a crash: `hookline serve` SIGKILLed while 2,000 registrations are in
flight. Every request answered 201 is in the database and is delivered after a restart; a
request in flight when the process died may or may not have been stored, but none that was
acknowledged is missing."""

import asyncio
import contextlib
import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve_survives_sigkill import (
    eventually,
    query,
    serve_env,
    subscribe,
)
from tests.support.process import ServeProcess, free_port
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

REQUESTS = 2_000
IN_FLIGHT = 64
KILL_AFTER = 700  # acknowledged registrations before the SIGKILL


async def test_sigkill_during_concurrent_registrations_loses_no_acknowledged_one(
    tmp_path: Path,
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    names = [f"crash{i:04d}" for i in range(REQUESTS)]
    acknowledged: set[str] = set()
    failed: set[str] = set()
    killed = asyncio.Event()
    async with Receiver() as receiver:
        with ServeProcess(tmp_path, env=serve_env(tmp_path, port), port=port) as serve:
            await serve.start()
            async with httpx.AsyncClient(
                base_url=serve.base_url,
                timeout=10,
                limits=httpx.Limits(max_connections=IN_FLIGHT),
            ) as client:
                await subscribe(client, receiver.url("/hook"), ["user_registered"], data_dir)
                gate = asyncio.Semaphore(IN_FLIGHT)

                async def register(name: str) -> None:
                    async with gate:
                        if killed.is_set():
                            failed.add(name)
                            return
                        try:
                            response = await client.post("/users", json={"username": name})
                        except httpx.TransportError:
                            failed.add(name)
                            return
                        if response.status_code == 201:
                            acknowledged.add(name)
                            if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                                killed.set()
                                serve.kill()
                        else:
                            failed.add(name)

                await asyncio.gather(*(register(name) for name in names))
            assert killed.is_set() and len(acknowledged) >= KILL_AFTER
            assert len(acknowledged) < REQUESTS, "the kill came after every request was answered"

            db = data_dir / "hookline.db"
            stored = {row[0] for row in query(db, "SELECT username FROM users")}
            missing = acknowledged - stored
            assert not missing, f"{len(missing)} acknowledged registrations were lost"
            events = {
                json.loads(row[0])["username"]
                for row in query(db, "SELECT payload FROM events WHERE event = 'user_registered'")
            }
            assert stored == events  # every stored user has its event: one transaction

            await serve.start()

            def delivered() -> set[str]:
                got = set()
                for received in receiver.requests:
                    with contextlib.suppress(ValueError, KeyError):
                        got.add(json.loads(received.body)["data"]["username"])
                return got

            await eventually(
                lambda: stored <= delivered(),
                timeout=60,
                what=lambda: f"{len(stored - delivered())} stored users not delivered",
            )
