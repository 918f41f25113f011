"""P7: the claim's cost with 10,000 endpoints of which 1,000 are paced (rate-limited or ordered)
and backlogged ÷ the same claim with none paced (no goal set: the issue asks for the figures).

One claim is `claims.claim(limit=64, per_endpoint=2)` in one unit of work through hookline's
own store (64 free slots; 2 is the worker's top-up with the default cap of 4), as P5 measures
it, but the claim alone: what it leased is given back after each one (and a rate-limited
endpoint's pace reset), outside the clock, so every claim sees the same table. Its median and
p95 over `--claims` claims are the cost.

One table per database, filled with plain sqlite3 (`executemany`, indexes built after) or
COPY, then ANALYZE on PostgreSQL: `--endpoints` endpoints, every tenth of them (1,000) the
"paced" set with 20 due deliveries each, every other endpoint 3 (47,000 due deliveries in
all, the oldest due round-robin over the endpoints, one event per 10 deliveries). The
variants differ only in the endpoints' options and leases, set between turns (outside the
clock; on PostgreSQL followed by ANALYZE, as autovacuum would):

- none: no endpoint paced, nothing skipped (the claim takes the oldest due rows: the baseline);
- rate-limited: the paced set at 5 attempts/s, pace reset (claimable now);
- ordered: the paced set ordered (every head due, nothing in flight);
- and as context, the states a running worker is mostly in: none with one endpoint skipped
  (its slots full, as in P4: the claim probes endpoint by endpoint); rate-limited with every
  pace an hour ahead (nothing of theirs may start yet); ordered with every head leased to
  another worker (in flight).

The variants take turns (6 rounds, a few warm-up claims after each switch), so that outside
load falls on all of them. Each statement the claim runs is timed as well (the time between
the unit yielding it and getting its result: on PostgreSQL that includes the round trip), to
say which dominates. `--explain` prints each statement's plan in each variant: SQLite's
EXPLAIN QUERY PLAN; PostgreSQL's EXPLAIN ANALYZE (rolled back) of the statement prepared,
with a custom plan and with the generic plan that PostgreSQL settles on after a prepared
statement's fifth run (asyncpg prepares every statement the store runs). With `--postgres`
all of it is also measured on PostgreSQL, in its own database `hookline_bench` (created and
dropped; SQLite first, then PostgreSQL, so the two are not interleaved). `--try-fixes` then
times, on the same table, two statements as they are and as they could be: the probe with the
paced endpoints left out by their columns instead of a list of their ids, and `_PACED` with an
index in its order (each statement prepared once and run 10 times, rolled back); and four
claims in a row with nothing given back, to show which endpoints each serves.

    .venv/bin/python bench/p7_paced_claim_cost.py [--quick] [--claims 60] [--endpoints 10000]
        [--postgres] [--explain] [--try-fixes]
"""

import argparse
import re
import shutil
import sqlite3
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import Result, parse_args, percentile, run, temp_dir

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.delivery import signing
from hookline.store import Store, claims, open_store, units
from hookline.store.sql import TIME_FORMAT as STAMP  # how SQLite columns hold times
from hookline.store.sql import Statement, sql
from hookline.store.units import Op, Unit

PACED_EVERY = 10  # every tenth endpoint is in the paced set: 1,000 of 10,000
DUE_PACED = 20  # due deliveries of each paced endpoint
DUE_OTHER = 3  # due deliveries of every other endpoint
RATE = 5.0  # attempts/s of a rate-limited endpoint
OWNER = "bench:p7"
ROUNDS = 6
WARM = 3  # untimed claims after each switch of variant

# (name, rate limit of the paced set, ordered, their pace, heads in flight, skip one endpoint)
VARIANTS: list[tuple[str, float | None, bool, str, bool, bool]] = [
    ("none", None, False, "", False, False),
    ("rate-limited", RATE, False, "now", False, False),
    ("ordered", None, True, "", False, False),
    ("none, 1 endpoint skipped", None, False, "", False, True),
    ("rate-limited, paced an hour ahead", RATE, False, "ahead", False, False),
    ("ordered, heads in flight", None, True, "", True, False),
]
MAIN = ("none", "rate-limited", "ordered")

# The claim's statements by name, to time and explain them.
NAMES = {
    id(getattr(claims, name)): name
    for name in (
        "_PACED_IDS",
        "_PACED",
        "_HEAD",
        "_DUE_OF",
        "_LEASE_THESE",
        "_PACE",
        "_CLOCK",
        "_LEASE_PER_ENDPOINT",
        "_LEASE_OLDEST",
        "_CLAIMED_ROWS",
    )
}

# Setting a variant up and giving a claim back: the bench's own statements, through the store.
_UNLEASE_ALL = sql(
    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL"
)
_UNPACE_ALL = sql(
    "UPDATE endpoints SET rate_limit = NULL, ordered = FALSE, rate_next_at = NULL"
    " WHERE rate_limit IS NOT NULL OR ordered"
)
_SET_RATE = sql(
    "UPDATE endpoints SET rate_limit = :rate, rate_next_at = {after:ahead} WHERE id {in:ids}"
)
_SET_ORDERED = sql("UPDATE endpoints SET ordered = TRUE WHERE id {in:ids}")
_HOLD_HEADS = sql(
    "UPDATE deliveries SET lease_owner = 'bench:other', lease_until = {after:hold} WHERE id IN ("
    " SELECT min(id) FROM deliveries WHERE status = 'pending' AND endpoint_id {in:ids}"
    " GROUP BY endpoint_id)"
)
_RESET_PACE = sql("UPDATE endpoints SET rate_next_at = NULL WHERE id {in:ids}")
_ANALYZE = sql("ANALYZE endpoints", postgres="ANALYZE endpoints, deliveries")


def endpoint_id(n: int) -> str:
    return f"wh_{n:05d}"


def paced_ids(endpoints: int) -> list[str]:
    return [endpoint_id(n) for n in range(0, endpoints, PACED_EVERY)]


def rows(
    endpoints: int, base: datetime, stamp: Callable[[datetime], Any]
) -> dict[str, list[tuple[Any, ...]]]:
    """Events and due deliveries, the oldest round-robin over the endpoints; `stamp` turns a
    datetime into what the driver takes."""
    deliveries: list[tuple[Any, ...]] = []
    for k in range(DUE_PACED):
        for n in range(endpoints):
            if n % PACED_EVERY and k >= DUE_OTHER:
                continue
            d = len(deliveries)
            at = stamp(base + timedelta(microseconds=d))
            deliveries.append(
                (f"dlv_{d:026d}", f"evt_{d // 10:026d}", endpoint_id(n), "pending", 0, at, at, None)
            )
    events = [
        (f"evt_{e:026d}", "user_registered", f'{{"id": "usr_{e}"}}', stamp(base))
        for e in range(-(-len(deliveries) // 10))
    ]
    return {"events": events, "deliveries": deliveries}


def endpoint_rows(
    settings: Settings, endpoints: int, now: Any, enabled: Any
) -> list[tuple[Any, ...]]:
    secret = secretbox.load(settings).seal(signing.generate_secret())  # one for all: seeding fast
    return [
        (endpoint_id(n), f"http://127.0.0.1:9/hook/{n}", secret, enabled, now)
        for n in range(endpoints)
    ]


async def sqlite_table(data_dir: Path, endpoints: int) -> Settings:
    settings = Settings(_env_file=None, data_dir=data_dir, allow_private_networks=True)
    await migrate.upgrade(settings)
    now = datetime.now(UTC)
    made = rows(endpoints, now - timedelta(days=1), lambda t: t.strftime(STAMP))
    db = sqlite3.connect(data_dir / "hookline.db", isolation_level=None)
    try:
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name IN ('deliveries', 'events') AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO endpoints (id, url, secret, enabled, created_at) VALUES (?, ?, ?, ?, ?)",
            endpoint_rows(settings, endpoints, now.strftime(STAMP), 1),
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
        db.execute("COMMIT")
        for _, text in indexes:
            db.execute(text)
    finally:
        db.close()
    return settings


async def postgres_table(data_dir: Path, endpoints: int) -> Settings:
    import asyncpg
    import pg_bench  # only with PostgreSQL

    settings = await pg_bench.fresh_database(data_dir)
    now = datetime.now(UTC)
    made = rows(endpoints, now - timedelta(days=1), lambda t: t)
    conn = await asyncpg.connect(pg_bench.URL)
    try:
        await conn.copy_records_to_table(
            "endpoints",
            columns=["id", "url", "secret", "enabled", "created_at"],
            records=endpoint_rows(settings, endpoints, now, True),
        )
        await conn.copy_records_to_table(
            "events", columns=["id", "event", "payload", "created_at"], records=made["events"]
        )
        await conn.copy_records_to_table(
            "deliveries",
            columns=[
                "id",
                "event_id",
                "endpoint_id",
                "status",
                "attempts_made",
                "next_attempt_at",
                "created_at",
                "finished_at",
            ],
            records=made["deliveries"],
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return settings


def timed(unit: Unit[Any], spent: list[tuple[str, float]]) -> Unit[Any]:
    """`unit`, with the time each of its statements took (yield to result) noted in `spent`."""
    op: Op = next(unit)
    while True:
        began = time.perf_counter()
        result = yield op
        spent.append((NAMES.get(id(op.statement), "?"), time.perf_counter() - began))
        try:
            op = unit.send(result)
        except StopIteration as done:
            return done.value


def give_back(ids: list[str], repaced: list[str]) -> Unit[None]:
    """Release what a claim leased, and reset the pace it moved: the table as it was."""
    yield from claims.release(owner=OWNER, delivery_ids=ids)
    if repaced:
        yield units.execute(_RESET_PACE, {"ids": repaced})


class Bench:
    """One database: its variants set up in turn and claimed from, each claim given back."""

    def __init__(self, db: str, settings: Settings, endpoints: int) -> None:
        self.db = db
        self.store: Store = open_store(settings)
        self.endpoints = endpoints
        self.paced = paced_ids(endpoints)
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.claimed: dict[str, list[int]] = defaultdict(list)
        self.claimed_paced: dict[str, list[int]] = defaultdict(list)
        # variant -> statement -> per claim: [calls, seconds]
        self.statements: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )

    async def switch(self, variant: tuple[str, float | None, bool, str, bool, bool]) -> None:
        _, rate, ordered, pace, in_flight, _ = variant
        paced = self.paced

        def arrange() -> Unit[None]:
            yield units.execute(_UNLEASE_ALL)
            yield units.execute(_UNPACE_ALL)
            if rate is not None:
                ahead = 3600.0 if pace == "ahead" else None
                yield units.execute(_SET_RATE, {"rate": rate, "ahead": ahead, "ids": paced})
            if ordered:
                yield units.execute(_SET_ORDERED, {"ids": paced})
            if in_flight:
                yield units.execute(_HOLD_HEADS, {"hold": 3600.0, "ids": paced})
            if self.store.is_postgres:
                yield units.execute(_ANALYZE)

        await self.store.write(arrange())

    async def claim_round(
        self, variant: tuple[str, float | None, bool, str, bool, bool], count: int, record: bool
    ) -> None:
        name, rate, *_, skip = variant
        skip_endpoints = [endpoint_id(1)] if skip else []
        paced = set(self.paced)
        for _ in range(count):
            spent: list[tuple[str, float]] = []
            began = time.perf_counter()
            claimed = await self.store.write(
                timed(
                    claims.claim(
                        owner=OWNER,
                        limit=64,
                        lease_seconds=30,
                        per_endpoint=2,
                        skip_endpoints=skip_endpoints,
                    ),
                    spent,
                )
            )
            took = time.perf_counter() - began
            if not claimed:
                raise RuntimeError(f"{self.db} {name}: the claim leased nothing")
            ids = [item.delivery_id for item in claimed]
            repaced = list({item.endpoint_id for item in claimed} & paced) if rate else []

            await self.store.write(give_back(ids, repaced))
            if record:
                self.ms[name].append(1000 * took)
                self.claimed[name].append(len(claimed))
                self.claimed_paced[name].append(
                    sum(1 for item in claimed if item.endpoint_id in paced)
                )
                per: dict[str, list[float]] = defaultdict(list)
                for statement, seconds in spent:
                    per[statement].append(seconds)
                for statement in {n for n, _ in spent} | set(self.statements[name]):
                    times = per.get(statement, [])
                    self.statements[name][statement].append((len(times), sum(times)))

    async def run(self, count: int) -> None:
        for r in range(ROUNDS):
            for variant in VARIANTS:
                await self.switch(variant)
                await self.claim_round(variant, WARM, record=False)
                await self.claim_round(variant, count // ROUNDS + (r < count % ROUNDS), record=True)
        await self.switch(VARIANTS[0])

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, _, _, _, _, _ in VARIANTS:
            ms = self.ms[name]
            per_statement = {}
            for statement, samples in sorted(
                self.statements[name].items(), key=lambda kv: -sum(s for _, s in kv[1])
            ):
                calls = statistics.median(c for c, _ in samples)
                per_statement[statement] = (
                    f"{calls:g} call(s), {1000 * statistics.median(s for _, s in samples):.2f} ms"
                )
            out[name] = {
                "median_ms": round(statistics.median(ms), 2),
                "p95_ms": round(percentile(ms, 95), 2),
                "claimed": round(statistics.median(self.claimed[name])),
                "of_them_paced": round(statistics.median(self.claimed_paced[name])),
                "statements_per_claim_median": per_statement,
            }
        return out

    async def close(self) -> None:
        await self.store.close()


# -- plans ------------------------------------------------------------------------------------


def explain_params(bench: Bench, variant: str) -> dict[str, dict[str, Any]]:
    """Parameters as the claim passes them to each statement, for one variant."""
    skip = [endpoint_id(1)] if "skipped" in variant else []
    paced = [] if variant.startswith("none") else bench.paced
    base = {"owner": OWNER, "lease_seconds": 30.0, "limit": 64, "per_endpoint": 2}
    return {
        "_PACED_IDS": {},
        "_PACED": {"skip": skip, "limit": 64},
        "_HEAD": {"id": bench.paced[0]},
        "_DUE_OF": {"id": bench.paced[0], "n": 2},
        "_LEASE_PER_ENDPOINT": {**base, "skip": [*skip, *paced]},
        "_LEASE_OLDEST": {**base, "candidates": 256},
    }


async def explain(bench: Bench, settings: Settings) -> dict[str, dict[str, str]]:
    plans: dict[str, dict[str, str]] = {}
    for variant in VARIANTS:
        name = variant[0]
        await bench.switch(variant)
        plans[name] = {}
        for statement, params in explain_params(bench, name).items():
            if name.startswith("none") and statement in ("_PACED", "_HEAD", "_DUE_OF"):
                continue
            if statement == "_LEASE_OLDEST" and name != "none":
                continue
            if (statement == "_HEAD") != ("ordered" in name) and statement in ("_HEAD", "_DUE_OF"):
                continue  # the statement of the other kind of paced endpoint
            text = await plan(bench, settings, getattr(claims, statement), params)
            plans[name][statement] = text
            print(f"\n-- {bench.db} / {name} / {statement}\n{text}")
    await bench.switch(VARIANTS[0])
    return plans


async def plan(bench: Bench, settings: Settings, statement: Statement, params: Any) -> str:
    if bench.store.is_postgres:
        import asyncpg
        import pg_bench

        values = ", ".join(literal(params.get(n)) for n in statement.names)
        execute = f"EXECUTE p7({values})" if values else "EXECUTE p7"
        texts = []
        # A custom plan (the values known when planning, as on a prepared statement's first
        # five runs) and the generic one PostgreSQL settles on after them (the values are
        # parameters then), as for asyncpg's prepared statements, which the store runs.
        for mode in ("force_custom_plan", "force_generic_plan"):
            conn = await asyncpg.connect(pg_bench.URL)
            try:
                await conn.execute(f"SET plan_cache_mode = {mode}")
                await conn.execute("PREPARE p7 AS " + statement.postgres)
                async with conn.transaction():
                    found = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + execute)
                    texts.append(f"[{mode}]\n" + "\n".join(row[0] for row in found))
                    raise _RollBack
            except _RollBack:
                pass
            finally:
                await conn.close()
        # A list of a thousand ids, shown whole in a filter, says nothing more than its length.
        return _LIST.sub(
            lambda m: f"[{m.group(1) or m.group(2)}, ... {m.group(0).count(',') + 1} ids]",
            "\n".join(texts),
        )
    from hookline.store.sqlite import _params

    db = sqlite3.connect(settings.data_dir / "hookline.db")
    try:
        bound = _params(statement, params, datetime.now(UTC))
        found = db.execute("EXPLAIN QUERY PLAN " + statement.sqlite, bound).fetchall()
        # (id, parent, notused, detail): indent by depth
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, _, detail in found:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        return "\n".join(lines)
    finally:
        db.close()


class _RollBack(Exception):
    pass


def literal(value: Any) -> str:
    """A parameter as a PostgreSQL literal (EXECUTE takes values, not parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return f"ARRAY[{', '.join(literal(v) for v in value)}]::text[]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


_LIST = re.compile(r"'\{(wh_\d+),[^}]*\}'|ARRAY\['(wh_\d+)'[^\]]*\]")


# -- two fixes, tried on this table (not hookline's schema or statements) ---------------------

# The probe with the paced endpoints left out by their columns, not by a list of their ids.
_BY_COLUMNS = "WHERE NOT (endpoints.rate_limit IS NOT NULL OR endpoints.ordered) AND NOT"
_PROBE_BY_COLUMNS = sql(
    claims._PROBE_CORRELATED.replace("WHERE NOT", _BY_COLUMNS),
    postgres=claims._PROBE_LATERAL.replace("WHERE NOT", _BY_COLUMNS),
)
# The paced endpoints in _PACED's order, so that its ORDER BY ... LIMIT stops after `limit`
# endpoints with due work instead of testing every paced endpoint and sorting them.
_PACED_ORDER_INDEX = (
    "CREATE INDEX ix_p7_paced_order ON endpoints (rate_next_at{nulls}, id)"
    " WHERE rate_limit IS NOT NULL OR ordered"
)
TRIES = 10


async def try_fixes(bench: Bench, settings: Settings) -> dict[str, str]:
    """Each statement as it is and as it could be, timed over TRIES runs of one prepared
    statement (on PostgreSQL the generic plan takes over from the sixth run)."""
    base = {"owner": OWNER, "lease_seconds": 30.0, "limit": 64, "per_endpoint": 2}
    found: dict[str, str] = {}
    await bench.switch(VARIANTS[4])  # rate-limited, paced an hour ahead: the claim probes
    for label, statement, skip in (
        ("probe, paced endpoints listed by id (as now)", claims._LEASE_PER_ENDPOINT, bench.paced),
        ("probe, paced endpoints left out by their columns", _PROBE_BY_COLUMNS, []),
    ):
        found[label] = await tries(bench, settings, statement, {**base, "skip": skip}, True)
    await bench.switch(VARIANTS[1])  # rate-limited, every one claimable
    for label, index in (("_PACED (as now)", False), ("_PACED with the index", True)):
        if index:
            await bench.store.write(_create(_PACED_ORDER_INDEX, bench.store.is_postgres))
        found[label] = await tries(bench, settings, claims._PACED, {"skip": [], "limit": 64})
    found.update(await in_a_row(bench))
    for label, text in found.items():
        print(f"{bench.db} {label}: {text}")
    await bench.switch(VARIANTS[0])
    return found


async def in_a_row(bench: Bench) -> dict[str, str]:
    """Claims one after another, nothing given back (the leases held, as while the attempts are
    in flight): what kind of endpoint each claim serves. The 1,000 ordered; then 100 ordered
    and 900 rate-limited."""
    found: dict[str, str] = {}
    first, rest = bench.paced[:100], bench.paced[100:]

    def mixed() -> Unit[None]:
        yield units.execute(_SET_ORDERED, {"ids": first})
        yield units.execute(_SET_RATE, {"rate": RATE, "ahead": None, "ids": rest})

    for label, variant, kind in (
        ("1,000 ordered", VARIANTS[2], dict.fromkeys(bench.paced, "ordered")),
        (
            "100 ordered + 900 rate-limited",
            VARIANTS[0],
            {**dict.fromkeys(first, "ordered"), **dict.fromkeys(rest, "rate-limited")},
        ),
    ):
        await bench.switch(variant)
        if variant is VARIANTS[0]:
            await bench.store.write(mixed())
        served = []
        for n in range(4):
            claimed = await bench.store.write(
                claims.claim(owner=f"{OWNER}:{n}", limit=64, lease_seconds=30, per_endpoint=2)
            )
            kinds = [kind.get(item.endpoint_id, "unpaced") for item in claimed]
            served.append(", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))))
        found[f"4 claims in a row, {label}"] = " | ".join(served)
    return found


def _create(text: str, postgres: bool) -> Unit[None]:
    yield units.execute(sql(text.format(nulls=" NULLS FIRST" if postgres else "")))
    if postgres:
        yield units.execute(_ANALYZE)


async def tries(
    bench: Bench, settings: Settings, statement: Statement, params: Any, writes: bool = False
) -> str:
    times: list[float] = []
    if bench.store.is_postgres:
        import asyncpg
        import pg_bench

        from hookline.store.sql import postgres_value

        conn = await asyncpg.connect(pg_bench.URL)
        try:
            prepared = await conn.prepare(statement.postgres)
            args = [postgres_value(params.get(n)) for n in statement.names]
            for _ in range(TRIES):
                transaction = conn.transaction()
                await transaction.start()
                began = time.perf_counter()
                await prepared.fetch(*args)
                times.append(1000 * (time.perf_counter() - began))
                await transaction.rollback()
        finally:
            await conn.close()
    else:
        from hookline.store.sqlite import _params

        db = sqlite3.connect(settings.data_dir / "hookline.db", isolation_level=None)
        try:
            for _ in range(TRIES):
                bound = _params(statement, params, datetime.now(UTC))
                db.execute("BEGIN")
                began = time.perf_counter()
                db.execute(statement.sqlite, bound).fetchall()
                times.append(1000 * (time.perf_counter() - began))
                db.execute("ROLLBACK")
        finally:
            db.close()
    first, rest = times[:5], times[5:]
    return (
        f"runs 1-5 median {statistics.median(first):.2f} ms,"
        f" runs 6-{TRIES} median {statistics.median(rest):.2f} ms"
    )


# -- main -------------------------------------------------------------------------------------


async def measure(
    db: str, args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], float]:
    data_dir = temp_dir(f"p7-{db}")
    bench: Bench | None = None
    try:
        began = time.perf_counter()
        if db == "sqlite":
            settings = await sqlite_table(data_dir, args.endpoints)
        else:
            settings = await postgres_table(data_dir, args.endpoints)
        setup = time.perf_counter() - began
        print(f"{db}: seeded in {setup:.1f} s")
        bench = Bench(db, settings, args.endpoints)
        await bench.run(args.claims)
        found = bench.summary()
        for name, figures in found.items():
            print(
                f"{db} {name:34s} median {figures['median_ms']:7.2f} ms  p95"
                f" {figures['p95_ms']:7.2f} ms  claimed {figures['claimed']}"
                f" ({figures['of_them_paced']} paced)"
            )
            for statement, text in figures["statements_per_claim_median"].items():
                print(f"    {statement:22s} {text}")
        plans: dict[str, Any] = await explain(bench, settings) if args.explain else {}
        if args.try_fixes:
            plans["tried fixes"] = await try_fixes(bench, settings)
        return found, plans, setup
    finally:
        if bench is not None:
            await bench.close()
        if db == "postgres":
            import pg_bench

            await pg_bench.drop_database()
        shutil.rmtree(data_dir, ignore_errors=True)


async def main(args: argparse.Namespace) -> Result:
    if args.quick:
        args.claims = 30
    dbs = ["sqlite"]
    if args.postgres:
        import pg_bench

        if not await pg_bench.available():
            raise RuntimeError(f"--postgres: no PostgreSQL at {pg_bench.PG_SERVER}")
        dbs.append("postgres")
    found: dict[str, dict[str, dict[str, Any]]] = {}
    plans: dict[str, Any] = {}
    setup: dict[str, float] = {}
    for db in dbs:
        found[db], plans[db], setup[db] = await measure(db, args)
    ratios = {
        db: {
            name: round(v[name]["median_ms"] / v["none"]["median_ms"], 2)
            for name in v
            if name != "none"
        }
        for db, v in found.items()
    }
    for db, r in ratios.items():
        print(f"{db} ratios to none (medians): {r}")
    worst = max(r[name] for r in ratios.values() for name in ("rate-limited", "ordered"))
    context: dict[str, Any] = {
        "table": f"{args.endpoints:,} endpoints, {len(paced_ids(args.endpoints)):,} paced with"
        f" {DUE_PACED} due each, the others {DUE_OTHER}; claim(limit=64, per_endpoint=2)",
        "claims_per_variant": args.claims,
        "setup_s": {db: round(s, 1) for db, s in setup.items()},
    }
    for db, v in found.items():
        context[f"{db}_ms"] = {
            name: f"median {f['median_ms']}, p95 {f['p95_ms']}; leased {f['claimed']}"
            f" ({f['of_them_paced']} paced)"
            for name, f in v.items()
        }
        context[f"{db}_ratio_to_none"] = ratios[db]
        context[f"{db}_statements_per_claim"] = {
            name: f["statements_per_claim_median"] for name, f in v.items()
        }
    if args.explain or args.try_fixes:
        context["plans"] = plans
    return Result(
        key="p7",
        title="P7 claim cost with 1,000 of 10,000 endpoints paced and backlogged ÷ none paced",
        ratio=worst,
        goal="",
        baseline="the same claim on the same table with no endpoint paced (the larger of"
        " rate-limited's and ordered's, over the databases)",
        context=context,
        plot={
            "bars": {
                f"{db}: {name}": f["median_ms"]
                for db, v in found.items()
                for name, f in v.items()
                if name in MAIN
            },
            "ylabel": "ms per claim (median)",
            "horizontal": True,
        },
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--claims", type=int, default=60)
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--try-fixes", action="store_true")


if __name__ == "__main__":
    run(main, parse_args(__doc__, options))
