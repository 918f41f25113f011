"""What the benchmark scripts share: the sink, real `hookline` processes, load, results.

Not a benchmark itself. Every script measures its subject and its baseline in the same run,
against the same sink, because this 2-core machine is noisy and shared: the ratio is the
result, the absolute numbers are context.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import uvloop

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.delivery import signing
from hookline.models import utcnow
from hookline.store import Store, open_store, outbox, units
from hookline.store.sql import sql

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ADMIN_TOKEN = "hl_admin_bench-token-not-a-secret"
PG_SERVER = os.environ.get("HOOKLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
PG_DATABASE = "hookline_bench"  # made and dropped by the PostgreSQL benchmarks; never `test`

# The receiver every benchmark posts to: a bare aiohttp app in its own process (on uvloop, so
# it costs as little CPU as it can). POST /hook/{n} answers 204 at once, POST /slow/{n} after
# 50 ms; POST /hang/{n} holds
# the request until POST /release (then answers 503). GET /stats counts the answered hooks
# and their first and last arrival (time.time(), in the sink); with /reset?log=1 it also
# keeps (arrival, webhook-id, data.username) of each, for latency.
SINK = r"""
import asyncio, json, sys, time
import uvloop
from aiohttp import web

state = {"count": 0, "first": None, "last": None, "log": None, "hung": 0}
release = asyncio.Event()

async def hook(request):
    body = await request.read()
    now = time.time()
    state["count"] += 1
    if state["first"] is None:
        state["first"] = now
    state["last"] = now
    if state["log"] is not None:
        data = json.loads(body).get("data") or {}
        state["log"].append((now, request.headers.get("webhook-id"), data.get("username")))
    return web.Response(status=204)

async def slow(request):
    await asyncio.sleep(0.05)  # a receiver that takes 50 ms to answer
    return await hook(request)

async def hang(request):
    await request.read()
    state["hung"] += 1
    try:
        await release.wait()
    finally:
        state["hung"] -= 1
    return web.Response(status=503)

async def do_release(request):
    release.set()
    await asyncio.sleep(0.2)
    release.clear()
    return web.json_response({"ok": True})

async def stats(request):
    return web.json_response(
        {k: state[k] for k in ("count", "first", "last", "hung")}
    )

async def reset(request):
    state.update(count=0, first=None, last=None)
    state["log"] = [] if request.query.get("log") else None
    return web.json_response({"ok": True})

async def log(request):
    return web.json_response(state["log"] or [])

async def main():
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/hook/{n}", hook)
    app.router.add_post("/hang/{n}", hang)
    app.router.add_post("/slow/{n}", slow)
    app.router.add_post("/release", do_release)
    app.router.add_post("/reset", reset)
    app.router.add_get("/stats", stats)
    app.router.add_get("/log", log)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), backlog=1024).start()
    await asyncio.Event().wait()

uvloop.run(main())
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """`argv` under `taskset -c cpus` when asked and possible."""
    if cpus is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", cpus, *argv]


class Sink:
    """The receiver process; `async with Sink() as sink:` starts it and waits until it answers."""

    def __init__(self, *, cpus: str | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._cpus = cpus
        self._proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    def url(self, n: int = 0, *, hang: bool = False, slow: bool = False) -> str:
        kind = "hang" if hang else "slow" if slow else "hook"
        return f"{self.base}/{kind}/{n}"

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(pinned([PYTHON, "-c", SINK, str(self.port)], self._cpus))

    async def __aenter__(self) -> "Sink":
        self._spawn()
        self._session = aiohttp.ClientSession()
        for _ in range(200):
            try:
                await self.stats()
                return self
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        raise RuntimeError("the sink did not start")

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def stats(self) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(f"{self.base}/stats") as response:
            stats: dict[str, Any] = await response.json()
            return stats

    async def reset(self, *, log: bool = False) -> None:
        assert self._session is not None
        async with self._session.post(f"{self.base}/reset", params={"log": "1" if log else ""}):
            pass

    async def release(self) -> None:
        """Answer every hanging request now (503)."""
        assert self._session is not None
        async with self._session.post(f"{self.base}/release"):
            pass

    async def log(self) -> list[tuple[float, str, str | None]]:
        assert self._session is not None
        async with self._session.get(f"{self.base}/log") as response:
            return [tuple(row) for row in await response.json()]  # type: ignore[misc]

    async def wait_count(self, total: int, *, limit: float = 300) -> dict[str, Any]:
        """Wait until the sink has answered `total` hooks since the last reset."""
        started = time.monotonic()
        while True:
            stats = await self.stats()
            if stats["count"] >= total:
                return stats
            if time.monotonic() - started > limit:
                raise RuntimeError(f"the sink got {stats['count']} of {total} in {limit} s")
            await asyncio.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hookline_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked `hookline` process: no HOOKLINE_* leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        HOOKLINE_DATA_DIR=str(data_dir),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_PING_ON_CREATE="false",
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
        HOOKLINE_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    env.update(extra)
    return env


class Hookline:
    """`python -m hookline <command>` as a real process, its output in a log file."""

    def __init__(
        self,
        command: str,
        *,
        data_dir: Path,
        port: int | None = None,
        cpus: str | None = None,
        argv: list[str] | None = None,
        **env: str,
    ) -> None:
        self.command = command
        self.data_dir = data_dir
        self.port = port if port is not None else free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = hookline_env(data_dir, self.port, **env)
        self.argv = pinned(argv or [PYTHON, "-m", "hookline", command], cpus)
        self.log_path = data_dir / f"hookline-{command}-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.data_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def start(self, *, limit: float = 60) -> None:
        """Spawn and wait until GET /health answers 200 (for `serve` and `api`)."""
        self.spawn()
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession() as session:
            while True:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RuntimeError(f"hookline {self.command} exited:\n{self.log_text()}")
                try:
                    async with session.get(f"{self.base}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hookline {self.command} did not become healthy")
                await asyncio.sleep(0.05)

    def stop(self, *, limit: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after `limit` seconds; the exit code."""
        code = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                code = self._proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the process in KiB."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields["VmRSS"], fields["VmHWM"]


class Api:
    """A client of a running hookline API, as the admin."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(
            base_url=base,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            connector=aiohttp.TCPConnector(limit=0),
        )

    async def close(self) -> None:
        await self.session.close()

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        async with self.session.post(path, json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json()
            if response.status >= 300:
                raise RuntimeError(f"POST {path}: {response.status} {answer}")
            return answer

    async def subscribe(self, event: str, url: str) -> str:
        return str((await self.post("/webhook", {"event": event, "url": url}))["id"])

    async def register_users(self, names: Sequence[str], *, in_flight: int = 8) -> None:
        queue = list(reversed(names))

        async def one() -> None:
            while queue:
                await self.post("/users", {"username": queue.pop()})

        await asyncio.gather(*(one() for _ in range(in_flight)))


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"hookline-bench-{prefix}-"))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rate(count: int, stats: dict[str, Any]) -> float:
    """Deliveries per second from the first arrival to the last (count - 1 intervals)."""
    span = stats["last"] - stats["first"]
    return (count - 1) / span if span > 0 else float("nan")


async def open_loop(
    send: Callable[[int], Awaitable[None]], *, per_second: float, seconds: float
) -> list[float]:
    """Start send(i) at a fixed rate whatever the answers (no coordinated omission).

    Returns each call's latency in seconds, from when it was due to when it returned.
    """
    total = int(per_second * seconds)
    latencies: list[float] = [0.0] * total
    started = time.perf_counter()

    async def one(i: int, due: float) -> None:
        await send(i)
        latencies[i] = time.perf_counter() - due

    tasks = []
    for i in range(total):
        due = started + i / per_second
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return latencies


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Result:
    """One benchmark's outcome, printed and (with --json) written for run_all.py."""

    key: str
    title: str
    ratio: float
    goal: str  # e.g. ">= 0.5"; "" when the question sets none
    baseline: str  # what the ratio divides by
    context: dict[str, Any] = field(default_factory=dict)  # absolute numbers
    plot: dict[str, Any] = field(default_factory=dict)  # data for run_all's plot
    notes: list[str] = field(default_factory=list)
    command: str = ""

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        op, _, value = self.goal.partition(" ")
        target = float(value)
        return self.ratio >= target if op == ">=" else self.ratio <= target


def parse_args(doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None):  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short run (noisier)")
    parser.add_argument("--json", type=Path, help="also write the result here (for run_all.py)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def run(main: Callable[[argparse.Namespace], Awaitable[Result]], args: argparse.Namespace) -> None:
    """Run the benchmark on uvloop (as `hookline serve` runs), print and save its Result."""
    load_before = load_1min()
    started = time.monotonic()
    result = uvloop.run(main(args))
    result.context["load_1min_before_after"] = [load_before, load_1min()]
    result.context["seconds"] = round(time.monotonic() - started, 1)
    if not result.command:
        script = Path(sys.argv[0]).resolve().relative_to(REPO)
        result.command = " ".join([".venv/bin/python", str(script), *sys.argv[1:]]).replace(
            f" --json {args.json}" if args.json else "\0", ""
        )
    print(f"\n== {result.title}")
    for name, value in result.context.items():
        print(f"  {name}: {value}")
    for note in result.notes:
        print(f"  note: {note}")
    met = result.met
    verdict = "" if met is None else f"  goal {result.goal}: {'met' if met else 'MISSED'}"
    print(f"ratio: {result.ratio:.3f}  ({result.baseline}){verdict}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {**result.__dict__, "met": met}
        args.json.write_text(json.dumps(payload, indent=1, default=str))


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def py_spy() -> str | None:
    """py-spy, if installed (`.venv/bin/pip install py-spy`; not in requirements.lock)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


# Where a sample of the event loop's thread was, by the file of its innermost frame.
_CATEGORIES = (
    ("hookline/store/", "store: units, hand-off to SQLite's writer"),
    ("sqlalchemy", "SQLAlchemy"),
    ("greenlet", "SQLAlchemy"),
    ("asyncpg", "asyncpg"),
    ("aiohttp", "aiohttp (sending)"),
    ("fastapi", "FastAPI/Starlette"),
    ("starlette", "FastAPI/Starlette"),
    ("pydantic", "pydantic"),
    ("uvicorn", "uvicorn"),
    ("hookline/", "hookline code"),
    ("asyncio", "uvloop C code (socket I/O, or idle)"),
    ("uvloop", "uvloop C code (socket I/O, or idle)"),
)


# Functions whose inclusive share of the event loop's samples says where the time goes.
_INCLUSIVE = (
    ("Worker._claim_batch", "worker: claim"),
    ("Worker._flush", "worker: record results"),
    ("Sender.send", "worker: send (all)"),
    ("signature_header", "worker: send: sign"),
    ("SecretBox.open", "worker: send: open sealed secret"),
    ("ClientSession._request", "worker: send: aiohttp request"),
    ("envelope.py", "worker: render body"),
    ("register_user", "api: POST /users route"),
    ("send_message (hookline/users/router.py", "api: POST /users/messages route"),
    ("_identify", "api: auth"),
    ("publish (hookline/events/service.py", "api: publish (event + deliveries)"),
    ("AsyncSession.commit", "api: commit"),
)


class Profile:
    """CPU use of a process over a window, and (with py-spy) where its event loop spends it.

    `async with Profile(pid) as profile: ...` then `profile.summary`.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.summary: dict[str, Any] = {}
        self._out = Path(tempfile.mkstemp(suffix=".pyspy")[1])
        self._spy: subprocess.Popen[bytes] | None = None
        self._ticks = 0
        self._began = 0.0
        self._seconds = 0.0

    def _cpu_ticks(self) -> int:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def _spawn_py_spy(self) -> subprocess.Popen[bytes] | None:
        spy = py_spy()
        if spy is None:
            return None
        return subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--nonblocking",
                "--rate",
                "100",
                "-o",
                str(self._out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def __aenter__(self) -> "Profile":
        self._spy = self._spawn_py_spy()
        if self._spy is not None:
            await asyncio.sleep(0.5)
        self._ticks, self._began = self._cpu_ticks(), time.monotonic()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        ticks = self._cpu_ticks() - self._ticks
        hz = os.sysconf("SC_CLK_TCK")
        self._seconds = time.monotonic() - self._began
        self.summary["process_cpu_percent"] = round(100 * ticks / hz / self._seconds)
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            await asyncio.to_thread(self._spy.wait, 30)
            self.summary.update(self._read())
        self._out.unlink(missing_ok=True)

    def _read(self) -> dict[str, Any]:
        by_category: dict[str, int] = {}
        by_frame: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        main = 0
        sqlite_busy = 0
        text = self._out.read_text() if self._out.exists() else ""
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack.split(";")
            n = int(count)
            if not any("Runner.run" in f or "run_forever" in f for f in frames):
                # Not the event loop's thread: the store's SQLite writer or reader when it
                # runs units, else anyio's and the like.
                if any("hookline/store/sqlite.py" in f for f in frames):
                    sqlite_busy += n
                continue
            main += n
            top = frames[-1]
            name = next((c for key, c in _CATEGORIES if key in top), "other Python")
            by_category[name] = by_category.get(name, 0) + n
            by_frame[top] = by_frame.get(top, 0) + n
            for key, label in _INCLUSIVE:
                if any(key in f for f in frames):
                    inclusive[label] = inclusive.get(label, 0) + n
        if not main:
            return {"py_spy": "no samples"}

        def share(counts: dict[str, int], top: int) -> dict[str, float]:
            ordered = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
            return {k: round(100 * v / main, 1) for k, v in ordered}

        return {
            # py-spy samples 100 times a second: busy samples over all the window's ticks.
            "sqlite_thread_busy_percent": round(sqlite_busy / (self._seconds + 0.5)),
            "event_loop_samples": main,
            "event_loop_by_package_percent": share(by_category, 9),
            "event_loop_top_frames_percent": share(by_frame, 6),
            "event_loop_inclusive_percent": share(inclusive, len(_INCLUSIVE)),
        }


async def post_signed(
    session: aiohttp.ClientSession, queue: list[tuple[str, bytes]], secret: str
) -> None:
    """The raw baseline's loop: pop (url, body) and POST it, signed as hookline signs, until
    the queue is empty. Run several at once for that many in flight."""
    while queue:
        url, body = queue.pop()
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": "evt_bench",
            "webhook-timestamp": str(stamp),
            "webhook-signature": signing.sign(secret, "evt_bench", stamp, body),
        }
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()


# In-process benchmarks set their database up through hookline's own store, as the API would.
_ADD_ENDPOINT = sql(
    "INSERT INTO endpoints (id, url, secret, enabled, created_at)"
    " VALUES (:id, :url, :secret, TRUE, :created_at)"
)
_SUBSCRIBE = sql("INSERT INTO subscriptions (endpoint_id, event) VALUES (:endpoint_id, :event)")
_PENDING = sql("SELECT count(*) FROM deliveries WHERE status = 'pending'")
EVENT = "user_registered"


async def seeded_store(
    settings: Settings,
    urls: Sequence[str],
    events: int,
    *,
    prefix: str = "wh_b",
    ids: Sequence[str] | None = None,
) -> Store:
    """Migrate, add an endpoint per URL (secrets sealed, as in production) subscribed to
    `EVENT`, publish `events` events to them all; the open store (the caller closes it).

    The endpoints' ids are `ids` if given, else `prefix` and their number."""
    await migrate.upgrade(settings)
    box = secretbox.load(settings)
    store = open_store(settings)
    names = list(ids) if ids is not None else [f"{prefix}{n}" for n in range(len(urls))]

    def arrange() -> units.Unit[None]:
        now = utcnow()
        for name, url in zip(names, urls, strict=True):
            secret = box.seal(signing.generate_secret())
            params = {"id": name, "url": url, "secret": secret, "created_at": now}
            yield units.execute(_ADD_ENDPOINT, params)
            yield units.execute(_SUBSCRIBE, {"endpoint_id": name, "event": EVENT})

    def publish(first: int, last: int) -> units.Unit[None]:
        for n in range(first, last):
            yield from outbox.publish(event=EVENT, data={"id": f"usr_{n}", "username": f"u{n}"})

    await store.write(arrange())
    for first in range(0, events, 1000):  # a few units: one SQLite transaction stays short
        await store.write(publish(first, min(events, first + 1000)))
    return store


async def pending(store: Store) -> int:
    """Deliveries still pending."""

    def count() -> units.Unit[int]:
        return int((yield units.value(_PENDING)))

    return await store.read(count())
