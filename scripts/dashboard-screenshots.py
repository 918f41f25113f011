#!/usr/bin/env python3
"""Screenshots of the dashboard's main pages, for the README and docs/: one command.

    .venv/bin/python scripts/dashboard-screenshots.py      # writes docs/img/dashboard-*.png

Starts a real `hookline serve` in a temporary data dir with a receiver on this machine, seeds
users, event types, endpoints and a day of deliveries (the last 24 hours' are written into its
SQLite database directly, back-dated, for the chart), then photographs the pages in Debian's
Chromium (/usr/bin/chromium, or HOOKLINE_TEST_CHROMIUM) through Playwright. Needs
`make install-dev` and `make chromium`; nothing is fetched from the network.
"""

import math
import os
import random
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from hookline.ids import lowest_at

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("HOOKLINE_TEST_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 860}
PAGES = [  # (file, what to open, full page)
    ("dashboard-overview.png", "/dashboard", False),
    ("dashboard-endpoints.png", "/dashboard/endpoints", False),
    ("dashboard-endpoint.png", "/dashboard/endpoints/{endpoint}", True),
    ("dashboard-delivery.png", "/dashboard/deliveries/{delivery}", True),
    ("dashboard-events.png", "/dashboard/events", False),
    ("dashboard-event-types.png", "/dashboard/event-types/{event_type}", False),
]


class Receiver(BaseHTTPRequestHandler):
    """200 for every path but /flaky/…, which answers 503 with a short body."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        failing = self.path.startswith("/flaky")
        body = b'{"error":"upstream busy"}' if failing else b'{"received":true}'
        self.send_response(503 if failing else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"hookline serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit("hookline serve did not become ready within 30 s")


def seed(api: httpx.Client, receiver: str) -> dict[str, str]:
    """Users, an event type, endpoints and a few live deliveries; what the pages will show."""
    for name in ("acme", "globex"):
        assert api.post("/users", json={"username": name}).status_code == 201
    schema = {
        "type": "object",
        "required": ["invoice_id", "amount", "currency"],
        "properties": {
            "invoice_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": 0},
            "currency": {"type": "string", "enum": ["EUR", "USD"]},
        },
    }
    api.post(
        "/event-types",
        json={"name": "invoice.paid", "description": "An invoice was paid.", "schema": schema},
    )
    created = {}
    for path, events, options in [
        ("/billing/webhooks", ["invoice.paid"], {"description": "Billing service"}),
        ("/crm/hooks", ["user_registered"], {"rate_limit": 20, "description": "CRM sync"}),
        ("/flaky/ingest", ["*"], {"description": "Data lake ingest"}),
        ("/audit", ["*"], {"ordered": True, "headers": {"X-Team": "security"}}),
    ]:
        response = api.post(
            "/endpoints", json={"url": receiver + path, "events": events, **options}
        )
        assert response.status_code == 201, response.text
        created[path] = response.json()["id"]
    for n in range(6):
        api.post("/users", json={"username": f"customer-{n}"})
        api.post(
            "/events",
            json={
                "event": "invoice.paid",
                "data": {"invoice_id": f"inv_{1000 + n}", "amount": 1200 + 350 * n, "currency": "EUR"},
            },
        )
    return created


def made_at(prefix: str, moment: datetime) -> str:
    """An id as `new_id` would have made it at `moment`: its time, then random characters."""
    lowest = lowest_at(prefix, int(moment.timestamp() * 1000))
    return lowest[:-16] + secrets.token_hex(8).upper()  # hex digits are Crockford's too


def backfill(database: Path, endpoint_ids: list[str]) -> None:
    """A day of deliveries, back-dated, for the chart: a daily curve and a failure spike."""
    now = datetime.now(UTC)
    rows_e, rows_d = [], []
    for minute in range(24 * 60, 2, -1):
        at = now - timedelta(minutes=minute)
        hour = at.hour + at.minute / 60
        rate = 6 + 5 * math.sin((hour - 9) / 24 * 2 * math.pi)
        spike = 420 < minute < 520
        for _ in range(max(0, int(random.gauss(rate, 1.5)))):
            moment = at + timedelta(seconds=random.uniform(0, 59))
            event_id, delivery_id = made_at("evt", moment), made_at("dlv", moment)
            failed = random.random() < (0.45 if spike else 0.03)
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
            done = (moment + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
            rows_e.append((event_id, "invoice.paid", '{"amount": 100}', stamp))
            rows_d.append(
                (
                    delivery_id,
                    event_id,
                    random.choice(endpoint_ids),
                    "failed" if failed else "succeeded",
                    3 if failed else 1,
                    stamp,
                    done,
                )
            )
    with sqlite3.connect(database, timeout=30) as db:
        db.executemany(
            "INSERT INTO events (id, event, payload, created_at) VALUES (?, ?, ?, ?)", rows_e
        )
        db.executemany(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempts_made,"
            " created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows_d,
        )


def main() -> None:
    random.seed(7)
    OUT.mkdir(parents=True, exist_ok=True)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}"
    work = Path(tempfile.mkdtemp(prefix="hookline-screenshots-"))
    port, token = free_port(), "hl_admin_" + secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_DATA_DIR=str(work / "data"),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ADMIN_TOKEN=token,
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_RETRY_SCHEDULE="0.5,1",
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_PING_ON_CREATE="false",
    )
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hookline", "serve"], env=env, cwd=work, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api:
            endpoints = seed(api, receiver_url)
            backfill(work / "data" / "hookline.db", list(endpoints.values()))
            time.sleep(3)  # the flaky endpoint's retries run out
            flaky = endpoints["/flaky/ingest"]
            failed = api.get(f"/endpoints/{flaky}/deliveries", params={"status": "failed"})
            delivery = next(
                d["id"] for d in failed.json()["data"] if d["attempts_made"] > 1
            )
        shoot(base, token, {"endpoint": flaky, "delivery": delivery, "event_type": "invoice.paid"})
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        receiver.shutdown()
    print(f"wrote {len(PAGES) + 1} screenshots to {OUT.relative_to(ROOT)}/")


def shoot(base: str, token: str, ids: dict[str, str]) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(base_url=base, viewport=VIEWPORT, device_scale_factor=1)
        context.route(
            "**/*",
            lambda route: route.continue_()
            if re.match(r"https?://127\.0\.0\.1[:/]", route.request.url)
            else route.abort(),
        )
        page = context.new_page()
        page.goto("/dashboard/sign-in")
        page.screenshot(path=str(OUT / "dashboard-sign-in.png"))
        page.get_by_label("Token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("[data-testid=who]")
        for name, path, full in PAGES:
            page.goto(path.format(**ids))
            if path == "/dashboard":
                page.wait_for_selector("canvas#chart[data-drawn]")
            if "deliveries" in path:  # the first attempt's headers, opened
                for summary in ("Request headers", "Response headers"):
                    page.get_by_text(summary).first.click()
            page.screenshot(path=str(OUT / name), full_page=full)
        browser.close()


if __name__ == "__main__":
    main()
