"""Run every benchmark, then write docs/benchmarks.md and its plots in docs/img/.

Each script runs as its own process with `--json`, one after the other (never two at once:
they would measure each other), and prints as it goes. The machine's load is noted before
and after each, since other work may share this machine. Then the table, a section per
benchmark (method, numbers, plot, and for a missed goal what bounds it) and the plots
(matplotlib, Agg backend) are written. A benchmark that fails is reported as failed.

    .venv/bin/python bench/run_all.py [--quick] [--only p1,p3] [--no-postgres] [--rewrite]

Every ratio measured is appended to $TMPDIR/hookline-bench-history.json, and the doc lists
them per benchmark. The results are also kept in $TMPDIR/hookline-bench-results.json:
`--rewrite` writes the doc and plots again from them without running anything, and `--only`
replaces just the named benchmarks' results in them (the others stay as they were, with
their load notes).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"
PYTHON = sys.executable
# Every ratio run_all has measured on this machine, per benchmark: the spread between runs
# says how far to trust one run near its goal.
HISTORY = Path(tempfile.gettempdir()) / "hookline-bench-history.json"

# (key, script, extra arguments, needs PostgreSQL)
BENCHMARKS: list[tuple[str, str, list[str], bool]] = [
    ("p1", "p1_serve_delivery.py", [], False),
    ("worker_cost", "worker_cost.py", [], False),
    ("p2", "p2_api_messages.py", [], False),
    ("serve_registrations", "serve_registrations.py", [], False),
    ("p3", "p3_latency_hanging_receiver.py", [], False),
    ("p3_backlog", "p3_latency_hanging_receiver.py", ["--backlog", "100000"], False),
    ("p4", "p4_isolation.py", [], False),
    ("p4_hang", "p4_hang.py", [], False),
    ("p5", "p5_claim_cost.py", ["--postgres"], False),
    ("p7", "p7_paced_claim_cost.py", ["--postgres"], False),
    ("p6", "p6_pg_workers.py", [], True),
    ("p6_unpinned", "p6_pg_workers.py", ["--no-pin"], True),
    ("latency", "latency.py", [], False),
]

OWN_SELECT = "SELECT 1: hookline's SQLite thread"  # api_request_cost's name for the primitive
# P7's variants shown in the table (the others are context, in its section).
MAIN_P7 = ("none", "rate-limited", "ordered")

# What each benchmark asks, shown above its numbers.
QUESTIONS = {
    "p1": "Does `hookline serve` on SQLite deliver at least half as fast as a raw aiohttp "
    "client posting the same bodies to the same receiver?",
    "worker_cost": "Diagnostic for P1: where does the worker's CPU per delivery go, sending "
    "versus claiming and recording?",
    "p2": "Does `POST /users/messages` (3 subscribed endpoints) through `hookline api` serve "
    "at least half the requests/s of a bare FastAPI route in the same server set-up?",
    "api_cost": "Diagnostic for P2: what does one request cost, in CPU, in one process, "
    "without sockets or concurrency?",
    "p3": "Does a subscribed receiver that hangs leave `POST /users` p99 latency within 1.2x "
    "of the same server with nothing subscribed?",
    "p3_backlog": "P3 again, but the hanging receiver has been hanging a while: 100,000 of its "
    "deliveries are queued, due, before the run (context for P3; same goal).",
    "p4": "With 1 of 10 endpoints hanging, do the 9 healthy ones still get at least 0.9x the "
    "deliveries/s that all 10 get when all are healthy?",
    "p4_hang": "With 32 endpoints that never answer beside 3 healthy ones, and the default 15 s "
    "timeout, do the 3 still get at least 0.9x the deliveries/s they get alone?",
    "p5": "Does one claim (claim + completion) cost at most 1.5x as much with 1,000,000 "
    "deliveries in the table as with 10,000, and does the worker stay under 200 MB RSS?",
    "p7": "What does one claim cost with 10,000 endpoints of which 1,000 are rate-limited or "
    "ordered and backlogged, against the same table with none of them paced?",
    "p6": "On PostgreSQL, how do deliveries/s change with 2 worker processes instead of 1 "
    "(workers pinned to one CPU, the sink to the other)?",
    "p6_unpinned": "P6 again with nothing pinned (context).",
    "latency": "How long from `POST /users` to the receiver getting the webhook, at a light "
    "steady load?",
}

# What bounds a missed goal: the reading of the evidence, kept with the generator so that
# it is rewritten when the numbers move. The evidence itself (profiles) comes from the run.
BOUNDS = {
    "p1": """\
- **CPU per delivery in the one serve process.** Draining the backlog, `hookline serve` used
  {p1_cpu_serve} ms of CPU per delivery (all its threads, from /proc) against {p1_cpu_raw} ms
  per POST for the raw aiohttp client: {p1_cpu_x}x, about the inverse of the ratio. The
  drain is bound by one Python process's CPU (the profiled drain: {p1_cpu}% of one core; the
  sink has the other); reaching 0.5 needs about {p1_target} ms per delivery or less.
- **Not the sender.** In-process (`worker_cost`), `Sender.send` alone costs {wc_sender} ms
  per delivery at 64 in flight against {wc_raw} ms for the raw aiohttp POST: signing,
  the sealed secret, the guarded connector and the 4 KiB read limit cost next to nothing.
- **The worker around it.** The worker draining the same backlog with a stub sender (no
  HTTP) costs {wc_stub} ms per delivery ({wc_stub_split} ms event loop / SQLite's thread:
  claims, result batches, a task and a rendered body per attempt); with the real sender it
  costs {wc_real} ms ({wc_real_split}), more than the sum of the two ({wc_sum} ms).
- **Claims and sends take turns instead of overlapping.** The receiver answers in well
  under a millisecond, while a claim is a round trip through the SQLite connection's thread
  of a few milliseconds (P5: ~{p5_claim} ms for a claim and its record): the worker claims a batch,
  sends it, and its slots are empty again before the next claim is back. In P4 (the same
  worker, in-process) it averaged {p4_inflight} attempts in flight out of 64. With few
  requests per event-loop wake-up, the loop and syscall overhead per request is not
  amortized as it is at 64 in flight: that is the excess over the sum above. More slots or a
  higher per-endpoint cap would not help; cheaper claims and records, or claiming the next
  batch while the current one is in flight, would.
- **py-spy** on the serve process (the untimed profiled drain; shares of the event loop
  thread's samples, inclusive): {p1_incl}; the SQLite connection's thread busy
  {p1_sqlite_busy}% of the time. Samples in uvloop's C code (socket I/O) are the largest
  single block.
- The live run (users registered through the same process while it delivers) is slower
  still: the API's requests share that CPU and the one SQLite connection (see P2).""",
    "p2": """\
- **CPU per request in the one process.** The API process ran at {p2_cpu}% of one core under
  load (the untimed profiled run) and answered {p2_rate} req/s: about {p2_ms_per_req} ms of
  CPU per request. In-process, one at a time (`api_request_cost`), `POST /users/messages`
  with 3 endpoints costs {cost_msg3} ms of CPU against {cost_bare} ms for the bare route
  ({cost_ratio}x; both include the in-process httpx client's share); `GET /health` through
  the full middleware stack costs {cost_health} ms, so the middleware is not it.
- **Not the driver any more.** hookline's SQLite connection (`sqlite_thread.py`) makes
  {hops} hand-offs to its thread per request, one per statement, where aiosqlite made 26
  (three or four per statement); one `SELECT 1` costs {own_ms} ms of CPU through it against
  {aiosqlite_ms} ms through aiosqlite. The route's CPU did not fall with that (3.76 ms
  before, in the run that counted 26): what is left is SQLAlchemy's async engine and ORM
  session (one `SELECT 1` through a SQLAlchemy async connection costs {sa_ms} ms, against
  ~0.001 ms in plain sqlite3; the route runs about seven statements and a commit) and
  FastAPI's dependency and validation machinery. The same route with 0 endpoints subscribed
  costs {cost_msg0} ms, so the deliveries themselves are a small part of it.
- **The event loop's time** (py-spy, the same run): {p2_profile}.
- **One SQLite connection.** Requests queue for the single pooled connection
  (`db.py`: `pool_size=1`) and hold it for their whole transaction, so the route is serial
  however many requests are in flight.
- What would move it: fewer round trips per request (SQLAlchemy Core instead of the ORM
  session on this route; message, event and deliveries in fewer statements), and group
  commit (one task writing many requests' rows in one transaction), the structural
  cure for SQLite's single writer. The bare route is ~{cost_bare} ms a request: a ratio
  of 0.5 leaves about that much again for auth, validation and the whole database write,
  which no per-request transaction through SQLAlchemy reaches here.""",
    "p3": """\
{p3_lead}- **Not the hanging endpoint's backlog any more.** With its slots full, the worker passes
  the hanging endpoint over, and a claim that passes endpoints over now probes each other
  endpoint through `ix_deliveries_endpoint_pending` (migration 0004) instead of walking the
  passed-over endpoint's whole due backlog in `ix_deliveries_due`, which grew with every
  request: P5's "skip" shape costs {skip_small} ms a claim with {small:,} rows queued and
  {skip_big} ms with {big:,} (it was 4.6 ms and 168 ms at 1,000,000 before). With a
  backlog of {p3_backlog:,} before the run, P3_BACKLOG now stays near P3.
- **What is left:** the worker is woken after every commit that published, and each
  `POST /users` adds one (short) claim on the SQLite connection the API's transactions also
  need; at the same load the serve process used {p3_cpu_hang}% of one core with the hanging
  receiver against {p3_cpu_none}% with nothing subscribed. The p99 of ~1,200 samples also
  moves with this machine's load (see the per-round p99s).
- Profiles (extra untimed phase): hanging: {p3_hang}. None subscribed: {p3_none}.""",
    "p4": """\
- **Fewer deliveries per claim.** The worker tops an endpoint up by at most 2 per claim
  (half its cap of 4), so a claim returns at most 2 x the endpoints that have work: here
  {p4_per_claim} deliveries per claim (all healthy / one hanging, the hanging one being
  passed over). The drain is CPU-bound on the claim/record machinery (see P1 and
  `worker_cost`), so about 10% more claims per healthy delivery costs up to that much
  throughput: worker CPU per 1,000 healthy deliveries was {p4_cpu}. Passing the hanging
  endpoint over no longer scans its backlog (P5's "skip" shape: {skip_small} ms a claim
  with {small:,} rows queued, {skip_big} ms with {big:,}). 4 of the 64 slots are held by
  hung attempts, which does not matter while the worker averages {p4_inflight} in flight.
- Spread between rounds: all healthy {p4_healthy} deliveries/s, one hanging {p4_hanging};
  where these overlap, the miss is within this machine's noise.
""",
    "p4_hang": """\
- **Before the first timeout the worker cannot tell a hanging endpoint from a slow one.** An
  endpoint it has not seen answer gets one attempt at a time, and those endpoints with the
  slow lane's hold at most three quarters of the 64 slots: here the hanging ones held
  {p4h_held} attempts when the healthy ones were done. Had they held every slot, the healthy
  ones would have waited for the first timeouts (15 s; that is what a ratio near 0.1 means).
- The healthy endpoints' first delivery came after {p4h_first} ms (alone / with the hanging
  ones): the time the first claim and their first answers take before they are topped up
  to their cap.
- Spread between rounds: alone {p4h_alone} deliveries/s, with the hanging ones {p4h_hang};
  where these overlap, the miss is within this machine's noise.
""",
    "p5": """\
- See the per-shape numbers: a shape whose cost grows with the table is bounded by a scan
  (the "skip" shape, which is context, does).""",
}


# One line per missed goal for the summary under the table.
SHORT = {
    "p1": "CPU per delivery in the one serve process (several times the raw client's): not the "
    "sender, which costs what a raw aiohttp POST does, but the claim/record machinery around "
    "it, and claims and sends taking turns so that few attempts are in flight.",
    "p2": "CPU per request in the one API process: SQLAlchemy's async engine and ORM session "
    "(about seven statements and a commit) and FastAPI's machinery, serialized on the single "
    "SQLite connection; the bare route costs a small fraction of that. Cutting the driver's "
    "hand-offs from 26 to 9 per request did not lower it.",
    "p3": "the worker claims after every publishing commit, on the SQLite connection the "
    "API needs (the claim no longer scans the hanging endpoint's backlog), and the p99 of "
    "~1,200 samples moves with this machine's load.",
    "p3_backlog": "the worker claims after every publishing commit, on the SQLite connection "
    "the API needs; the claim no longer scans the hanging endpoint's backlog (P5's 'skip' "
    "shape is flat), and the p99 moves with this machine's load.",
    "p4": "fewer deliveries per claim (the worker tops an endpoint up by at most 2 per claim, so "
    "a claim returns 18 instead of 20 with one of 10 endpoints passed over) on a drain that "
    "is CPU-bound on claiming and recording: ~10% more claim cost per healthy delivery, plus "
    "this machine's noise.",
    "p5": "a scan that grows with the table (see the shapes).",
    "p4_hang": "the hanging endpoints hold slots the healthy ones need (see the attempts in "
    "flight to them), or this machine's noise.",
}


def snapshot() -> dict[str, Any]:
    """The machine and what else runs on it right now."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    top = subprocess.run(
        ["ps", "-eo", "pcpu,etime,comm,args", "--sort=-pcpu"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()[1:8]
    return {
        "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "uptime": uptime.strip(),
        "top": [line[:140] for line in top],
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_one(key: str, script: str, extra: list[str], quick: bool, out: Path) -> dict[str, Any]:
    command = [PYTHON, str(REPO / "bench" / script), *extra, *(["--quick"] if quick else [])]
    before = snapshot()
    began = time.monotonic()
    print(f"\n######## {key}: {' '.join(command[1:])}", flush=True)
    proc = subprocess.run([*command, "--json", str(out)], cwd=REPO, check=False)
    record: dict[str, Any] = {
        "key": key,
        "wall_s": round(time.monotonic() - began, 1),
        "before": before,
        "after": snapshot(),
        "command": " ".join([".venv/bin/python", f"bench/{script}", *command[2:]]),
    }
    if proc.returncode != 0 or not out.exists():
        record["error"] = f"exited {proc.returncode}"
        return record
    record.update({k: v for k, v in json.loads(out.read_text()).items() if k != "key"})
    return record


# ---------------------------------------------------------------------------------- plots


def bar_plot(
    path: Path, title: str, bars: dict[str, float], ylabel: str, *, horizontal: bool = False
) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2 if not horizontal else 5))
    names, values = list(bars), list(bars.values())
    colors = ["#8a8a8a"] + ["#2b6cb0"] * (len(values) - 1)
    if horizontal:
        ax.barh(names[::-1], values[::-1], color=colors[::-1])
        ax.set_xlabel(ylabel)
        for i, v in enumerate(values[::-1]):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    else:
        ax.bar(names, values, color=colors)
        ax.set_ylabel(ylabel)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=9)
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_plot(path: Path, title: str, series: dict[str, list[float]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, values in series.items():
        ordered = sorted(values)
        if not ordered:
            continue
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.plot(ordered, ys, label=f"{name} (n={len(ordered)})")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("latency, ms (log)")
    ax.set_ylabel("fraction of requests at or below")
    ax.axhline(0.99, color="#bbbbbb", linewidth=0.8, linestyle="--")
    ax.text(ax.get_xlim()[0], 0.99, " p99", va="bottom", fontsize=8, color="#777777")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_plot(path: Path, result: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for shape, costs in result["plot"]["cost_ms"].items():
        sizes = sorted(int(s) for s in costs)
        ax.plot(sizes, [costs[str(s)] for s in sizes], marker="o", label=f"SQLite, {shape}")
    for shape, costs in (result["plot"].get("pg_cost_ms") or {}).items():
        sizes = sorted(int(s) for s in costs)
        ax.plot(
            sizes,
            [costs[str(s)] for s in sizes],
            marker="s",
            linestyle="--",
            label=f"PostgreSQL, {shape}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deliveries in the table (log)")
    ax.set_ylabel("claim + complete, median ms (log)")
    ax.legend(fontsize=8)
    ax.set_title("P5: cost of one claim vs table size", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_plot(path: Path, results: list[dict[str, Any]]) -> None:
    rows = [r for r in results if "ratio" in r and r.get("goal")]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.4))
    for i, r in enumerate(reversed(rows)):
        color = "#2f855a" if r["met"] else "#c53030"
        ax.barh(i, r["ratio"], color=color)
        target = float(r["goal"].split()[1])
        ax.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=2)
        label = f" {r['ratio']:.2f} (goal {r['goal']})"
        ax.text(max(r["ratio"], target) * 1.04, i, label, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r["key"].upper() for r in reversed(rows)])
    ax.set_xscale("log")
    ax.set_xlim(right=max(max(r["ratio"], float(r["goal"].split()[1])) for r in rows) * 8)
    ax.set_xlabel("measured ratio (log); black mark = goal; green met, red missed")
    ax.set_title("Benchmarks against their goals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(results: list[dict[str, Any]]) -> dict[str, str]:
    IMG.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    for r in results:
        if "plot" not in r:
            continue
        path = IMG / f"{r['key']}.png"
        p = r["plot"]
        if "bars" in p:
            bar_plot(
                path, r["title"], p["bars"], p["ylabel"], horizontal=p.get("horizontal", False)
            )
        elif "latency_ms" in p:
            latency_plot(path, r["title"], p["latency_ms"])
        elif "cost_ms" in p:
            claim_plot(path, r)
        else:
            continue
        made[r["key"]] = f"img/{path.name}"
    summary_plot(IMG / "summary.png", results)
    made["summary"] = "img/summary.png"
    return made


# ---------------------------------------------------------------------------------- the doc


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def spread(r: dict[str, Any], history: dict[str, list[Any]]) -> tuple[int, int] | None:
    """(runs that met the goal, runs) when the recorded runs fall on both sides of it."""
    if not r.get("goal"):
        return None
    op, _, value = r["goal"].partition(" ")
    ratios = [ratio for _, ratio in history.get(r["key"], [])]
    met = sum(x >= float(value) if op == ">=" else x <= float(value) for x in ratios)
    return (met, len(ratios)) if 0 < met < len(ratios) else None


def bullets(w: Any, name: str, value: Any, depth: int = 0) -> None:
    """A context entry as a bullet; a dict holding dicts as nested bullets."""
    pad = "  " * depth
    if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
        w(f"{pad}- {name}:")
        for key, inner in value.items():
            bullets(w, str(key), inner, depth + 1)
    else:
        w(f"{pad}- {name}: {fmt(value)}")


def headline(r: dict[str, Any]) -> str:
    """The absolute numbers for the table: the first few context entries, short."""
    c = r.get("context", {})
    key = r["key"]
    if key == "p1":
        return (
            f"serve {fmt(c['serve_deliveries_per_s'])} deliveries/s vs raw"
            f" {fmt(c['raw_client_per_s'])} POST/s; {c['deliveries']}, {c['in_flight']} in flight"
        )
    if key == "p2":
        return (
            f"hookline {fmt(c['hookline_api_req_per_s'])} req/s vs bare"
            f" {fmt(c['bare_fastapi_req_per_s'])} req/s ({c['load']})"
        )
    if key == "api_cost":
        m = c["cpu_ms_per_request"]
        return (
            f"{m['POST /users/messages, 3 endpoints']:.2f} vs {m['bare FastAPI POST route']:.2f}"
            f" ms CPU/request; {fmt(c['sqlite_thread_handoffs_per_request'])} SQLite hand-offs"
        )
    if key.startswith("p3"):
        return (
            f"p99 {c['hanging_receiver_ms']['p99']} ms (hanging) vs"
            f" {c['no_receiver_ms']['p99']} ms (none); p50 {c['hanging_receiver_ms']['p50']}"
            f" vs {c['no_receiver_ms']['p50']} ms; {c['load']}"
        )
    if key == "p4":
        return (
            f"{fmt(c['one_hanging_healthy_deliveries_per_s'])} vs"
            f" {fmt(c['all_healthy_deliveries_per_s'])} healthy deliveries/s"
        )
    if key == "p4_hang":
        return (
            f"{fmt(c['with_32_hanging_healthy_deliveries_per_s'])} vs"
            f" {fmt(c['alone_healthy_deliveries_per_s'])} healthy deliveries/s; first healthy"
            f" delivery after {fmt(c['ms_to_first_healthy_delivery']['with 32 hanging'])} ms"
        )
    if key == "p5":
        sq = c["sqlite_claim_plus_complete_ms"]
        rss = "; ".join(f"{k}: {v['peak_rss_mb']} MB" for k, v in c["worker_rss_mb"].items())
        return f"history {fmt(sq['history'])} ms; backlog {fmt(sq['backlog'])} ms; worker RSS {rss}"
    if key == "p7":
        return "; ".join(
            f"{db} " + ", ".join(f"{n} {c[f'{db}_ms'][n].split(';')[0]}" for n in MAIN_P7) + " ms"
            for db in ("sqlite", "postgres")
            if f"{db}_ms" in c
        )
    if key.startswith("p6"):
        return (
            f"1 worker {fmt(c['one_worker_per_s'])}/s, 2 workers {fmt(c['two_workers_per_s'])}/s"
            f" ({c['pinning']})"
        )
    if key == "worker_cost":
        m = c["cpu_ms_per_delivery"]
        return "; ".join(f"{k} {v:.3f} ms CPU" for k, v in m.items())
    if key == "latency":
        return (
            f"event→receiver p50 {c['event_to_receiver_ms']['p50']} ms, p99"
            f" {c['event_to_receiver_ms']['p99']} ms; POST answer p50"
            f" {c['post_users_answer_ms']['p50']} ms; {c['load']}"
        )
    return fmt(c)


def bound_values(by_key: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """The numbers the BOUNDS texts quote, from this run."""
    v: dict[str, Any] = {}

    def profile_line(p: dict[str, Any]) -> str:
        parts = [
            f"process CPU {p.get('process_cpu_percent', '?')}% of one core",
            f"SQLite thread busy {p.get('sqlite_thread_busy_percent', '?')}%",
        ]
        if "event_loop_by_package_percent" in p:
            parts.append(
                "event loop samples: "
                + ", ".join(f"{k} {x}%" for k, x in p["event_loop_by_package_percent"].items())
            )
        return "; ".join(parts)

    p1 = (
        by_key.get("p1", {})
        .get("context", {})
        .get("serve_profile_while_draining (extra run, not timed)", {})
    )
    pk = p1.get("event_loop_by_package_percent", {})
    v.update(
        p1_cpu=p1.get("process_cpu_percent", "?"),
        p1_idle=pk.get("uvloop C code (socket I/O, or idle)", "?"),
        p1_aiohttp=pk.get("aiohttp (sending)", "?"),
        p1_aiosqlite=pk.get("SQLite hand-off to its thread", "?"),
    )
    c1 = by_key.get("p1", {}).get("context", {})
    per = c1.get("cpu_ms_per_delivery", {})
    serve_cpu, raw_cpu = per.get("serve process", float("nan")), per.get("raw client", float("nan"))
    ratio1 = by_key.get("p1", {}).get("ratio", float("nan"))
    v.update(
        p1_cpu_serve=f"{serve_cpu:.3f}",
        p1_cpu_raw=f"{raw_cpu:.3f}",
        p1_cpu_x=f"{serve_cpu / raw_cpu:.1f}",
        p1_target=f"{serve_cpu * ratio1 / 0.5:.3f}",
        p1_incl=", ".join(
            f"{k} {x}%" for k, x in p1.get("event_loop_inclusive_percent", {}).items()
        )
        or "(py-spy not installed)",
        p1_sqlite_busy=p1.get("sqlite_thread_busy_percent", "?"),
    )
    wc = by_key.get("worker_cost", {}).get("context", {})
    wcm = wc.get("cpu_ms_per_delivery", {})
    split = wc.get("worker split, ms per delivery (event loop thread / SQLite's thread)", {})
    nan = float("nan")
    v.update(
        wc_raw=f"{wcm.get('raw aiohttp POST', nan):.3f}",
        wc_sender=f"{wcm.get('Sender.send', nan):.3f}",
        wc_stub=f"{wcm.get('worker, stub sender (no HTTP)', nan):.3f}",
        wc_real=f"{wcm.get('worker, real sender', nan):.3f}",
        wc_sum=f"{wcm.get('Sender.send', nan) + wcm.get('worker, stub sender (no HTTP)', nan):.3f}",
        wc_stub_split=split.get("worker, stub sender (no HTTP)", "?"),
        wc_real_split=split.get("worker, real sender", "?"),
    )
    p5c = by_key.get("p5", {}).get("context", {}).get("sqlite_claim_plus_complete_ms", {})
    v["p5_claim"] = next(iter(p5c.get("history", {}).values()), "?")
    c4 = by_key.get("p4", {}).get("context", {})
    v.update(
        p4_inflight=c4.get("mean_attempts_in_flight_of_64", {}).get("healthy", "?"),
        p4_healthy=fmt(c4.get("all_healthy_deliveries_per_s", "?")),
        p4_hanging=fmt(c4.get("one_hanging_healthy_deliveries_per_s", "?")),
        p4_cpu=fmt(c4.get("worker_cpu_s_per_1000_healthy_deliveries", "?")),
        p4_per_claim=" / ".join(
            str(x) for x in c4.get("deliveries_per_claim", {"?": "?"}).values()
        ),
    )
    c4h = by_key.get("p4_hang", {}).get("context", {})
    first = c4h.get("ms_to_first_healthy_delivery", {})
    v.update(
        p4h_held=fmt(c4h.get("attempts_in_flight_to_hanging_at_the_end", "?")),
        p4h_first=" / ".join(fmt(x) for x in first.values()) or "?",
        p4h_alone=fmt(c4h.get("alone_healthy_deliveries_per_s", "?")),
        p4h_hang=fmt(c4h.get("with_32_hanging_healthy_deliveries_per_s", "?")),
    )
    cost = by_key.get("api_cost", {}).get("context", {})
    m = cost.get("cpu_ms_per_request", {})
    handoffs = cost.get("sqlite_thread_handoffs_per_request", {})
    v.update(
        aiosqlite_ms=f"{m.get('SELECT 1: aiosqlite', float('nan')):.3f}",
        own_ms=f"{m.get(OWN_SELECT, float('nan')):.3f}",
        sa_ms=f"{m.get('SELECT 1: SQLAlchemy async engine.begin()', float('nan')):.2f}",
        cost_msg3=f"{m.get('POST /users/messages, 3 endpoints', float('nan')):.2f}",
        cost_bare=f"{m.get('bare FastAPI POST route', float('nan')):.2f}",
        cost_health=f"{m.get('GET /health (no database)', float('nan')):.2f}",
        cost_msg0=f"{m.get('POST /users/messages, 0 endpoints', nan):.2f}",
        cost_ratio=f"{by_key.get('api_cost', {}).get('ratio', float('nan')):.0f}",
        hops=f"{handoffs.get('POST /users/messages, 3 endpoints', '?')}",
        budget=f"{m.get('bare FastAPI POST route', float('nan')):.2f}",
    )
    p2 = by_key.get("p2", {}).get("context", {})
    prof2 = p2.get("api_profile_under_load (extra run, not counted)", {})
    rates = p2.get("hookline_api_req_per_s", [])
    rate = sum(rates) / len(rates) if rates else float("nan")
    v.update(
        p2_cpu=prof2.get("process_cpu_percent", "?"),
        p2_rate=f"{rate:.0f}",
        p2_ms_per_req=f"{10 * prof2.get('process_cpu_percent', 0) / rate:.1f}" if rates else "?",
        p2_profile=profile_line(prof2),
    )
    p3 = by_key.get(key if key.startswith("p3") else "p3", {}).get("context", {})
    hang = p3.get("profile_hanging (extra 4 s, not counted)", {})
    none = p3.get("profile_none (extra 4 s, not counted)", {})
    v.update(
        p3_hang=profile_line(hang),
        p3_none=profile_line(none),
        p3_cpu_hang=hang.get("process_cpu_percent", "?"),
        p3_cpu_none=none.get("process_cpu_percent", "?"),
        p3_sqlite_hang=hang.get("sqlite_thread_busy_percent", "?"),
        p3_sqlite_none=none.get("sqlite_thread_busy_percent", "?"),
        p3_backlog=p3.get("backlog_queued_for_hanging_endpoint_before_run", 0),
        p3_lead=""
        if p3.get("backlog_queued_for_hanging_endpoint_before_run")
        else "- **Small here, and noisy.** The hanging endpoint's backlog starts empty and grows\n"
        "  only by this run's requests, so the effect below is small; the per-round p99s above\n"
        "  swap places between the two servers, and whole runs have fallen on both sides of\n"
        "  1.2. The mechanism, which grows with a longer hang (see P3_BACKLOG):\n",
    )
    p5 = by_key.get("p5", {}).get("context", {})
    sizes = p5.get("sizes", [0, 0])
    skip = p5.get("sqlite_claim_plus_complete_ms", {}).get("skip", {})
    v.update(
        small=sizes[0],
        big=sizes[-1],
        skip_small=skip.get(f"{sizes[0]:,}", "?"),
        skip_big=skip.get(f"{sizes[-1]:,}", "?"),
    )
    return v


def write_doc(
    results: list[dict[str, Any]],
    images: dict[str, str],
    start: dict[str, Any],
    end: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    by_key = {r["key"]: r for r in results}
    history = json.loads(HISTORY.read_text()) if HISTORY.exists() else {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    out: list[str] = []
    w = out.append
    w("# Benchmarks\n")
    w(
        f"Generated by `.venv/bin/python bench/run_all.py{' --quick' if args.quick else ''}` on "
        f"{start['at']} at commit `{commit}`{' (src/ has local changes)' if dirty else ''}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs ({cpu_model()}).\n"
    )
    w(
        "Each benchmark measures its subject **and a baseline in the same run**, against the same "
        "receiver (a bare aiohttp app in its own process), and reports the **ratio**: this machine "
        "has 2 cores and is shared with other engineers' test runs, so absolute numbers swing from "
        "run to run (they are context only). Conditions are interleaved where they can be "
        "(A, B, A, B, ...) so that outside load falls on both. Every hookline process is a real "
        "`hookline serve|api|worker` process (fresh data dir, private networks allowed, rate "
        "limit and ping-on-create off, admin token from the environment) except in P4, P4_HANG "
        "and P5, which drive the worker and the queue in-process as `bench/delivery_throughput.py` "
        "does, and the two diagnostics (`api_cost`, `worker_cost`), which split a cost "
        "in-process. Every script takes `--quick` and `--json PATH`. Optional tools: `wrk` "
        "for P2 (`apt-get install wrk`; an aiohttp load generator otherwise) and py-spy for "
        "the profiles quoted below (`.venv/bin/pip install py-spy`; not in "
        "requirements.lock).\n"
    )
    w(f"![ratios against goals]({images.get('summary', '')})\n")
    w("## Results\n")
    w("| Benchmark | Measured ratio | Goal | Met? | Absolute numbers (context) | Command |")
    w("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            w(f"| {r['key']} | — | — | **failed** ({r['error']}) | — | `{r['command']}` |")
            continue
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        runs = spread(r, history)
        if runs is not None:
            met += f" (borderline: {runs[0]} of {runs[1]} runs met it)"
        extra = ""
        if r["key"] == "p5":
            peak = list(r["context"]["worker_rss_mb"].values())[-1]["peak_rss_mb"]
            extra = f"; RSS {peak} MB < 200 MB: {'yes' if peak < 200 else '**no**'}"
        w(
            f"| **{r['key'].upper()}** {r['title'].split(' ', 1)[1]} | {r['ratio']:.2f} | "
            f"{r['goal'] or '— (none set)'} | {met}{extra} | {headline(r)} | `{r['command']}` |"
        )
    w("")
    missed = [r for r in results if r.get("met") is False]
    if missed:
        w("**Goals missed, and what bounds each** (the evidence is in each section below):\n")
        for r in missed:
            w(
                f"- **{r['key'].upper()}** ({r['ratio']:.2f}, goal {r['goal']}): "
                f"{SHORT.get(r['key'], 'see its section.')}"
            )
        w("")
    borderline = [r for r in results if r.get("met") and spread(r, history) is not None]
    if borderline:
        w("**Met in this run, but not in every run** (see each section's list of runs):\n")
        for r in borderline:
            met_n, total = spread(r, history) or (0, 0)
            w(
                f"- **{r['key'].upper()}** ({r['ratio']:.2f} here; {met_n} of {total} runs met "
                f"{r['goal']}): {SHORT.get(r['key'], 'see its section.')}"
            )
        w("")
    w(
        "Ratio is the subject divided by the baseline named in each section; for latencies "
        "and costs lower is better (goals `<=`), for throughputs higher (goals `>=`).\n"
    )

    w("## Load on the machine\n")
    w(f"- before: `{start['uptime']}`")
    w(f"- after: `{end['uptime']}`")
    w(
        "- per benchmark, 1-minute load average before → after (2 CPUs; above ~1 means other "
        "work competed for the CPUs during that run):"
    )
    for r in results:
        la = r.get("context", {}).get("load_1min_before_after")
        if la:
            when = f"{r['wall_s']} s from {r['before']['at']}"
            w(f"  - {r['key']}: {la[0]:.2f} → {la[1]:.2f} ({when})")
    w(
        "- busiest processes when the run started (`ps --sort=-pcpu`; CPU% is averaged over "
        "each process's life):\n"
    )
    w("```")
    w("\n".join(start["top"]))
    w("```\n")

    for r in results:
        key = r["key"]
        w(f"## {key.upper()}: {r.get('title', key).split(' ', 1)[-1]}\n")
        w(f"*{QUESTIONS.get(key, '')}*\n")
        if "error" in r:
            w(f"**Failed** ({r['error']}); run `{r['command']}` to see why.\n")
            continue
        doc = (REPO / "bench" / r["command"].split()[1].split("/")[-1]).read_text()
        method = doc.split('"""', 2)[1].strip().split("\n\n    .venv/bin/python")[0]
        w("**Method** (from the script's docstring):\n")
        w("\n".join("> " + line if line else ">" for line in method.splitlines()) + "\n")
        verdict = (
            "no goal set"
            if r["met"] is None
            else f"goal {r['goal']}: **{'met' if r['met'] else 'missed'}**"
        )
        w(f"**Ratio: {r['ratio']:.3f}** ({r['baseline']}); {verdict}.\n")
        for note in r.get("notes", []):
            w(f"- {note}")
        runs = history.get(key, [])
        if len(runs) > 1:
            w(
                f"- every run of this benchmark by run_all on this machine so far (ratio):"
                f" {'; '.join(f'{at}: {ratio:.2f}' for at, ratio in runs)}"
            )
        w("\nNumbers from this run:\n")
        for name, value in r["context"].items():
            bullets(w, name, value)
        w("")
        if key in images:
            w(f"![{key}]({images[key]})\n")
        shaky = spread(r, history) is not None
        # A variant (p3_backlog) shares its benchmark's text unless it has its own (p4_hang).
        bounds = BOUNDS.get(key, BOUNDS.get(key.split("_")[0]))
        if (r["met"] is False or shaky) and bounds is not None:
            w("**What bounds it**" + (" (met here, but not in every run)" if shaky else "") + "\n")
            try:
                w(bounds.format(**bound_values(by_key, key)) + "\n")
            except (KeyError, ValueError, IndexError) as exc:
                w(bounds + f"\n\n(numbers unavailable: {exc})\n")
        w(f"Command: `{r['command']}`\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(out))
    print(f"\nwrote {DOC.relative_to(REPO)} and {len(images)} plot(s) in {IMG.relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated keys, e.g. p1,p3")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--rewrite", action="store_true", help="rewrite the doc from the last run's results"
    )
    args = parser.parse_args()
    saved = Path(tempfile.gettempdir()) / "hookline-bench-results.json"
    if args.rewrite:  # the doc and plots again from the last run's results, nothing re-run
        kept = json.loads(saved.read_text())
        write_doc(kept["results"], plots(kept["results"]), kept["start"], kept["end"], args)
        return
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only.split(",")]
    start = snapshot()
    results = []
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        for key, script, extra, needs_pg in chosen:
            if args.no_postgres:
                if needs_pg:
                    continue
                extra = [e for e in extra if e != "--postgres"]
            results.append(run_one(key, script, extra, args.quick, Path(tmp) / f"{key}.json"))
    end = snapshot()
    if args.only and saved.exists():  # rerun some: keep the last run's results for the rest
        kept = json.loads(saved.read_text())
        fresh = {r["key"]: r for r in results}
        order = [b[0] for b in BENCHMARKS]
        merged = {r["key"]: r for r in kept["results"]} | fresh
        results = sorted(merged.values(), key=lambda r: order.index(r["key"]))
        start = kept["start"]
    saved.write_text(json.dumps({"results": results, "start": start, "end": end}))
    history = json.loads(HISTORY.read_text()) if HISTORY.exists() else {}
    for r in results:
        if "ratio" in r and r["before"]["at"] not in {at for at, _ in history.get(r["key"], [])}:
            history.setdefault(r["key"], []).append([r["before"]["at"], r["ratio"]])
    HISTORY.write_text(json.dumps(history))
    write_doc(results, plots(results), start, end, args)


if __name__ == "__main__":
    main()
