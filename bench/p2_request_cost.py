"""P2's diagnostic: CPU per `POST /users/messages` request in `hookline api`, thread by thread.

P2's set-up (bench/p2_api_messages.py): `hookline api` on a fresh SQLite data dir, rate limit
off, 3 endpoints subscribed to `user_send_message`, alice sending to bob with her own token,
and the bare FastAPI route (bench/_bare_app.py) as the baseline. Load: wrk, one thread,
`--connections` in flight (a closed loop), `--seconds` a window after a warm-up.

CPU per request is each thread's CPU time over the window (/proc/PID/task/TID/stat) ÷ the
requests wrk counted: the event loop's thread (uvicorn, FastAPI, auth, the route, the
hand-off) and the SQLite writer's (the units, in group commits), apart. CPU time per request
is steadier on a shared machine than requests per second: it does not count the time a
thread waits for the CPU. The ratio printed is the bare route's CPU per request ÷ hookline's,
what P2 would be if both were bound by their process's CPU alone.

`--profile` also samples the API (py-spy, `.venv/bin/pip install py-spy`) over one more
window and prints, for each of the two threads, the functions with the most samples: where
the sample was (self) and what was on the stack (inclusive).

    .venv/bin/python bench/p2_request_cost.py [--seconds 6] [--rounds 2] [--profile]
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import (
    PYTHON,
    REPO,
    Api,
    Hookline,
    Result,
    Sink,
    free_port,
    mean,
    parse_args,
    py_spy,
    run,
)
from p2_api_messages import wrk_script

HZ = os.sysconf("SC_CLK_TCK")


def thread_ticks(pid: int) -> dict[int, int]:
    """CPU ticks (user + system) of each thread of `pid`, by thread id."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        found[int(task.name)] = int(fields[11]) + int(fields[12])
    return found


def thread_names(pid: int) -> dict[int, str]:
    """Python's names of the threads (py-spy dump), by thread id; empty without py-spy."""
    spy = py_spy()
    if spy is None:
        return {}
    out = subprocess.run(
        [spy, "dump", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True
    ).stdout
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+\): "(.*)"', out)}


async def wrk(url: str, token: str, seconds: float, connections: int) -> int:
    """Requests answered (wrk, closed loop); asserts every answer was 2xx."""
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
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    assert bad is None, f"{url}: {bad.group(1)} non-2xx answers"
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


async def cost(
    pid: int, url: str, token: str, seconds: float, connections: int
) -> dict[int, float]:
    """CPU ms per request of each thread of `pid` over one window of load."""
    await wrk(url, token, 2.0, connections)  # warm-up, not counted
    before = thread_ticks(pid)
    requests = await wrk(url, token, seconds, connections)
    after = thread_ticks(pid)
    return {
        tid: 1000 * (after[tid] - before.get(tid, 0)) / HZ / requests
        for tid in after
        if after[tid] > before.get(tid, 0)
    } | {0: requests / seconds}


def read_profile(path: Path) -> dict[str, tuple[int, dict[str, int], dict[str, int]]]:
    """From py-spy's raw output: by thread name, (samples, self counts, inclusive counts)."""
    threads: dict[str, tuple[list[int], dict[str, int], dict[str, int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        head, *frames = stack.split(";")
        name = head.split(": ", 1)[-1]
        total, own, inclusive = threads.setdefault(name, ([0], {}, {}))
        n = int(count)
        total[0] += n
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    return {name: (t[0], own, inc) for name, (t, own, inc) in threads.items()}


def _record(spy: str, pid: int, out: Path, gil: bool) -> subprocess.Popen[bytes]:
    """py-spy sampling every thread of `pid` into `out` (raw) until sent SIGINT."""
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--threads", "--format", "raw", "--nonblocking"]
        + ["--rate", "250", "-o", str(out)]
        + (["--gil"] if gil else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def profile(
    pid: int, url: str, token: str, connections: int, top: int, keep: Path | None, gil: bool
) -> list[str]:
    spy = py_spy()
    if spy is None:
        return ["no py-spy: `.venv/bin/pip install py-spy`"]
    out = keep or Path(tempfile.mkstemp(suffix=".pyspy")[1])
    recorder = _record(spy, pid, out, gil)
    await asyncio.sleep(0.5)
    requests = await wrk(url, token, 6.0, connections)
    recorder.send_signal(2)
    await asyncio.to_thread(recorder.wait, 30)
    lines = [f"py-spy{' --gil' if gil else ''}: {requests} requests in 6 s, 250 samples/s"]
    for name, (samples, own, inclusive) in read_profile(out).items():
        if samples < 50:
            continue
        lines.append(f"-- thread {name}: {samples} samples ({samples / 1500:.0%} of the time)")
        for title, counts in (("self", own), ("inclusive", inclusive)):
            lines.append(f"   {title}:")
            for frame, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
                lines.append(f"   {100 * n / samples:5.1f}%  {frame}")
    if keep is None:
        out.unlink(missing_ok=True)
    return lines


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.seconds, args.rounds = 4.0, 1
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-p2cost-"))
    bare_port = free_port()
    bare = Hookline(
        "bare",
        data_dir=data_dir,
        port=bare_port,
        argv=[PYTHON, str(REPO / "bench" / "_bare_app.py"), str(bare_port)],
    )
    api = Hookline("api", data_dir=data_dir)
    loop_ms: list[float] = []
    writer_ms: list[float] = []
    other_ms: list[float] = []
    bare_ms: list[float] = []
    rates: list[str] = []
    lines: list[str] = []
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
            hook_url, bare_url = f"{api.base}/users/messages", f"{bare.base}/users/messages"
            names = thread_names(api.pid)
            for _ in range(args.rounds):
                found = await cost(bare.pid, bare_url, token, args.seconds, args.connections)
                bare_rate = found.pop(0)
                bare_ms.append(sum(found.values()))
                found = await cost(api.pid, hook_url, token, args.seconds, args.connections)
                rate = found.pop(0)
                loop_ms.append(found.pop(api.pid, 0.0))
                writer = [t for t, name in names.items() if name == "hookline-writer"]
                busiest = max(found, key=found.__getitem__, default=None)
                writer_tid = writer[0] if writer else busiest
                writer_ms.append(found.pop(writer_tid, 0.0) if writer_tid else 0.0)
                other_ms.append(sum(found.values()))
                rates.append(f"bare {bare_rate:.0f}/s, hookline {rate:.0f}/s")
            if args.profile:
                lines = await profile(
                    api.pid, hook_url, token, args.connections, args.top, args.raw, args.gil
                )
    finally:
        api.stop()
        bare.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    for line in lines:
        print(line)
    total = [a + b + c for a, b, c in zip(loop_ms, writer_ms, other_ms, strict=True)]
    return Result(
        key="p2_cost",
        title="P2's CPU per POST /users/messages request (hookline api, 3 endpoints), by thread",
        ratio=mean(bare_ms) / mean(total),
        goal="",
        baseline="the bare FastAPI route's CPU per request ÷ hookline's",
        context={
            "load": f"wrk, {args.connections} connections, {args.seconds:g} s x {args.rounds}",
            "throughput": rates,
            "hookline_cpu_ms_per_request": [round(t, 3) for t in total],
            "event_loop_thread_ms": [round(t, 3) for t in loop_ms],
            "sqlite_writer_thread_ms": [round(t, 3) for t in writer_ms],
            "other_threads_ms": [round(t, 3) for t in other_ms],
            "bare_cpu_ms_per_request": [round(t, 3) for t in bare_ms],
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="sample the API with py-spy")
    parser.add_argument("--top", type=int, default=25, help="functions listed per thread")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples in this file")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
