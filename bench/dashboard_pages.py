"""The dashboard with a long history: GET /dashboard (the overview) and
GET /dashboard/endpoints/{id} (an endpoint's page) with 1,000,000 deliveries in the database ÷
on an empty one (goal <= 3 for each page).

In process: `create_app(settings)` (no worker) through httpx.ASGITransport, signed in as the
admin through the real sign-in form (its CSRF cookie and field), each page's median over
`--requests` GETs after 3 unmeasured ones. First on a fresh database with one endpoint (the
"empty" time); then 3 more endpoints are made through the API, the app is closed and the
deliveries written directly (plain sqlite3 `executemany` with the deliveries' indexes built
after, or COPY on PostgreSQL, then ANALYZE), the app opened again and both pages timed again:
first with the last 24 hours' deliveries alone ("day only": what the 24-hour chart and the
endpoint's day stats must count), then with the older history added (the ratio's numerator).
Full / day only is what the history itself costs.

The history: one event per 4 deliveries (one to each endpoint), ids time-ordered as
`hookline.ids.new_id` makes them, spread over the last `--days` days; 95% older than 24 hours
(97% of those succeeded, 3% failed), the last 24 hours' mostly succeeded, some failed, 2,000
pending and due and 1,000 pending not yet due (`--day N`: N of them in the last 24 hours
instead of 5%). With `--postgres` the same on PostgreSQL
(database `hookline_bench`, created and dropped).

    .venv/bin/python bench/dashboard_pages.py [--quick] [--size 1000000] [--requests 20]
        [--day 50000] [--postgres] [--no-sqlite]
"""

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from _common import ADMIN_TOKEN, Result, parse_args, run, temp_dir
from pydantic import SecretStr

from hookline.api.app import create_app
from hookline.config import Settings
from hookline.ids import _encode
from hookline.store.sql import TIME_FORMAT

ENDPOINTS = 4
RECENT_SHARE = 0.05  # of the deliveries, made in the last 24 hours (unless --day says)
DUE = 2_000  # recent deliveries pending and due
NOT_DUE = 1_000  # recent deliveries pending, due in an hour
WARMUP = 3


def history(
    size: int, days: int, endpoint_ids: list[str], now: datetime, day: int | None = None
) -> dict[str, dict[str, list[Any]]]:
    """Events and deliveries, oldest first (datetimes; SQLite's rows stamp them as text): the
    last 24 hours' ("day") and the older ones ("older"), each event in the part of its own
    deliveries."""
    recent = int(size * RECENT_SHARE) if day is None else day
    recent -= recent % len(endpoint_ids)  # each event's deliveries in one part
    old = size - recent
    start_ms = int((now - timedelta(days=days)).timestamp() * 1000)
    day_ago_ms = int((now - timedelta(hours=24)).timestamp() * 1000) + 60_000
    now_ms = int(now.timestamp() * 1000) - 60_000
    made: dict[str, dict[str, list[Any]]] = {
        part: {"events": [], "deliveries": []} for part in ("day", "older")
    }
    fan = len(endpoint_ids)
    for d in range(size):
        events, deliveries = made["older" if d < old else "day"].values()
        if d < old:
            ms = start_ms + (day_ago_ms - 120_000 - start_ms) * d // old
        else:
            ms = day_ago_ms + (now_ms - day_ago_ms) * (d - old) // recent
        at = datetime.fromtimestamp(ms / 1000, UTC)
        if d % fan == 0:
            event = f"evt_{_encode(ms, d)}"
            events.append((event, "user_registered", '{"username": "u"}', at))
        endpoint = endpoint_ids[d % fan]
        dlv = f"dlv_{_encode(ms, d)}"
        from_end = size - d
        if from_end <= DUE + NOT_DUE:
            due = at if from_end <= DUE else now + timedelta(hours=1)
            deliveries.append((dlv, event, endpoint, "pending", 0, due, at, None))
        elif d % 33 == 0 or (d >= old and d % 10 == 0):
            deliveries.append((dlv, event, endpoint, "failed", 5, None, at, at))
        else:
            deliveries.append((dlv, event, endpoint, "succeeded", 1, None, at, at))
    return made


_DELIVERY_COLUMNS = [
    "id",
    "event_id",
    "endpoint_id",
    "status",
    "attempts_made",
    "next_attempt_at",
    "created_at",
    "finished_at",
]


def seed_sqlite(settings: Settings, made: dict[str, list[Any]]) -> None:
    def stamp(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v.strftime(TIME_FORMAT) if isinstance(v, datetime) else v for v in row)

    db = sqlite3.connect(settings.data_dir / "hookline.db", isolation_level=None)
    try:
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name IN ('deliveries', 'events') AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        batch = 100_000
        for i in range(0, len(made["events"]), batch):
            db.executemany(
                "INSERT INTO events (id, event, payload, created_at) VALUES (?, ?, ?, ?)",
                map(stamp, made["events"][i : i + batch]),
            )
        for i in range(0, len(made["deliveries"]), batch):
            db.executemany(
                f"INSERT INTO deliveries ({', '.join(_DELIVERY_COLUMNS)})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                map(stamp, made["deliveries"][i : i + batch]),
            )
        db.execute("COMMIT")
        for _, sql in indexes:
            db.execute(sql)
    finally:
        db.close()


async def seed_postgres(made: dict[str, list[Any]]) -> None:
    import asyncpg
    import pg_bench

    conn = await asyncpg.connect(pg_bench.URL)
    try:
        await conn.copy_records_to_table(
            "events", columns=["id", "event", "payload", "created_at"], records=made["events"]
        )
        await conn.copy_records_to_table(
            "deliveries", columns=_DELIVERY_COLUMNS, records=made["deliveries"]
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@asynccontextmanager
async def signed_in(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app (lifespan on, no worker), a cookie-keeping client signed in as the admin, and
    an API client with the admin's bearer token."""
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        base = "http://testserver"
        async with (
            httpx.AsyncClient(transport=transport, base_url=base) as browser,
            httpx.AsyncClient(
                transport=transport,
                base_url=base,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as api,
        ):
            form = await browser.get("/dashboard/sign-in")
            assert form.status_code == 200, form.text
            csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed = await browser.post(
                "/dashboard/sign-in",
                data={"csrf_token": csrf, "token": ADMIN_TOKEN, "next": "/dashboard"},
            )
            assert signed.status_code == 303, signed.text
            yield browser, api


async def make_endpoint(api: httpx.AsyncClient, n: int) -> str:
    made = await api.post(
        "/endpoints", json={"url": f"http://127.0.0.1:9/hook/{n}", "events": ["*"]}
    )
    assert made.status_code == 201, made.text
    endpoint_id: str = made.json()["id"]
    return endpoint_id


async def page_times(
    browser: httpx.AsyncClient, paths: dict[str, str], count: int
) -> dict[str, float]:
    """Median ms per page; the pages take turns, so outside load falls on both."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for n in range(WARMUP + count):
        for name, path in paths.items():
            began = time.perf_counter()
            response = await browser.get(path)
            took = (time.perf_counter() - began) * 1000
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            if n >= WARMUP:
                times[name].append(took)
    return {name: statistics.median(found) for name, found in times.items()}


async def measure(settings: Settings, args: argparse.Namespace, database: str) -> dict[str, Any]:
    async with signed_in(settings) as (browser, api):
        first = await make_endpoint(api, 0)
        paths = {"overview": "/dashboard", "endpoint": f"/dashboard/endpoints/{first}"}
        empty = await page_times(browser, paths, args.requests)
        print(f"{database} empty: " + ", ".join(f"{k} {v:.1f} ms" for k, v in empty.items()))
        endpoint_ids = [first, *[await make_endpoint(api, n) for n in range(1, ENDPOINTS)]]
    made = history(args.size, args.days, endpoint_ids, datetime.now(UTC), args.day)
    times = {"empty": empty}
    seeded = 0.0
    for part in ("day", "older"):
        began = time.monotonic()
        if database == "sqlite":
            await asyncio.to_thread(seed_sqlite, settings, made[part])
        else:
            await seed_postgres(made[part])
        seeded += time.monotonic() - began
        written = len(made[part]["deliveries"])
        print(f"{database}: {written:,} deliveries ({part}) written in {seeded:.0f} s")
        async with signed_in(settings) as (browser, _api):
            times[part] = await page_times(browser, paths, args.requests)
        print(
            f"{database} +{part}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in times[part].items())
        )
    del made
    ratios = {name: times["older"][name] / empty[name] for name in paths}
    history_cost = {name: times["older"][name] / times["day"][name] for name in paths}
    print(
        f"{database} ratios ({args.size:,} / empty): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
    )
    print(
        f"{database} {args.size:,} / the day's alone: "
        + ", ".join(f"{k} {v:.2f}" for k, v in history_cost.items())
    )
    return {
        "empty_ms": empty,
        "day_only_ms": times["day"],
        "full_ms": times["older"],
        "ratio": ratios,
        "ratio_to_day_only": history_cost,
        "seed_s": round(seeded),
    }


def settings_for(data_dir: Any, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        admin_token=SecretStr(ADMIN_TOKEN),
        allow_private_networks=True,
        **extra,
    )


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.size, args.requests = min(args.size, 200_000), min(args.requests, 10)
    found: dict[str, dict[str, Any]] = {}
    if not args.no_sqlite:
        data_dir = temp_dir("dashboard-sqlite")
        try:
            found["sqlite"] = await measure(settings_for(data_dir), args, "sqlite")
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.postgres:
        import pg_bench

        data_dir = temp_dir("dashboard-pg")
        try:
            await pg_bench.fresh_database(data_dir)
            settings = settings_for(data_dir, database_url=pg_bench.URL)
            found["postgres"] = await measure(settings, args, "postgres")
        finally:
            await pg_bench.drop_database()
            shutil.rmtree(data_dir, ignore_errors=True)
    worst = max(r for measured in found.values() for r in measured["ratio"].values())
    context: dict[str, Any] = {"deliveries": args.size, "requests_per_page": args.requests}
    for database, measured in found.items():
        for key in ("empty_ms", "day_only_ms", "full_ms", "ratio", "ratio_to_day_only"):
            context[f"{database}_{key}"] = {k: round(v, 2) for k, v in measured[key].items()}
        context[f"{database}_seed_s"] = measured["seed_s"]
    return Result(
        key="dashboard",
        title=f"Dashboard pages with {args.size:,} deliveries ÷ on an empty database",
        ratio=worst,
        goal="<= 3",
        baseline="the same page on a database with one endpoint and no deliveries (worst page)",
        context=context,
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--day", type=int, help="deliveries made in the last 24 hours (default: 5%% of --size)"
    )
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
