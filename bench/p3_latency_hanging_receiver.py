"""P3: p99 latency of `POST /users` with a hanging receiver ÷ with none subscribed (goal <= 1.2).

Two `hookline serve` processes (SQLite, fresh data dirs, worker running, defaults otherwise:
per-endpoint cap 4, delivery timeout 15 s). In one, nothing is subscribed; in the other, a
sink path that reads the request and never answers is subscribed to `user_registered`, so
every registration adds a delivery that the worker cannot finish: 4 attempts hang until
their timeout, the rest wait due in the queue, and the backlog grows all run long.

Load: open loop (a request is started every 1/`--rate` s whatever the answers, so a slow
answer does not hide the ones behind it), unique usernames, from an aiohttp client in this
process. Latency is from when a request was due to its answer. The two servers take turns,
`--seconds` each, for `--rounds` rounds (short turns, so that the other engineers' load on
this machine falls on both alike); all samples of a condition are pooled.

`--backlog N` first queues N due deliveries for the hanging endpoint (plain sqlite3, serve
stopped), as if the receiver had been hanging for a while before the run.

    .venv/bin/python bench/p3_latency_hanging_receiver.py [--quick] [--rate 60]
        [--seconds 2.5] [--rounds 8] [--backlog 0]
"""

import argparse
import itertools
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    Api,
    Hookline,
    Profile,
    Result,
    Sink,
    open_loop,
    parse_args,
    percentile,
    run,
    temp_dir,
)

_names = itertools.count()


async def phase(server: Hookline, rate_per_s: float, seconds: float) -> list[float]:
    client = Api(server.base)
    tag = server.port

    async def register(_i: int) -> None:
        await client.post("/users", {"username": f"u{tag}-{next(_names)}"})

    try:
        return await open_loop(register, per_second=rate_per_s, seconds=seconds)
    finally:
        await client.close()


def prefill(db_path: Path, endpoint_id: str, count: int) -> None:
    """`count` due deliveries (and their events) for the endpoint, older than any the run adds:
    as if the receiver had been hanging for a while. Plain sqlite3, while serve is stopped."""
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    base = datetime.now(UTC) - timedelta(hours=1)
    events, deliveries = [], []
    for n in range(count):
        at = (base + timedelta(microseconds=n)).strftime(stamp)
        payload = json.dumps({"id": f"usr_bl{n}", "username": f"backlog{n}"})
        events.append((f"evt_bl{n:022d}", "user_registered", payload, at))
        deliveries.append((f"dlv_bl{n:022d}", f"evt_bl{n:022d}", endpoint_id, at, at))
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (id, event, payload, created_at) VALUES (?, ?, ?, ?)", events
        )
        db.executemany(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts_made,"
            " next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
            deliveries,
        )
        db.execute("COMMIT")
    finally:
        db.close()


def summary(values: list[float]) -> dict[str, float]:
    return {f"p{q:g}": round(1000 * percentile(values, q), 2) for q in (50, 90, 99, 99.9, 100)}


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.seconds, args.rounds = 2.5, 3
    quiet_dir, hang_dir = temp_dir("p3-none"), temp_dir("p3-hang")
    quiet = Hookline("serve", data_dir=quiet_dir)
    hanging = Hookline("serve", data_dir=hang_dir)
    samples: dict[str, list[float]] = {"none": [], "hang": []}
    per_round: dict[str, list[float]] = {"none": [], "hang": []}
    try:
        async with Sink() as sink:
            await quiet.start()
            await hanging.start()
            admin = Api(hanging.base)
            try:
                endpoint_id = await admin.subscribe("user_registered", sink.url(0, hang=True))
            finally:
                await admin.close()
            if args.backlog:
                hanging.stop()
                prefill(hang_dir / "hookline.db", endpoint_id, args.backlog)
                await hanging.start()
            await phase(quiet, args.rate, 1.0)  # warm-up, not counted
            await phase(hanging, args.rate, 1.0)
            for _ in range(args.rounds):
                for name, server in (("none", quiet), ("hang", hanging)):
                    got = await phase(server, args.rate, args.seconds)
                    samples[name] += got
                    per_round[name].append(round(1000 * percentile(got, 99), 1))
            # Not counted: the hanging one once more, profiled (CPU; py-spy if installed).
            async with Profile(hanging.pid) as profiled_hang:
                await phase(hanging, args.rate, 4.0)
            async with Profile(quiet.pid) as profiled_quiet:
                await phase(quiet, args.rate, 4.0)
            hung = (await sink.stats())["hung"]
            await sink.release()
    finally:
        quiet.stop()
        hanging.stop()
        shutil.rmtree(quiet_dir, ignore_errors=True)
        shutil.rmtree(hang_dir, ignore_errors=True)
    p99 = {name: percentile(values, 99) for name, values in samples.items()}
    return Result(
        key="p3",
        title="P3 POST /users p99 latency, hanging receiver subscribed ÷ none subscribed"
        + (f" (hanging one's backlog {args.backlog:,})" if args.backlog else ""),
        ratio=p99["hang"] / p99["none"],
        goal="<= 1.2",
        baseline="the same load on a serve with no endpoint subscribed",
        context={
            "load": f"open loop {args.rate:g} req/s, {args.seconds:g} s x {args.rounds}"
            " round(s) per condition",
            "requests_per_condition": len(samples["none"]),
            "backlog_queued_for_hanging_endpoint_before_run": args.backlog,
            "no_receiver_ms": summary(samples["none"]),
            "hanging_receiver_ms": summary(samples["hang"]),
            "p99_ms_per_round (none / hanging)": [
                f"{a:g} / {b:g}" for a, b in zip(per_round["none"], per_round["hang"], strict=True)
            ],
            "requests_held_by_sink_at_end": hung,
            "profile_hanging (extra 4 s, not counted)": profiled_hang.summary,
            "profile_none (extra 4 s, not counted)": profiled_quiet.summary,
        },
        plot={
            "latency_ms": {
                "no receiver subscribed": [1000 * v for v in samples["none"]],
                "hanging receiver subscribed": [1000 * v for v in samples["hang"]],
            }
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--backlog", type=int, default=0, help="due deliveries queued for the hanging endpoint"
    )


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
