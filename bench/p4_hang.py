"""P4-HANG: 3 healthy endpoints' deliveries/s beside 32 hanging ÷ the 3 alone (goal >= 0.9).

The worker runs in this process, as in bench/p4_isolation.py (SQLite, fresh data dir,
secrets sealed as in production) with the default settings: 64 slots, 4 per endpoint and the
default delivery timeout of 15 s. `--events` events go to every endpoint, published before
the worker starts. In the "alone" condition only the 3 healthy endpoints exist (sink paths
that answer 204 at once); in the "hanging" condition 32 more are subscribed, sink paths that
read the request and never answer (until the run is over), so none of their attempts ends
before the timeout, and their backlogs are due all along. The 32 come first, by id and by
insertion, so that when a claim has to choose among deliveries due at the same moment the
healthy ones are the last candidates (the worst case).

Measured: deliveries/s at the 3 healthy endpoints (3 x events), from the worker's start (the
events are all published just before) to the last healthy arrival at the sink; also the time
to the first healthy arrival, the worker's attempts in flight (sampled every 20 ms) and its
attempts in flight to the hanging endpoints when the healthy ones are done (the slots those
occupy). The two conditions alternate for `--rounds` rounds; the ratio is of the means. A run
in which the hanging endpoints starve the healthy ones until their first timeouts takes at
least 15 s.

    .venv/bin/python bench/p4_hang.py [--quick] [--events 2000] [--rounds 3]
"""

import argparse
import asyncio
import logging
import shutil
import time
from pathlib import Path

from _common import Result, Sink, mean, parse_args, run, seeded_store, temp_dir

from hookline import secretbox
from hookline.config import Settings
from hookline.delivery.sender import Sender
from hookline.delivery.worker import Worker

HANGING, HEALTHY = 32, 3


async def condition(sink: Sink, events_n: int, *, hang: bool) -> dict[str, float]:
    """One run of one condition: healthy deliveries/s and what went with it."""
    data_dir = temp_dir("p4hang")
    settings = Settings(_env_file=None, data_dir=Path(data_dir), allow_private_networks=True)
    assert settings.delivery_timeout == 15.0  # the default: the point is not to shorten it
    hanging = [sink.url(n, hang=True) for n in range(HANGING)] if hang else []
    healthy = [sink.url(100 + n) for n in range(HEALTHY)]
    ids = [f"wh_hang{n:02d}" for n in range(len(hanging))] + [f"wh_ok{n}" for n in range(HEALTHY)]
    store = await seeded_store(settings, [*hanging, *healthy], events_n, ids=ids)
    try:
        box = secretbox.load(settings)
        wanted = events_n * HEALTHY
        sender = Sender.from_settings(settings, box=box)
        await sender.start()
        worker = Worker(settings=settings, store=store, sender=sender)
        store.on_wake(worker.wake)
        await sink.reset()
        cpu = time.process_time()
        started = time.time()  # the sink stamps arrivals with time.time() too
        task = asyncio.create_task(worker.run())
        in_flight: list[int] = []
        stuck = ids[: len(hanging)]

        async def sample() -> None:
            while True:
                in_flight.append(len(worker._inflight))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            stats = await sink.wait_count(wanted)
            cpu = time.process_time() - cpu
            sampler.cancel()
            held = sum(worker._per_endpoint[e] for e in stuck)
        finally:
            worker.stop()  # claims no more; then the hung attempts end (503), so it stops now
            await sink.release()
            await task
            await sender.close()
        return {
            "per_s": wanted / (stats["last"] - started),
            "first_ms": 1000 * (stats["first"] - started),
            "seconds": stats["last"] - started,
            "in_flight": sum(in_flight) / max(1, len(in_flight)),
            "held": held,
            "cpu_ms_per_delivery": 1000 * cpu / wanted,
        }
    finally:
        await store.close()
        shutil.rmtree(data_dir, ignore_errors=True)


async def main(args: argparse.Namespace) -> Result:
    logging.getLogger("hookline").setLevel(logging.ERROR)  # not a line per failed attempt
    if args.quick:
        args.events, args.rounds = min(args.events, 500), 1
    runs: dict[str, list[dict[str, float]]] = {"alone": [], "hanging": []}
    async with Sink() as sink:
        for _ in range(args.rounds):
            runs["alone"].append(await condition(sink, args.events, hang=False))
            runs["hanging"].append(await condition(sink, args.events, hang=True))

    def each(kind: str, key: str, digits: int = 0) -> list[float]:
        return [round(r[key], digits) if digits else round(r[key]) for r in runs[kind]]

    alone = mean([r["per_s"] for r in runs["alone"]])
    beside = mean([r["per_s"] for r in runs["hanging"]])
    return Result(
        key="p4_hang",
        title=f"P4-HANG {HEALTHY} healthy endpoints' deliveries/s with {HANGING} hanging beside"
        f" them ÷ the {HEALTHY} alone",
        ratio=beside / alone,
        goal=">= 0.9",
        baseline=f"the same worker and events with the {HEALTHY} healthy endpoints alone",
        context={
            "events": f"{args.events} to each endpoint, {args.rounds} round(s); delivery"
            " timeout 15 s (default), 64 slots, 4 per endpoint",
            "alone_healthy_deliveries_per_s": each("alone", "per_s"),
            "with_32_hanging_healthy_deliveries_per_s": each("hanging", "per_s"),
            "seconds_to_last_healthy_delivery": {
                "alone": each("alone", "seconds", 2),
                "with 32 hanging": each("hanging", "seconds", 2),
            },
            "ms_to_first_healthy_delivery": {
                "alone": each("alone", "first_ms"),
                "with 32 hanging": each("hanging", "first_ms"),
            },
            "mean_attempts_in_flight_of_64": {
                k: round(mean([r["in_flight"] for r in v]), 1) for k, v in runs.items()
            },
            "attempts_in_flight_to_hanging_at_the_end": each("hanging", "held"),
            "worker_cpu_ms_per_healthy_delivery": {
                k: round(mean([r["cpu_ms_per_delivery"] for r in v]), 3) for k, v in runs.items()
            },
        },
        plot={
            "bars": {
                f"{HEALTHY} healthy alone": alone,
                f"{HEALTHY} healthy +\n{HANGING} hanging": beside,
            },
            "ylabel": "healthy deliveries/s",
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
