"""P1: deliveries/s of `hookline serve` on SQLite ÷ a raw aiohttp client (goal >= 0.5).

`hookline serve` runs as a real process (fresh data dir, private networks allowed, rate limit
and ping-on-create off, admin token from the environment). `--endpoints` sink paths are
subscribed to `user_registered` through the API, so the worker's per-endpoint cap (4) times
the endpoints fills its 64 slots, and the baseline gets the same number in flight.

The events are made through the real API *before* the clock: `hookline api` (no worker)
registers `--events` users on the data dir and stops; then `hookline serve` starts on it and
drains the backlog. Deliveries/s is measured at the sink from the first delivery's arrival to
the last's, for hookline and for the baseline alike, so process start-up, migrations and the
event generation are outside the clock. The baseline posts the very same bodies (read back
from the database), signed, with the same number in flight, from this process (as many passes
over them as make at least 20,000 POSTs, so that it lasts seconds, not a fraction of one).
hookline's drain is as long: 1,500 events x 16 endpoints, 24,000 deliveries (with 500 events,
as until December 2026, its 8,000 lasted about a second, the start-up of the worker, its first
claims and each endpoint's first attempt alone, weighed more, and the three runs of one
invocation spread by up to 20%). The runs alternate hookline, baseline, hookline, baseline,
hookline; the ratio is of the means.

As context, a "live" run: users registered through `serve` while it delivers (8 clients in
flight), deliveries/s from the first arrival to the last.

    .venv/bin/python bench/p1_serve_delivery.py [--quick] [--events 1500] [--endpoints 16]
"""

import argparse
import asyncio
import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from _common import (
    Api,
    Hookline,
    Profile,
    Result,
    Sink,
    cpu_seconds,
    mean,
    parse_args,
    post_signed,
    rate,
    run,
    temp_dir,
)

from hookline.delivery import envelope, signing


def stored_bodies(data_dir) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The bodies the receivers get, rendered from the events in the database."""
    with sqlite3.connect(data_dir / "hookline.db") as db:
        rows = db.execute("SELECT id, event, payload, created_at FROM events").fetchall()
    return [
        envelope.render(
            event_id=event_id,
            event=event,
            created_at=datetime.fromisoformat(created).replace(tzinfo=UTC),
            data=json.loads(payload),
        )
        for event_id, event, payload, created in rows
    ]


BASELINE_POSTS = 20_000


async def raw_client(
    sink: Sink, urls: list[str], bodies: list[bytes], in_flight: int
) -> tuple[float, float]:
    """The baseline: the same signed POSTs straight from aiohttp; (deliveries/s at the sink,
    CPU ms of this process per POST)."""
    secret = signing.generate_secret()
    # Enough passes over the bodies for a run of a few seconds: a short one is all noise here.
    passes = max(1, -(-BASELINE_POSTS // (len(bodies) * len(urls))))
    queue = [(url, body) for _ in range(passes) for body in reversed(bodies) for url in urls]
    total = len(queue)
    await sink.reset()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        cpu = time.process_time()
        await asyncio.gather(*(post_signed(session, queue, secret) for _ in range(in_flight)))
        cpu = time.process_time() - cpu
    return rate(total, await sink.wait_count(total)), 1000 * cpu / total


async def backlog_run(
    sink: Sink, args: argparse.Namespace, *, profile: bool = False
) -> tuple[float, list[bytes], dict[str, Any]]:
    """Make the events through `hookline api`, then time `hookline serve` draining them."""
    data_dir = temp_dir("p1")
    try:
        api = Hookline("api", data_dir=data_dir)
        await api.start()
        client = Api(api.base)
        try:
            for n in range(args.endpoints):
                await client.subscribe("user_registered", sink.url(n))
            began = time.perf_counter()
            await client.register_users([f"user{n}" for n in range(args.events)])
            made = time.perf_counter() - began
        finally:
            await client.close()
        api.stop()
        bodies = stored_bodies(data_dir)
        total = len(bodies) * args.endpoints
        await sink.reset()
        serve = Hookline("serve", data_dir=data_dir, port=api.port)
        began = time.perf_counter()
        await serve.start()
        started = time.perf_counter() - began
        info: dict[str, Any] = {"api_users_per_s": len(bodies) / made, "serve_start_s": started}
        try:
            cpu = cpu_seconds(serve.pid)
            if profile:
                async with Profile(serve.pid) as profiled:
                    stats = await sink.wait_count(total)
                info["profile"] = profiled.summary
            else:
                stats = await sink.wait_count(total)
            # From health to the last delivery (so a little more than the drain's own CPU).
            info["cpu_ms_per_delivery"] = 1000 * (cpu_seconds(serve.pid) - cpu) / total
        finally:
            serve.stop()
        return rate(total, stats), bodies, info
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def live_run(sink: Sink, args: argparse.Namespace) -> float:
    """Register users through `serve` while it delivers; deliveries/s first to last arrival."""
    data_dir = temp_dir("p1-live")
    try:
        serve = Hookline("serve", data_dir=data_dir)
        await serve.start()
        client = Api(serve.base)
        try:
            for n in range(args.endpoints):
                await client.subscribe("user_registered", sink.url(n))
            await sink.reset()
            await client.register_users([f"user{n}" for n in range(args.events)])
            stats = await sink.wait_count(args.events * args.endpoints)
        finally:
            await client.close()
            serve.stop()
        return rate(args.events * args.endpoints, stats)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.events = min(args.events, 150)
    in_flight = min(64, 4 * args.endpoints)  # the worker's defaults: 64 slots, 4 per endpoint
    async with Sink() as sink:
        urls = [sink.url(n) for n in range(args.endpoints)]
        measured, bodies, info = await backlog_run(sink, args)
        raw = [await raw_client(sink, urls, bodies, in_flight)]
        measured_2, _, info_2 = await backlog_run(sink, args)
        raw.append(await raw_client(sink, urls, bodies, in_flight))
        measured_3, _, info_3 = await backlog_run(sink, args)
        baselines = [r[0] for r in raw]
        live = await live_run(sink, args)
        # Not timed: once more with the serve process profiled (CPU use; py-spy if installed).
        profile = (await backlog_run(sink, args, profile=True))[2]["profile"]
    hookline = mean([measured, measured_2, measured_3])
    baseline = mean(baselines)
    total = len(bodies) * args.endpoints
    return Result(
        key="p1",
        title="P1 hookline serve (SQLite) deliveries/s ÷ raw aiohttp client",
        ratio=hookline / baseline,
        goal=">= 0.5",
        baseline="raw aiohttp client, same bodies, sink and in-flight count",
        context={
            "deliveries": f"{total} ({len(bodies)} events x {args.endpoints} endpoints)",
            "in_flight": in_flight,
            "serve_deliveries_per_s": [round(m) for m in (measured, measured_2, measured_3)],
            "raw_client_per_s": [round(b) for b in baselines],
            "cpu_ms_per_delivery": {
                "serve process": round(
                    mean([i["cpu_ms_per_delivery"] for i in (info, info_2, info_3)]), 3
                ),
                "raw client": round(mean([r[1] for r in raw]), 3),
            },
            "serve_live_deliveries_per_s": round(live),
            "api_post_users_per_s_while_generating": round(info["api_users_per_s"]),
            "serve_profile_while_draining (extra run, not timed)": profile,
        },
        plot={
            "bars": {
                "raw aiohttp client": baseline,
                "hookline serve\n(backlog drain)": hookline,
                "hookline serve\n(live, API busy too)": live,
            },
            "ylabel": "deliveries/s",
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--endpoints", type=int, default=16)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
