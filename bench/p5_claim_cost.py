"""P5: the cost of one claim with 1,000,000 deliveries in the table ÷ with 10,000 (goal <= 1.5),
and the RSS of a `hookline worker` process with 1,000,000 deliveries in the table (< 200 MB).

One claim is what the worker does per batch: `claims.claim(limit=64, per_endpoint=2)` in one
unit of work (64 free slots; 2 is the worker's top-up with the default cap of 4), then, in
another, the worker's `record` of everything claimed (`claims.complete` plus the endpoints'
health clock: the worker's flush), all through hookline's own store. Its median time over
`--claims` claims is the cost; the table sizes of a shape take turns (6 rounds), so that
outside load falls on all of them. The tables are filled with plain sqlite3 (`executemany`,
indexes built after) in the migrated schema, 10 endpoints, one event per 10 deliveries, in
three shapes:

- history: 5,000 deliveries pending and due, the rest succeeded, each with its attempt (the
  steady state: a big table is mostly delivered history);
- backlog: every delivery pending and due, spread over the 10 endpoints;
- skip (context, no goal): every delivery pending and due, all but the newest 5,000 for one
  endpoint that the claim skips, as the worker skips an endpoint whose slots are full (a slow
  or hanging receiver with a backlog): the claim must look past that endpoint's rows.

The ratio is the larger of history's and backlog's. The RSS is of `hookline worker` (a real
process) delivering the 1,000,000-row backlog to the sink for `--rss-seconds`, sampled every
0.25 s (peak VmRSS; VmHWM is the kernel's peak); the same on the 10,000-row table is the
baseline. With `--postgres` all three shapes are also measured on PostgreSQL
(database `hookline_bench`, created and dropped for each table, filled by COPY, then ANALYZE
as autovacuum would; one database at a time, so not interleaved).

    .venv/bin/python bench/p5_claim_cost.py [--quick] [--sizes 10000,100000,1000000]
        [--claims 60] [--rss-seconds 8] [--postgres]
"""

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import Hookline, Result, Sink, parse_args, run, temp_dir

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.delivery import signing, worker
from hookline.store import Status, claims, open_store
from hookline.store.sql import TIME_FORMAT as STAMP  # how SQLite columns hold times

ENDPOINTS = 10
DUE = 5_000  # pending and due rows in the history and skip shapes


def rows(
    size: int,
    shape: str,
    base: datetime,
    stamp: Callable[[datetime], Any] = lambda t: t,
    endpoints: int = ENDPOINTS,
) -> dict[str, list[tuple[Any, ...]]]:
    """Events, deliveries and attempts for one table shape (oldest first); `stamp` turns a
    datetime into what the database driver takes."""
    events: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    for e in range(-(-size // endpoints)):
        created = stamp(base + timedelta(microseconds=e * endpoints))
        payload = json.dumps({"id": f"usr_{e:026d}", "username": f"user{e}"})
        events.append((f"evt_{e:026d}", "user_registered", payload, created))
    for d in range(size):
        event = f"evt_{d // endpoints:026d}"
        at = stamp(base + timedelta(microseconds=d))
        endpoint = d % endpoints
        pending = True
        if shape == "history":
            pending = d >= size - DUE
        elif shape == "skip":
            endpoint = 0 if d < size - DUE else 1 + d % (endpoints - 1)
        dlv = f"dlv_{d:026d}"
        if pending:
            deliveries.append((dlv, event, f"wh_{endpoint}", "pending", 0, at, at, None))
        else:
            deliveries.append((dlv, event, f"wh_{endpoint}", "succeeded", 1, None, at, at))
            attempts.append((dlv, 1, at, 3, 204, "", None, None))
    return {"events": events, "deliveries": deliveries, "attempts": attempts}


async def sqlite_table(data_dir: Path, size: int, shape: str, sink_base: str) -> Settings:
    """A migrated SQLite database in `data_dir` holding `size` deliveries of `shape`."""
    settings = Settings(_env_file=None, data_dir=data_dir, allow_private_networks=True)
    await migrate.upgrade(settings)
    box = secretbox.load(settings)
    now = datetime.now(UTC)
    made = rows(size, shape, now - timedelta(days=1), lambda t: t.strftime(STAMP))
    db = sqlite3.connect(data_dir / "hookline.db", isolation_level=None)
    try:
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name IN ('deliveries', 'attempts', 'events') AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO endpoints (id, url, secret, enabled, created_at) VALUES (?, ?, ?, 1, ?)",
            [
                (
                    f"wh_{n}",
                    f"{sink_base}/hook/{n}",
                    box.seal(signing.generate_secret()),
                    now.strftime(STAMP),
                )
                for n in range(ENDPOINTS)
            ],
        )
        db.executemany(
            "INSERT INTO events (id, event, payload, created_at) VALUES (?, ?, ?, ?)",
            made["events"],
        )
        db.executemany(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts_made,"
            " next_attempt_at, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            made["deliveries"],
        )
        db.executemany(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code,"
            " response_body, error_kind, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            made["attempts"],
        )
        db.execute("COMMIT")
        for _, sql in indexes:
            db.execute(sql)
    finally:
        db.close()
    return settings


class ClaimBench:
    """Claims (claim + complete, as the worker does them) on one database, timed one by one."""

    def __init__(self, settings: Settings, *, skip: bool = False) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.skip_endpoints = ["wh_0"] if skip else []
        self.totals: list[float] = []
        self.claim_only: list[float] = []
        self.claimed_n: list[int] = []

    async def run(self, count: int, *, record: bool = True) -> None:
        for _ in range(count):
            began = time.perf_counter()
            claimed = await self.store.write(
                claims.claim(
                    owner="bench:p5",
                    limit=64,
                    lease_seconds=self.settings.lease_seconds,
                    per_endpoint=2,
                    skip_endpoints=self.skip_endpoints,
                )
            )
            claimed_at = time.perf_counter()
            attempt = {
                "started_at": datetime.now(UTC),
                "duration_ms": 3,
                "status_code": 204,
                "response_body": "",
                "error_kind": None,
                "error": None,
            }
            settled = [
                worker.Settled(
                    claims.Finished(
                        item.delivery_id,
                        item.endpoint_id,
                        item.attempts_made + 1,
                        attempt,
                        Status.SUCCEEDED,
                    ),
                    None,
                    item.probe,
                )
                for item in claimed
            ]
            await self.store.write(
                worker.record("bench:p5", settled, disable_after=self.settings.disable_after)
            )
            done = time.perf_counter()
            if not claimed:
                raise RuntimeError("nothing left to claim: raise DUE or lower --claims")
            if record:
                self.totals.append(1000 * (done - began))
                self.claim_only.append(1000 * (claimed_at - began))
                self.claimed_n.append(len(claimed))

    async def close(self) -> None:
        await self.store.close()

    def medians(self) -> tuple[float, float, int]:
        """(median ms of claim + complete, median ms of the claim alone, deliveries/claim)."""
        return (
            statistics.median(self.totals),
            statistics.median(self.claim_only),
            round(statistics.median(self.claimed_n)),
        )


ROUNDS = 6  # the sizes take turns, a few claims each, so outside load falls on all alike


async def interleaved(benches: list[ClaimBench], count: int) -> None:
    for bench in benches:
        await bench.run(5, record=False)  # warm the statement caches
    for r in range(ROUNDS):
        for bench in benches:
            await bench.run(count // ROUNDS + (r < count % ROUNDS))


async def worker_rss(sink: Sink, data_dir: Path, seconds: float) -> dict[str, float]:
    """Peak RSS (MB) of `hookline worker` delivering from this data dir for `seconds`."""
    worker = Hookline("worker", data_dir=data_dir)
    await sink.reset()
    worker.spawn()
    peak = 0
    hwm = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rss, hwm = worker.rss_kib()
            peak = max(peak, rss)
            await asyncio.sleep(0.25)
        delivered = (await sink.stats())["count"]
    finally:
        code = worker.stop()
    if code not in (0, None):
        raise RuntimeError(f"worker exited {code}:\n{worker.log_text()[-2000:]}")
    return {"peak_rss_mb": peak / 1024, "vm_hwm_mb": hwm / 1024, "delivered": delivered}


async def postgres_costs(
    sizes: list[int], count: int, sink_base: str
) -> dict[str, dict[int, float]]:
    """Claim + complete medians (ms) on PostgreSQL for each shape."""
    import pg_bench  # only with --postgres

    costs: dict[str, dict[int, float]] = {"history": {}, "backlog": {}, "skip": {}}
    for shape in costs:
        for size in sizes:
            data_dir = temp_dir("p5-pg")
            try:
                settings = await pg_bench.fresh_database(data_dir)
                made = rows(size, shape, datetime.now(UTC) - timedelta(days=1))
                await pg_bench.fill(settings, made, ENDPOINTS, sink_base)
                bench = ClaimBench(settings, skip=shape == "skip")
                try:
                    await interleaved([bench], count)
                finally:
                    await bench.close()
                costs[shape][size] = bench.medians()[0]
                print(f"postgres {shape:8s} {size:>9,}: {costs[shape][size]:.2f} ms")
            finally:
                await pg_bench.drop_database()
                shutil.rmtree(data_dir, ignore_errors=True)
    return costs


async def main(args: argparse.Namespace) -> Result:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.quick:
        sizes, args.claims, args.rss_seconds = [10_000, 200_000], 30, 4.0
    small, big = sizes[0], sizes[-1]
    cost: dict[str, dict[int, float]] = {"history": {}, "backlog": {}, "skip": {}}
    claim_ms: dict[str, dict[int, float]] = {"history": {}, "backlog": {}, "skip": {}}
    per_claim: dict[str, int] = {}
    rss: dict[int, dict[str, float]] = {}
    setup_s: dict[str, float] = {}
    async with Sink() as sink:
        for shape in ("history", "backlog", "skip"):
            shape_sizes = sizes if shape == "history" else [small, big]
            dirs = {size: temp_dir("p5") for size in shape_sizes}
            benches: dict[int, ClaimBench] = {}
            try:
                for size, data_dir in dirs.items():
                    began = time.perf_counter()
                    settings = await sqlite_table(data_dir, size, shape, sink.base)
                    setup_s[f"{shape} {size}"] = round(time.perf_counter() - began, 1)
                    benches[size] = ClaimBench(settings, skip=shape == "skip")
                await interleaved(list(benches.values()), args.claims)
                for size, bench in benches.items():
                    total, claim_alone, n = bench.medians()
                    cost[shape][size], claim_ms[shape][size] = total, claim_alone
                    per_claim[shape] = n
                    print(
                        f"sqlite {shape:8s} {size:>9,} rows: claim+complete {total:7.2f} ms"
                        f" (claim {claim_alone:.2f} ms), {n} deliveries per claim"
                    )
                for bench in benches.values():
                    await bench.close()
                if shape == "backlog":
                    for size, data_dir in dirs.items():
                        rss[size] = await worker_rss(sink, data_dir, args.rss_seconds)
                        print(f"  worker RSS, {size:,} rows: {rss[size]}")
            finally:
                for bench in benches.values():
                    await bench.close()
                for data_dir in dirs.values():
                    shutil.rmtree(data_dir, ignore_errors=True)
        pg = await postgres_costs([small, big], args.claims, sink.base) if args.postgres else {}
    ratios = {shape: cost[shape][big] / cost[shape][small] for shape in cost}
    ratio = max(ratios["history"], ratios["backlog"])
    context: dict[str, Any] = {
        "sizes": sizes,
        "deliveries_per_claim": per_claim,
        "sqlite_claim_plus_complete_ms": {
            s: {f"{k:,}": round(v, 2) for k, v in c.items()} for s, c in cost.items()
        },
        "sqlite_claim_alone_ms": {
            s: {f"{k:,}": round(v, 2) for k, v in c.items()} for s, c in claim_ms.items()
        },
        f"ratio_{big}_vs_{small}": {k: round(v, 2) for k, v in ratios.items()},
        "worker_rss_mb": {
            f"{k:,} rows": {m: round(v, 1) for m, v in r.items()} for k, r in rss.items()
        },
        "setup_s": setup_s,
    }
    if pg:
        context["postgres_claim_plus_complete_ms"] = {
            s: {f"{k:,}": round(v, 2) for k, v in c.items()} for s, c in pg.items()
        }
        context["postgres_ratio"] = {s: round(c[big] / c[small], 2) for s, c in pg.items()}
    big_rss = rss[big]["peak_rss_mb"]
    return Result(
        key="p5",
        title=f"P5 claim + complete cost with {big:,} deliveries ÷ with {small:,} (SQLite)",
        ratio=ratio,
        goal="<= 1.5",
        baseline=f"the same claim with {small:,} deliveries in the table",
        context=context,
        notes=[
            f"worker RSS with {big:,} deliveries: {big_rss:.0f} MB peak"
            f" (goal < 200 MB: {'met' if big_rss < 200 else 'MISSED'})"
        ],
        plot={"cost_ms": cost, "pg_cost_ms": pg, "rss": rss},
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--claims", type=int, default=60)
    parser.add_argument("--rss-seconds", type=float, default=8.0)
    parser.add_argument("--postgres", action="store_true")


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
