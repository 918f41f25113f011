"""`POST /users` on `hookline serve` (SQLite) with one subscriber that answers in 50 ms.

The original in-memory service answered 17.6 registrations/s in this shape (it posted to the
receiver before answering); the goal is 20 times that, 360/s, with every registration
delivered. Load: `wrk`, `--connections` in flight, each request a new username (a Lua
counter); a warm-up round is not counted. After the load, the benchmark waits until the sink
has every registration (the worker keeps up or drains after) and reports how long that took:
the one endpoint gets 4 attempts at a time (the default per-endpoint cap), 80 deliveries/s at
50 ms each, so a 10 s load at ~2,000 registrations/s drains for minutes (`--seconds 5` halves it).

    .venv/bin/python bench/serve_registrations.py [--seconds 10] [--connections 16]
"""

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from _common import Api, Hookline, Result, Sink, parse_args, run

ORIGINAL_PER_S = 17.6
# Half the endpoint's most (4 attempts in flight, 50 ms each: 80/s): how long to wait for the rest.
DRAIN_PER_S_AT_LEAST = 40


def script(prefix: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(
            "local n = 0\n"
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            "request = function()\n"
            "  n = n + 1\n"
            f"  return wrk.format(nil, nil, nil, '{{\"username\": \"{prefix}' .. n .. '\"}}')\n"
            "end\n"
        )
    return file.name


async def wrk(url: str, prefix: str, seconds: float, connections: int) -> tuple[float, int]:
    path = script(prefix)
    try:
        proc = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "-s",
            path,
            url,
            stdout=asyncio.subprocess.PIPE,
        )
        out = (await proc.communicate())[0].decode()
    finally:
        os.remove(path)
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return per_s, int(bad.group(1)) if bad else 0


async def main(args: argparse.Namespace) -> Result:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-reg-"))
    serve = Hookline("serve", data_dir=data_dir)
    try:
        async with Sink() as sink:
            await serve.start()
            client = Api(serve.base)
            try:
                await client.subscribe("user_registered", sink.url(0, slow=True))
            finally:
                await client.close()
            await wrk(f"{serve.base}/users", "warm", 2, args.connections)
            per_s, bad = await wrk(f"{serve.base}/users", "u", args.seconds, args.connections)
            assert bad == 0, f"{bad} registrations were not answered 201"
            with sqlite3.connect(data_dir / "hookline.db") as db:
                users = db.execute("SELECT count(*) FROM users").fetchone()[0]
            began = time.monotonic()
            # The one endpoint takes at most `worker_per_endpoint` (4) attempts at a time, each
            # 50 ms: 80 deliveries/s. Registrations come faster, and the rest drains after.
            stats = await sink.wait_count(users, limit=60 + users / DRAIN_PER_S_AT_LEAST)
            drained_after = time.monotonic() - began
    finally:
        serve.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{per_s:.0f} registrations/s; all {users} delivered {drained_after:.1f} s after")
    return Result(
        key="serve_registrations",
        title="POST /users on hookline serve, 1 subscriber answering in 50 ms ÷ the original",
        ratio=per_s / ORIGINAL_PER_S,
        goal=">= 20",
        baseline=f"the original service's {ORIGINAL_PER_S}/s in this shape (measured before)",
        context={
            "load": f"wrk, {args.connections} connections, {args.seconds:g} s",
            "registrations_per_s": round(per_s),
            "registered_and_delivered": users,
            "seconds_to_deliver_all_after_the_load": round(drained_after, 1),
            "sink_count": stats.get("count"),
        },
        plot={},
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
