"""P2: `POST /users/messages` req/s through `hookline api` ÷ a bare FastAPI endpoint (goal >= 0.5).

hookline: `hookline api` (the API alone: no worker in the process, so delivery does not
compete for its CPU; the deliveries pile up in the outbox) on a fresh SQLite data dir, rate
limit off, with 3 endpoints (sink paths) subscribed to `user_send_message`, so every request
writes a message, an event and 3 deliveries in one transaction. The caller is alice with her
own token, sending to bob. Baseline: bench/_bare_app.py, one trivial JSON POST route in the
same uvicorn configuration (uvloop, httptools, no access log). Both are one process.

Load: `wrk` (C; `apt-get install wrk`) with `--connections` in flight on one thread, a
warm-up then `--seconds` measured, bare and hookline alternated for `--rounds` rounds; the
ratio is of the means. Without wrk an aiohttp client with the same in-flight count is used.

    .venv/bin/python bench/p2_api_messages.py [--quick] [--seconds 8] [--rounds 2]
        [--connections 32]
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

import aiohttp
from _common import (
    PYTHON,
    REPO,
    Api,
    Hookline,
    Profile,
    Result,
    Sink,
    free_port,
    mean,
    parse_args,
    run,
)

BODY = '{"sender": "alice", "recipient": "bob", "subject": "hi", "message": "hello, bob"}'


def wrk_script(token: str) -> str:
    """A wrk Lua script that POSTs BODY as `token`; the caller removes the file."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = '{BODY}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    return script.name


async def wrk(url: str, token: str, seconds: float, connections: int) -> tuple[float, int, str]:
    """(requests/s, non-2xx answers, latency line) from wrk."""
    script = wrk_script(token)
    try:
        proc = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            script,
            url,
            stdout=asyncio.subprocess.PIPE,
        )
        out = (await proc.communicate())[0].decode()
    finally:
        os.remove(script)
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return (
        per_s,
        int(bad.group(1)) if bad else 0,
        (f"avg {latency.group(1)}, max {latency.group(3)}" if latency else "")
        + (f"; {errors.group(0)}" if errors else ""),
    )


async def aiohttp_load(
    url: str, token: str, seconds: float, connections: int
) -> tuple[float, int, str]:
    """The fallback load generator: `connections` clients posting in a closed loop."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done = bad = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done, bad
            while time.perf_counter() < deadline:
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    done += 1
                    bad += response.status >= 300

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(connections)))
        return done / (time.perf_counter() - started), bad, "aiohttp closed loop"


async def load(url: str, token: str, seconds: float, connections: int) -> tuple[float, int, str]:
    generate = wrk if shutil.which("wrk") else aiohttp_load
    await generate(url, token, min(2.0, seconds), connections)  # warm-up, not counted
    return await generate(url, token, seconds, connections)


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.seconds, args.rounds = 4.0, 1
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-p2-"))
    bare_port = free_port()
    bare = Hookline(
        "bare",
        data_dir=data_dir,
        port=bare_port,
        argv=[PYTHON, str(REPO / "bench" / "_bare_app.py"), str(bare_port)],
    )
    api = Hookline("api", data_dir=data_dir)
    hook_rates: list[float] = []
    bare_rates: list[float] = []
    details: list[str] = []
    try:
        async with Sink() as sink:
            await api.start()
            await bare.start()
            client = Api(api.base)
            try:
                for n in range(3):
                    await client.subscribe("user_send_message", sink.url(n))
                token = (await client.post("/users", {"username": "alice"}))["token"]
                await client.post("/users", {"username": "bob"})
            finally:
                await client.close()
            for _ in range(args.rounds):
                per_s, bad, info = await load(
                    f"{bare.base}/users/messages", token, args.seconds, args.connections
                )
                assert bad == 0, f"bare app: {bad} non-2xx answers"
                bare_rates.append(per_s)
                details.append(f"bare {per_s:.0f}/s ({info})")
                per_s, bad, info = await load(
                    f"{api.base}/users/messages", token, args.seconds, args.connections
                )
                assert bad == 0, f"hookline api: {bad} non-2xx answers"
                hook_rates.append(per_s)
                details.append(f"hookline {per_s:.0f}/s ({info})")
            # Not counted: once more with the API process profiled (CPU; py-spy if installed).
            async with Profile(api.pid) as profiled:
                await load(f"{api.base}/users/messages", token, 5.0, args.connections)
        api.stop()
        bare.stop()
        with sqlite3.connect(data_dir / "hookline.db") as db:
            messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
            deliveries = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        assert deliveries == 3 * messages, (messages, deliveries)
    finally:
        api.stop()
        bare.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    for line in details:
        print(line)
    return Result(
        key="p2",
        title="P2 POST /users/messages req/s (hookline api, 3 endpoints) ÷ bare FastAPI",
        ratio=mean(hook_rates) / mean(bare_rates),
        goal=">= 0.5",
        baseline="bare FastAPI JSON POST route, same uvicorn settings and load",
        context={
            "load": f"{'wrk' if shutil.which('wrk') else 'aiohttp'}, {args.connections}"
            f" connections, {args.seconds:g} s x {args.rounds} round(s) each",
            "hookline_api_req_per_s": [round(r) for r in hook_rates],
            "bare_fastapi_req_per_s": [round(r) for r in bare_rates],
            "messages_written": messages,
            "deliveries_written": deliveries,
            "api_profile_under_load (extra run, not counted)": profiled.summary,
        },
        plot={
            "bars": {
                "bare FastAPI route": mean(bare_rates),
                "hookline api\nPOST /users/messages": mean(hook_rates),
            },
            "ylabel": "requests/s",
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
