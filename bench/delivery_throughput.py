"""Deliveries/s of the worker on SQLite ÷ a raw aiohttp client posting the same bodies.

Both post to the same sink (a separate process, a bare aiohttp app on 127.0.0.1) with the
same number of requests in flight (the per-endpoint cap: all deliveries go to one endpoint),
measured in the same run, because this machine is noisy. The ratio is the result; the
absolute numbers are context.

    .venv/bin/python bench/delivery_throughput.py [--events 3000] [--per-endpoint 4]
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

from hookline.config import Settings
from hookline.db import create_engine, create_sessionmaker
from hookline.delivery import envelope, signing
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.events import service as events
from hookline.migrate import upgrade
from hookline.models import Endpoint, Subscription, utcnow

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
app.router.add_post("/hook", hook)
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


async def raw_client(url: str, bodies: list[bytes], in_flight: int) -> float:
    """The baseline: the same signed POSTs, straight from aiohttp; returns requests/s."""
    secret = signing.generate_secret()
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:

        async def post_all() -> None:
            while queue:
                body = queue.pop()
                stamp = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "webhook-id": "evt_bench",
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": signing.sign(secret, "evt_bench", stamp, body),
                }
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(post_all() for _ in range(in_flight)))
        return len(bodies) / (time.perf_counter() - started)


async def hookline_worker(data_dir: Path, url: str, base: str, count: int, cap: int) -> float:
    """Publish `count` events to one endpoint, then time the worker draining them."""
    settings = Settings(
        _env_file=None, data_dir=data_dir, allow_private_networks=True, worker_per_endpoint=cap
    )
    engine = create_engine(settings)
    await upgrade(engine)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker.begin() as session:
        session.add(
            Endpoint(id="wh_bench", url=url, secret=signing.generate_secret(), created_at=utcnow())
        )
        await session.flush()
        session.add(Subscription(endpoint_id="wh_bench", event=events.USER_REGISTERED))
        await session.flush()
        for n in range(count):
            await events.publish(
                session=session, event=events.USER_REGISTERED, data={"id": f"usr_{n}"}
            )
    sender = Sender(timeout=settings.delivery_timeout, concurrency=settings.worker_concurrency)
    await sender.start()
    worker = Worker(settings=settings, sessionmaker=sessionmaker, sender=sender)
    async with aiohttp.ClientSession() as session:
        before = await sink_count(session, base)
        started = time.perf_counter()
        cpu_started = time.process_time()
        task = asyncio.create_task(worker.run())
        while await sink_count(session, base) - before < count:
            if time.perf_counter() - started > 300:
                raise RuntimeError("worker did not drain the queue within 300 s")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    print(f"worker phase: {elapsed:.2f} s wall, {cpu:.2f} s CPU in this process")
    worker.stop()
    await task
    await sender.close()
    await engine.dispose()
    return count / elapsed


async def measure(base: str, events_count: int, in_flight: int, data_dir: Path) -> None:
    await wait_for_sink(base)
    url = f"{base}/hook"
    bodies = [
        envelope.render(
            event_id=f"evt_{n}",
            event="user_registered",
            created_at=utcnow(),
            data={"id": f"usr_{n}"},
        )
        for n in range(events_count)
    ]
    baseline = await raw_client(url, bodies, in_flight)
    measured = await hookline_worker(data_dir, url, base, events_count, in_flight)
    print(f"events: {events_count}, in flight to the endpoint: {in_flight}")
    print(f"raw aiohttp client:      {baseline:8.0f} POST/s")
    print(f"hookline worker, SQLite: {measured:8.0f} deliveries/s")
    print(f"ratio: {measured / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Worker deliveries/s ÷ a raw aiohttp client.")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--per-endpoint", type=int, default=Settings().worker_per_endpoint)
    parser.add_argument("--port", type=int, default=9871)
    args = parser.parse_args()

    base = f"http://127.0.0.1:{args.port}"
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(args.port)])
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    try:
        asyncio.run(measure(base, args.events, args.per_endpoint, data_dir))
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
