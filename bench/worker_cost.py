"""Diagnostic for P1: CPU per delivery of the worker, split into sending and the rest.

All in this process (uvloop, as `hookline serve` runs), against the sink, 16 endpoints,
64 in flight, `--deliveries` each:

- raw aiohttp: `session.post` with the signed headers, as P1's baseline does;
- `Sender.send`: hookline's sender alone (sealed secret, signing, pyreqwest with its HTTP work
  in its own thread, private networks allowed, 4 KiB read limit, the Outcome);
- worker, stub sender: `Worker.run` draining a SQLite backlog with a sender that answers at
  once without any HTTP: the claim / record machinery alone (split into the event loop's
  thread and the others, chiefly the store's SQLite writer thread running units);
- worker, real sender: the same backlog delivered to the sink, as in P1 but in-process.

CPU is this process's (all threads) per delivery; the ratio printed is the worker with the
real sender ÷ raw aiohttp. The split line shows the event loop's thread apart from the others
(pyreqwest's, and the store's SQLite writer thread).

    .venv/bin/python bench/worker_cost.py [--quick] [--deliveries 8000]
"""

import argparse
import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import Result, Sink, parse_args, pending, run, seeded_store, temp_dir

from hookline import secretbox
from hookline.config import Settings
from hookline.delivery import envelope, signing
from hookline.delivery.sender import Outcome, Sender
from hookline.delivery.worker import Worker
from hookline.models import utcnow

ENDPOINTS = 16
IN_FLIGHT = 64


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process."""
    out = {}
    hz = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[task.name] = (int(fields[11]) + int(fields[12])) / hz
    return out


async def drive(n: int, urls: list[str], post: Any) -> tuple[float, float]:
    """(CPU ms per call, calls/s) of `post(url)` n times with IN_FLIGHT at once."""
    queue = list(range(n))

    async def one() -> None:
        while queue:
            i = queue.pop()
            await post(urls[i % len(urls)])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
    return 1000 * (time.process_time() - cpu) / n, n / (time.perf_counter() - wall)


class StubSender:
    """Answers every attempt with a 204 at once: no HTTP."""

    async def send(self, **_: Any) -> Outcome:
        await asyncio.sleep(0)
        return Outcome(started_at=utcnow(), duration_ms=1, status_code=204, response_body="")


async def drain(urls: list[str], n: int, sender: Any, settings: Settings) -> dict[str, float]:
    """Publish n/ENDPOINTS events to every endpoint; time the worker delivering them all."""
    store = await seeded_store(settings, urls, n // len(urls), prefix="wh_c")
    try:
        total = n // len(urls) * len(urls)
        worker = Worker(settings=settings, store=store, sender=sender)
        store.on_wake(worker.wake)
        before, wall = thread_cpu(), time.perf_counter()
        task = asyncio.create_task(worker.run())
        while True:
            if not await pending(store):
                break
            await asyncio.sleep(0.05)
        elapsed, after = time.perf_counter() - wall, thread_cpu()
        worker.stop()
        await task
    finally:
        await store.close()
    loop_thread = str(os.getpid())
    others = sum(after[t] - before.get(t, 0) for t in after if t != loop_thread)
    return {
        "cpu_ms": 1000 * (sum(after.values()) - sum(before.get(t, 0) for t in after)) / total,
        "event_loop_thread_ms": 1000 * (after[loop_thread] - before[loop_thread]) / total,
        "other_threads_ms": 1000 * others / total,
        "per_s": total / elapsed,
    }


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.deliveries = 3200
    n = args.deliveries
    results: dict[str, dict[str, float]] = {}
    async with Sink() as sink:
        urls = [sink.url(k) for k in range(ENDPOINTS)]
        body = envelope.render(
            event_id="evt_cost", event="user_registered", created_at=utcnow(), data={"u": 1}
        )
        secret = signing.generate_secret()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def raw(url: str) -> None:
                stamp = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "webhook-id": "evt_cost",
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": signing.sign(secret, "evt_cost", stamp, body),
                }
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

            cpu, per_s = await drive(n, urls, raw)
            results["raw aiohttp POST"] = {"cpu_ms": cpu, "per_s": per_s}
        data_dir = temp_dir("worker-cost")
        try:
            settings = Settings(
                _env_file=None,
                data_dir=data_dir,
                allow_private_networks=True,
                secret_key=secretbox.generate_key(),  # one key for every data dir below
            )
            box = secretbox.load(settings)
            sealed = box.seal(secret)
            sender = Sender.from_settings(settings, box=box)
            await sender.start()
            try:

                async def via_sender(url: str) -> None:
                    outcome = await sender.send(
                        url=url, msg_id="evt_c", body=body, secrets=[sealed]
                    )
                    assert outcome.ok, outcome

                cpu, per_s = await drive(n, urls, via_sender)
                results["Sender.send"] = {"cpu_ms": cpu, "per_s": per_s}
                stub_dir, real_dir = data_dir / "stub", data_dir / "real"
                results["worker, stub sender (no HTTP)"] = await drain(
                    urls, n, StubSender(), settings.model_copy(update={"data_dir": stub_dir})
                )
                real = Sender.from_settings(settings, box=secretbox.load(settings))
                await real.start()
                try:
                    results["worker, real sender"] = await drain(
                        urls, n, real, settings.model_copy(update={"data_dir": real_dir})
                    )
                finally:
                    await real.close()
            finally:
                await sender.close()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    for name, r in results.items():
        print(f"{name:32s} {r['cpu_ms']:6.3f} ms CPU/delivery, {r['per_s']:6.0f}/s")
    return Result(
        key="worker_cost",
        title="Diagnostic: worker CPU per delivery, in-process, ÷ raw aiohttp POST",
        ratio=results["worker, real sender"]["cpu_ms"] / results["raw aiohttp POST"]["cpu_ms"],
        goal="",
        baseline="raw aiohttp POST, CPU per request, same process and sink",
        context={
            "cpu_ms_per_delivery": {k: round(v["cpu_ms"], 3) for k, v in results.items()},
            "per_s": {k: round(v["per_s"]) for k, v in results.items()},
            "worker split, ms per delivery (event loop thread / the other threads)": {
                name: f"{results[name]['event_loop_thread_ms']:.3f} /"
                f" {results[name]['other_threads_ms']:.3f}"
                for name in ("worker, stub sender (no HTTP)", "worker, real sender")
            },
            "deliveries": f"{n} per line, {ENDPOINTS} endpoints, {IN_FLIGHT} in flight",
        },
        plot={
            "bars": {k: v["cpu_ms"] for k, v in results.items()},
            "ylabel": "CPU ms per delivery",
            "horizontal": True,
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deliveries", type=int, default=8000)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
