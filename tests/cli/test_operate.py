"""`hookline endpoints|deliveries|events send|status` against a real `hookline serve`.

One server for the module (a temp data dir, a free port, private networks allowed), set up
through its API with an event type, an endpoint that answers 200 and one that is down, and an
event to both; then the real `hookline` command, run as a process, is read as people and
scripts read it: tables name the ids, --json is the API's JSON, and every mistake is one line
on stderr with exit status 2.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.support.process import ServeProcess, clean_environ, free_port

pytestmark = pytest.mark.e2e

ADMIN = "hl_admin_operate-commands-test-token"
TIMEOUT = 30


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        pass


@dataclass
class Hookline:
    url: str
    api: httpx.Client
    up: str  # an endpoint that answers 200
    down: str  # an endpoint nothing listens at
    event_id: str
    user_token: str

    def deliveries(self, endpoint: str) -> list[dict[str, Any]]:
        answer = self.api.get(f"/endpoints/{endpoint}/deliveries")
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data

    def wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            assert time.monotonic() < deadline, f"{what}: not within {TIMEOUT} s"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def hookline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hookline]:
    workdir = tmp_path_factory.mktemp("operate")
    port = free_port()
    env = clean_environ(
        HOOKLINE_DATA_DIR=str(workdir / "data"),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ADMIN_TOKEN=ADMIN,
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_PING_ON_CREATE="false",
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
        HOOKLINE_RETRY_SCHEDULE="3600",  # a failed attempt waits: only a retry sends it again
        HOOKLINE_POLL_INTERVAL="0.2",
        HOOKLINE_DELIVERY_TIMEOUT="5",
    )
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with (
            ServeProcess(workdir, env=env, port=port) as serve,
            httpx.Client(
                base_url=serve.base_url,
                timeout=TIMEOUT,
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as api,
        ):
            asyncio.run(serve.start())
            yield _populate(serve.base_url, api, receiver.server_address[1])
    finally:
        receiver.shutdown()
        receiver.server_close()


def _populate(url: str, api: httpx.Client, ok_port: int) -> Hookline:
    def created(answer: httpx.Response) -> Any:
        assert answer.status_code == 201, answer.text
        return answer.json()

    created(
        api.post(
            "/event-types",
            json={
                "name": "order.shipped",
                "schema": {
                    "type": "object",
                    "required": ["order_id"],
                    "properties": {"order_id": {"type": "string"}},
                },
            },
        )
    )
    up = created(
        api.post(
            "/endpoints",
            json={"url": f"http://127.0.0.1:{ok_port}/up", "events": ["order.shipped"]},
        )
    )["id"]
    down = created(
        api.post(
            "/endpoints",
            json={
                "url": f"http://127.0.0.1:{free_port()}/down",
                "events": ["order.shipped"],
                "description": "nothing listens here",
            },
        )
    )["id"]
    event = created(api.post("/events", json={"event": "order.shipped", "data": {"order_id": "1"}}))
    user = created(api.post("/users", json={"username": "olive"}))
    server = Hookline(url, api, up, down, event["id"], user["token"])
    server.wait(
        "both deliveries attempted",
        lambda: (
            [d["status"] for d in server.deliveries(up)] == ["succeeded"]
            and [d["attempts_made"] for d in server.deliveries(down)] == [1]
        ),
    )
    return server


def hookline(
    *args: str, url: str, token: str | None = ADMIN, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_URL"] = url
    if token is not None:
        env["HOOKLINE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "hookline", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The single `error: …; what to do` line of a command that stopped on a mistake."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: "), line
    assert "; " in line, f"no remedy: {line}"
    for name in names:
        assert name in line, line
    assert result.stdout == ""
    return line


def row(table: str, first: str) -> list[str]:
    """The cells of the table row starting with `first`."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{table}")


def test_endpoints_list_is_a_table_of_them_and_json_is_the_apis(hookline_server: Hookline) -> None:
    server = hookline_server
    table = ok(hookline("endpoints", "list", url=server.url))
    assert table.splitlines()[0].split() == ["ID", "STATE", "OWNER", "EVENTS", "CREATED", "URL"]
    assert row(table, server.up)[1] == "enabled"
    assert row(table, server.down)[1] == "failing"  # its deliveries fail
    assert row(table, server.down)[3] == "order.shipped"

    as_json = json.loads(ok(hookline("endpoints", "list", "--json", url=server.url)))
    assert as_json == server.api.get("/endpoints").json()

    one = json.loads(ok(hookline("endpoints", "list", "--limit", "1", "--json", url=server.url)))
    assert [e["id"] for e in one["data"]] == [server.down]  # newest first
    assert one["next_cursor"] is not None
    disabled = ok(hookline("endpoints", "list", "--disabled", url=server.url))
    assert disabled.strip() == "no endpoints"


def test_endpoints_show_has_its_settings_and_delivery_counts(hookline_server: Hookline) -> None:
    server = hookline_server
    shown = ok(hookline("endpoints", "show", server.down, url=server.url))
    assert re.search(rf"^id:\s+{server.down}$", shown, re.M)
    assert re.search(r"^description:\s+nothing listens here$", shown, re.M)
    assert re.search(r"^deliveries:\s+1 pending, 0 succeeded, 0 failed, 0 cancelled$", shown, re.M)

    as_json = json.loads(ok(hookline("endpoints", "show", server.up, "--json", url=server.url)))
    assert as_json == server.api.get(f"/endpoints/{server.up}").json()
    assert as_json["stats"]["succeeded"] == 1


def test_deliveries_list_show_and_retry(hookline_server: Hookline) -> None:
    server = hookline_server
    [delivery] = server.deliveries(server.down)
    table = ok(hookline("deliveries", "list", "--endpoint", server.down, url=server.url))
    cells = row(table, delivery["id"])
    assert cells[1:5] == ["pending", "1", "order.shipped", server.down]
    listed = json.loads(
        ok(hookline("deliveries", "list", "--endpoint", server.up, "--json", url=server.url))
    )
    assert listed == server.api.get(f"/endpoints/{server.up}/deliveries").json()
    failed = ok(
        hookline(
            "deliveries", "list", "--endpoint", server.up, "--status", "failed", url=server.url
        )
    )
    assert failed.strip() == "no deliveries"

    shown = ok(hookline("deliveries", "show", delivery["id"], url=server.url))
    assert re.search(rf"^event:\s+order.shipped \({server.event_id}\)$", shown, re.M)
    attempt = row(shown, "1")
    assert attempt[3] == "connection_error"
    assert "Cannot connect" in attempt[4] or "refused" in attempt[4].lower()

    retried = ok(hookline("deliveries", "retry", delivery["id"], url=server.url))
    assert delivery["id"] in retried
    server.wait(
        "the retry's attempt",
        lambda: server.api.get(f"/deliveries/{delivery['id']}").json()["attempts_made"] == 2,
    )
    shown = ok(hookline("deliveries", "show", delivery["id"], url=server.url))
    assert row(shown, "2")[3] == "connection_error"
    as_json = json.loads(
        ok(hookline("deliveries", "show", delivery["id"], "--json", url=server.url))
    )
    assert [a["number"] for a in as_json["attempts"]] == [1, 2]
    assert as_json == server.api.get(f"/deliveries/{delivery['id']}").json()


def test_deliveries_list_without_an_endpoint(hookline_server: Hookline) -> None:
    """Every endpoint's deliveries where this hookline has GET /deliveries; otherwise the
    command asks for --endpoint, in one line."""
    server = hookline_server
    result = hookline("deliveries", "list", url=server.url)
    if server.api.get("/deliveries").status_code == 404:
        one_line(result, "--endpoint")
        return
    table = ok(result)
    for endpoint in (server.up, server.down):
        [delivery] = server.deliveries(endpoint)
        assert row(table, delivery["id"])[4] == endpoint


def test_events_send_creates_an_event(hookline_server: Hookline) -> None:
    server = hookline_server
    sent = ok(
        hookline("events", "send", "order.shipped", "--data", '{"order_id": "o-7"}', url=server.url)
    )
    match = re.fullmatch(r"(evt_\w+) \(order\.shipped\): 2 deliveries\n", sent)
    assert match is not None, sent
    event = server.api.get(f"/events/{match[1]}").json()
    assert event["data"] == {"order_id": "o-7"}

    args = ("events", "send", "order.shipped", "--data", "-", "--idempotency-key", "k-1", "--json")
    first = json.loads(ok(hookline(*args, url=server.url, stdin='{"order_id": "o-8"}')))
    assert first["event"] == "order.shipped" and first["deliveries"] == 2
    again = ok(hookline(*args[:-1], url=server.url, stdin='{"order_id": "o-8"}'))
    assert again.startswith(f"{first['id']} (order.shipped): replayed")

    refused = one_line(
        hookline("events", "send", "order.shipped", "--data", '{"order_id": 7}', url=server.url),
        "422",
        "data.order_id",
    )
    assert "GET /event-types/order.shipped" in refused
    one_line(hookline("events", "send", "order.shipped", "--data", "{", url=server.url), "--data")
    one_line(hookline("events", "send", "no.such.type", url=server.url), "404", "no.such.type")


def test_status_prints_readiness_and_the_queue(hookline_server: Hookline) -> None:
    server = hookline_server
    printed = ok(hookline("status", url=server.url))
    assert re.search(r"^ready:\s+yes$", printed, re.M)
    assert re.search(
        r"^deliveries:\s+\d+ pending, \d+ succeeded, \d+ failed, 0 cancelled$", printed, re.M
    )
    assert re.search(r"^endpoints:\s+2 enabled, 0 disabled$", printed, re.M)
    for name in ("due now", "in flight", "oldest due", "events"):
        assert re.search(rf"^{name}:\s+\S", printed, re.M), name

    as_json = json.loads(ok(hookline("status", "--json", url=server.url)))
    assert as_json["ready"] is True
    assert as_json["endpoints"] == {"enabled": 2, "disabled": 0}
    assert set(as_json["deliveries"]) == {"pending", "succeeded", "failed", "cancelled"}
    assert as_json["deliveries"]["succeeded"] >= 1
    assert isinstance(as_json["due"], int) and isinstance(as_json["in_flight"], int)


def test_mistakes_are_one_line_and_exit_2(hookline_server: Hookline) -> None:
    server = hookline_server
    one_line(hookline("endpoints", "list", url=server.url, token=None), "no token", "--token")
    one_line(hookline("status", url=server.url, token=None), "no token")
    one_line(hookline("endpoints", "list", url=server.url, token="hl_admin_wrong"), "401")
    one_line(hookline("status", url=server.url, token=server.user_token), "403", "/metrics")
    one_line(
        hookline("events", "send", "order.shipped", url=server.url, token=server.user_token), "403"
    )
    unreachable = f"http://127.0.0.1:{free_port()}"
    one_line(hookline("endpoints", "list", url=unreachable), "not reachable", unreachable)
    one_line(hookline("status", url=unreachable), "not reachable")
    one_line(hookline("status", url="localhost:8000"), "HOOKLINE_URL")
    one_line(hookline("endpoints", "show", "wh_nope", url=server.url), "404", "endpoint wh_nope")
    one_line(hookline("deliveries", "show", "dlv_nope", url=server.url), "404", "delivery dlv_nope")
    one_line(hookline("deliveries", "retry", "dlv_nope", url=server.url), "404", "dlv_nope")
    one_line(
        hookline("deliveries", "list", "--endpoint", "wh_nope", url=server.url), "404", "wh_nope"
    )
    # A user's token sees only that user's own: another's endpoint is not found, as the API says.
    one_line(
        hookline("endpoints", "show", server.up, url=server.url, token=server.user_token), "404"
    )
