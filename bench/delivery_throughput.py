"""Deliveries/s of the worker on SQLite ÷ a raw aiohttp client posting the same bodies.

Both post to the same sink (a separate process, a bare aiohttp app on 127.0.0.1) with the
same number of requests in flight (the per-endpoint cap times the endpoints, at most the
worker's concurrency), measured in the same run, because this machine is noisy. Every event
goes to every endpoint. The ratio is the result; the absolute numbers are context.

    .venv/bin/python bench/delivery_throughput.py [--events 3000] [--endpoints 1]
        [--per-endpoint 4] [--concurrency 64]
"""

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import post_signed, seeded_store

from hookline import secretbox
from hookline.config import Settings
from hookline.delivery import envelope, signing
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.models import utcnow

SINK = """
import sys
from aiohttp import web
count = 0
async def hook(request):
    global count
    await request.read()
    count += 1
    return web.Response(status=204)
async def total(request):
    return web.Response(text=str(count))
app = web.Application()
app.router.add_post("/hook/{n}", hook)
app.router.add_get("/count", total)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


async def sink_count(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/count") as response:
        return int(await response.text())


async def wait_for_sink(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                await sink_count(session, base)
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise RuntimeError("sink did not start")


async def raw_client(urls: list[str], bodies: list[bytes], in_flight: int) -> float:
    """The baseline: the same signed POSTs, straight from aiohttp; returns requests/s."""
    secret = signing.generate_secret()
    queue = [(url, body) for body in reversed(bodies) for url in urls]
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(post_signed(session, queue, secret) for _ in range(in_flight)))
        return len(bodies) * len(urls) / (time.perf_counter() - started)


async def hookline_worker(
    data_dir: Path, urls: list[str], base: str, count: int, cap: int, concurrency: int
) -> float:
    """Publish `count` events to every endpoint, then time the worker draining them."""
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        allow_private_networks=True,
        worker_per_endpoint=cap,
        worker_concurrency=concurrency,
    )
    store = await seeded_store(settings, urls, count)
    box = secretbox.load(settings)  # secrets sealed at rest, as in production
    sender = Sender.from_settings(settings, box=box)
    await sender.start()
    worker = Worker(settings=settings, store=store, sender=sender)
    store.on_wake(worker.wake)
    async with aiohttp.ClientSession() as session:
        before = await sink_count(session, base)
        started = time.perf_counter()
        cpu_started = time.process_time()
        task = asyncio.create_task(worker.run())
        total = count * len(urls)
        while await sink_count(session, base) - before < total:
            if time.perf_counter() - started > 300:
                raise RuntimeError("worker did not drain the queue within 300 s")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    print(f"worker phase: {elapsed:.2f} s wall, {cpu:.2f} s CPU in this process")
    worker.stop()
    await task
    await sender.close()
    await store.close()
    return total / elapsed


async def measure(args: argparse.Namespace, base: str, data_dir: Path) -> None:
    await wait_for_sink(base)
    urls = [f"{base}/hook/{n}" for n in range(args.endpoints)]
    bodies = [
        envelope.render(
            event_id=f"evt_{n}",
            event="user_registered",
            created_at=utcnow(),
            data={"id": f"usr_{n}"},
        )
        for n in range(args.events)
    ]
    in_flight = min(args.concurrency, args.per_endpoint * args.endpoints)
    baseline = await raw_client(urls, bodies, in_flight)
    measured = await hookline_worker(
        data_dir, urls, base, args.events, args.per_endpoint, args.concurrency
    )
    print(
        f"deliveries: {args.events * args.endpoints} to {args.endpoints} endpoint(s),"
        f" {in_flight} in flight (per endpoint {args.per_endpoint}, worker {args.concurrency})"
    )
    print(f"raw aiohttp client:      {baseline:8.0f} POST/s")
    print(f"hookline worker, SQLite: {measured:8.0f} deliveries/s")
    print(f"ratio: {measured / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Worker deliveries/s ÷ a raw aiohttp client.")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--per-endpoint", type=int, default=Settings().worker_per_endpoint)
    parser.add_argument("--concurrency", type=int, default=Settings().worker_concurrency)
    parser.add_argument("--port", type=int, default=9871)
    args = parser.parse_args()

    base = f"http://127.0.0.1:{args.port}"
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(args.port)])
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    try:
        asyncio.run(measure(args, base, data_dir))
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
