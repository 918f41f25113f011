"""Diagnostic for P2: CPU per request of hookline's routes, in one process, one at a time.

The app runs in this process behind httpx's ASGI transport (no sockets, no uvicorn), one
request at a time, on a fresh SQLite data dir with the worker off: what is left is the
route's own cost (FastAPI, auth, SQLAlchemy, aiosqlite, SQLite). Each line is the median of
`--repeats` runs of `--requests` requests, in CPU ms per request (this process, all threads).
Baseline: a bare FastAPI JSON POST route (bench/_bare_app.py's) through the same transport.
The ratio printed is POST /users/messages (3 endpoints) ÷ the bare route. Also timed: the
database primitives under it (one `SELECT 1` through sqlite3, aiosqlite, a SQLAlchemy async
connection and session, and hookline's own SQLite connection, `hookline/sqlite_thread.py`,
which runs each statement in one hand-off to its thread where aiosqlite makes three or four),
and how many hand-offs one request makes.

    .venv/bin/python bench/api_request_cost.py [--quick] [--requests 300] [--repeats 3]
"""

import argparse
import shutil
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
from _bare_app import app as bare_app
from _common import ADMIN_TOKEN, Result, parse_args, run, temp_dir
from sqlalchemy import text

from hookline import sqlite_thread
from hookline.api.app import create_app
from hookline.config import Settings
from hookline.db import create_engine, create_sessionmaker


async def cpu_per_call(call: Callable[[int], Awaitable[None]], n: int, repeats: int) -> float:
    """Median CPU ms per call over `repeats` runs of `n` calls (after 20 warm-up calls)."""
    for i in range(20):
        await call(-i - 1)
    runs = []
    for r in range(repeats):
        began = time.process_time()
        for i in range(n):
            await call(r * n + i)
        runs.append(1000 * (time.process_time() - began) / n)
    return statistics.median(runs)


class CountingRun:
    """Counts the calls hookline's SQLite connection hands to its thread (wraps its `run`)."""

    def __init__(self, connection: sqlite_thread.Connection) -> None:
        self.connection = connection
        self.inner = connection.run
        self.count = 0

    async def __call__(self, function: Any, *args: Any) -> Any:
        self.count += 1
        return await self.inner(function, *args)


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.requests, args.repeats = 100, 1
    n, reps = args.requests, args.repeats
    costs: dict[str, float] = {}
    data_dir = temp_dir("cost")
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        allow_private_networks=True,
        ping_on_create=False,
        rate_limit_per_second=0,
        admin_token=ADMIN_TOKEN,
    )
    message = {"sender": "alice", "recipient": "bob", "subject": "hi", "message": "hello"}
    bare = httpx.AsyncClient(transport=httpx.ASGITransport(bare_app), base_url="http://bare")

    async def bare_post(_i: int) -> None:
        assert (await bare.post("/users/messages", json=message)).status_code == 201

    costs["bare FastAPI POST route"] = await cpu_per_call(bare_post, n, reps)
    app = create_app(settings)
    hops: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        engine = app.state.test_db.engine
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://hookline", headers=headers
        ) as client:
            created = await client.post("/users", json={"username": "alice"})
            alice = {"Authorization": f"Bearer {created.json()['token']}"}
            await client.post("/users", json={"username": "bob"})

            async def health(_i: int) -> None:
                assert (await client.get("/health")).status_code == 200

            async def list_users(_i: int) -> None:
                assert (await client.get("/users?limit=1", headers=alice)).status_code == 200

            async def register(i: int) -> None:
                answer = await client.post("/users", json={"username": f"u{i}-{time.time_ns()}"})
                assert answer.status_code == 201

            async def send(_i: int) -> None:
                answer = await client.post("/users/messages", json=message, headers=alice)
                assert answer.status_code == 201

            costs["GET /health (no database)"] = await cpu_per_call(health, n, reps)
            costs["GET /users?limit=1 (user token)"] = await cpu_per_call(list_users, n, reps)
            costs["POST /users, 0 endpoints"] = await cpu_per_call(register, n, reps)
            costs["POST /users/messages, 0 endpoints"] = await cpu_per_call(send, n, reps)
            for k in range(3):
                hook = await client.post(
                    "/webhook", json={"event": "*", "url": f"http://127.0.0.1:9/hook/{k}"}
                )
                assert hook.status_code == 201, hook.text
            costs["POST /users, 3 endpoints"] = await cpu_per_call(register, n, reps)
            costs["POST /users/messages, 3 endpoints"] = await cpu_per_call(send, n, reps)

            # How many hand-offs to the SQLite connection's thread one request makes.
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
            counting = CountingRun(raw)
            raw.run = counting  # type: ignore[method-assign]
            for name, call in (
                ("POST /users/messages, 3 endpoints", send),
                ("GET /users", list_users),
            ):
                counting.count = 0
                for i in range(20):
                    await call(i)
                hops[name] = counting.count / 20
            del raw.run

    # The primitives: one SELECT 1 each way.
    db = sqlite3.connect(Path(data_dir) / "primitives.db")
    began = time.process_time()
    for _ in range(10 * n):
        db.execute("SELECT 1").fetchall()
    costs["SELECT 1: sqlite3"] = 1000 * (time.process_time() - began) / (10 * n)
    db.close()
    async with aiosqlite.connect(Path(data_dir) / "primitives.db") as adb:

        async def aio_select(_i: int) -> None:
            async with adb.execute("SELECT 1") as cursor:
                await cursor.fetchall()

        costs["SELECT 1: aiosqlite"] = await cpu_per_call(aio_select, n, reps)
    own = await sqlite_thread.Connection.open(Path(data_dir) / "primitives.db")

    async def own_select(_i: int) -> None:
        cursor = await own.cursor().execute("SELECT 1")
        await cursor.fetchall()

    costs["SELECT 1: hookline's SQLite thread"] = await cpu_per_call(own_select, n, reps)
    await own.close()
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)

    async def sa_connection(_i: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))

    async def sa_session(_i: int) -> None:
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
            await session.commit()

    costs["SELECT 1: SQLAlchemy async engine.begin()"] = await cpu_per_call(sa_connection, n, reps)
    costs["SELECT 1: SQLAlchemy async session + commit"] = await cpu_per_call(sa_session, n, reps)
    await engine.dispose()
    await bare.aclose()
    shutil.rmtree(data_dir, ignore_errors=True)
    for name, ms in costs.items():
        print(f"{name:48s} {ms:7.3f} ms CPU")
    route = costs["POST /users/messages, 3 endpoints"]
    return Result(
        key="api_cost",
        title="Diagnostic: CPU per request in-process, POST /users/messages ÷ bare route",
        ratio=route / costs["bare FastAPI POST route"],
        goal="",
        baseline="the bare FastAPI POST route, same in-process transport",
        context={
            "cpu_ms_per_request": {k: round(v, 3) for k, v in costs.items()},
            "sqlite_thread_handoffs_per_request": hops,
            "requests": f"{n} x {reps} run(s), one at a time",
        },
        plot={"bars": dict(costs), "ylabel": "CPU ms per request", "horizontal": True},
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
