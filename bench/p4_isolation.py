"""P4: healthy endpoints' deliveries/s with 1 of 10 hanging ÷ all 10 healthy (goal >= 0.9).

The worker runs in this process, as in bench/delivery_throughput.py (SQLite, fresh data dir,
the default 64 slots and 4 per endpoint, secrets sealed as in production). `--events`
events go to each of 10 endpoints, all sink paths. In the "all healthy" condition every path
answers 204 at once; in the "one hanging" condition endpoint 0 is a path that reads the
request and never answers (until the run is over), so the worker keeps 4 attempts hung on it
and its backlog due. Measured: deliveries/s to the healthy endpoints, at the sink, from the
first arrival to the last (all healthy: 10 x events; one hanging: 9 x events). The two
conditions alternate for `--rounds` rounds; the ratio is of the means. Also sampled: the
worker's attempts in flight, every 20 ms (its cap is 64), this process's CPU, and how many
deliveries each claim returns (claims.claim wrapped to count).

    .venv/bin/python bench/p4_isolation.py [--quick] [--events 1000] [--rounds 3]
"""

import argparse
import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from _common import Result, Sink, mean, parse_args, rate, run, seeded_store, temp_dir

from hookline import secretbox
from hookline.config import Settings
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker
from hookline.store import claims
from hookline.store.units import Unit

ENDPOINTS = 10

CLAIMS: list[int] = []  # deliveries returned by each claim of the current run


def count_claims() -> None:
    """Wrap claims.claim (which the worker calls) to count claims and what each returns."""
    claim = claims.claim

    def counted(**kwargs: Any) -> Unit[list[claims.Claimed]]:
        claimed = yield from claim(**kwargs)
        CLAIMS.append(len(claimed))
        return claimed

    claims.claim = counted  # type: ignore[assignment]


async def condition(sink: Sink, events_n: int, *, hang: bool) -> tuple[float, float, float]:
    """(healthy deliveries/s, CPU seconds of this process, mean attempts in flight) for one
    run of one condition."""
    data_dir = temp_dir("p4")
    settings = Settings(_env_file=None, data_dir=Path(data_dir), allow_private_networks=True)
    urls = [sink.url(n, hang=hang and n == 0) for n in range(ENDPOINTS)]
    store = await seeded_store(settings, urls, events_n, prefix="wh_p4")
    try:
        box = secretbox.load(settings)
        healthy = events_n * (ENDPOINTS - 1 if hang else ENDPOINTS)
        sender = Sender.from_settings(settings, box=box)
        await sender.start()
        worker = Worker(settings=settings, store=store, sender=sender)
        store.on_wake(worker.wake)
        await sink.reset()
        cpu = time.process_time()
        CLAIMS.clear()
        task = asyncio.create_task(worker.run())
        in_flight: list[int] = []

        async def sample() -> None:
            while True:
                in_flight.append(len(worker._inflight))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            stats = await sink.wait_count(healthy)
            cpu = time.process_time() - cpu
            sampler.cancel()
        finally:
            worker.stop()  # claims no more; then the hung attempts end (503), so it stops now
            await sink.release()
            await task
            await sender.close()
        per_claim = sum(CLAIMS) / max(1, len(CLAIMS))
        return rate(healthy, stats), cpu, sum(in_flight) / max(1, len(in_flight)), per_claim
    finally:
        await store.close()
        shutil.rmtree(data_dir, ignore_errors=True)


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.events, args.rounds = min(args.events, 300), 1
    healthy: list[float] = []
    hanging: list[float] = []
    cpu: dict[str, list[float]] = {"healthy": [], "hanging": []}
    in_flight: dict[str, list[float]] = {"healthy": [], "hanging": []}
    per_claim: dict[str, list[float]] = {"healthy": [], "hanging": []}
    count_claims()
    async with Sink() as sink:
        for _ in range(args.rounds):
            per_s, seconds, flying, each = await condition(sink, args.events, hang=False)
            healthy.append(per_s)
            cpu["healthy"].append(seconds)
            in_flight["healthy"].append(flying)
            per_claim["healthy"].append(each)
            per_s, seconds, flying, each = await condition(sink, args.events, hang=True)
            hanging.append(per_s)
            cpu["hanging"].append(seconds)
            in_flight["hanging"].append(flying)
            per_claim["hanging"].append(each)
    return Result(
        key="p4",
        title="P4 healthy deliveries/s with 1 of 10 endpoints hanging ÷ all 10 healthy",
        ratio=mean(hanging) / mean(healthy),
        goal=">= 0.9",
        baseline="the same worker and events with all 10 endpoints healthy",
        context={
            "events": f"{args.events} to each of {ENDPOINTS} endpoints, {args.rounds} round(s)",
            "all_healthy_deliveries_per_s": [round(r) for r in healthy],
            "one_hanging_healthy_deliveries_per_s": [round(r) for r in hanging],
            "mean_attempts_in_flight_of_64": {k: round(mean(v), 1) for k, v in in_flight.items()},
            "deliveries_per_claim": {k: round(mean(v), 1) for k, v in per_claim.items()},
            "worker_cpu_s_per_1000_healthy_deliveries": {
                "all healthy": round(1000 * mean(cpu["healthy"]) / (args.events * ENDPOINTS), 3),
                "one hanging": round(
                    1000 * mean(cpu["hanging"]) / (args.events * (ENDPOINTS - 1)), 3
                ),
            },
        },
        plot={
            "bars": {
                "all 10 healthy": mean(healthy),
                "1 of 10 hanging\n(the 9 healthy)": mean(hanging),
            },
            "ylabel": "healthy deliveries/s",
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
