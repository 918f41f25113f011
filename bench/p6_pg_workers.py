"""P6: PostgreSQL, deliveries/s with 2 `hookline worker` processes ÷ with 1 (no goal set).

A database of its own, `hookline_bench` (dropped and made again for every run, never `test`),
holds `--deliveries` pending, due deliveries spread over `--endpoints` endpoints (sink paths;
filled by COPY, then ANALYZE). Then 1 or 2 `hookline worker` processes (real ones, default
settings: 64 slots, 4 per endpoint, each) deliver them to the sink. The sink is pinned to
CPU 1 and the workers to CPU 0 (`taskset`, when there are 2 CPUs), so a second worker gets
no core of its own: PostgreSQL, not pinned, shares both. Deliveries/s is measured at the sink
from the first arrival to the last. 1 and 2 workers alternate for `--rounds` rounds; the ratio
is of the means. `--no-pin` runs everything unpinned as context.

    .venv/bin/python bench/p6_pg_workers.py [--quick] [--deliveries 12000] [--endpoints 16]
        [--rounds 2] [--no-pin]
"""

import argparse
import shutil
from datetime import UTC, datetime, timedelta

import pg_bench
from _common import Hookline, Result, Sink, mean, parse_args, rate, run, temp_dir
from p5_claim_cost import rows


async def deliver(sink: Sink, args: argparse.Namespace, workers: int) -> float:
    data_dir = temp_dir("p6")
    try:
        settings = await pg_bench.fresh_database(data_dir)
        made = rows(
            args.deliveries,
            "backlog",
            datetime.now(UTC) - timedelta(hours=1),
            endpoints=args.endpoints,
        )
        await pg_bench.fill(settings, made, args.endpoints, sink.base)
        await sink.reset()
        procs = [
            Hookline(
                "worker",
                data_dir=data_dir,
                cpus=None if args.no_pin else "0",
                HOOKLINE_DATABASE_URL=pg_bench.URL,
            )
            for _ in range(workers)
        ]
        for proc in procs:
            proc.spawn()
        try:
            stats = await sink.wait_count(args.deliveries)
        finally:
            for proc in procs:
                proc.stop()
        return rate(args.deliveries, stats)
    finally:
        await pg_bench.drop_database()
        shutil.rmtree(data_dir, ignore_errors=True)


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.deliveries, args.rounds = min(args.deliveries, 4000), 1
    if not await pg_bench.available():
        raise SystemExit(f"PostgreSQL is not reachable at {pg_bench.PG_SERVER}")
    one: list[float] = []
    two: list[float] = []
    async with Sink(cpus=None if args.no_pin else "1") as sink:
        for _ in range(args.rounds):
            one.append(await deliver(sink, args, 1))
            print(f"1 worker:  {one[-1]:.0f} deliveries/s")
            two.append(await deliver(sink, args, 2))
            print(f"2 workers: {two[-1]:.0f} deliveries/s")
    pinning = "unpinned" if args.no_pin else "workers on CPU 0, sink on CPU 1"
    return Result(
        key="p6",
        title="P6 PostgreSQL deliveries/s, 2 worker processes ÷ 1"
        + (" (nothing pinned)" if args.no_pin else ""),
        ratio=mean(two) / mean(one),
        goal="",
        baseline="1 worker process, same database, deliveries and sink",
        context={
            "deliveries": f"{args.deliveries} over {args.endpoints} endpoints,"
            f" {args.rounds} round(s)",
            "pinning": pinning,
            "one_worker_per_s": [round(r) for r in one],
            "two_workers_per_s": [round(r) for r in two],
        },
        plot={
            "bars": {"1 worker": mean(one), "2 workers": mean(two)},
            "ylabel": "deliveries/s",
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deliveries", type=int, default=12000)
    parser.add_argument("--endpoints", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-pin", action="store_true")


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
