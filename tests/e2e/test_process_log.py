"""The log of a real `hookline serve`, in text and in JSON: one line per attempt with its fields,
one per request, start and stop, a warning per weakening setting, and nothing secret.

The receiver fails the first attempt (500) and takes the second; the log is then read whole
and must hold no token (the admin's, a user's, one sent in a query string), no endpoint secret
and nothing of the payload.
"""

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.process import ServeProcess, clean_environ, free_port
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

# Shorter than 32 characters: it must be warned of, and never written.
ADMIN_TOKEN = "hl_admin_Sh0rtT0ken-x9"
PAYLOAD = "PAYLOAD-zebra-7f3a-do-not-log"
SUBJECT = "SUBJECT-okapi-41c2"
QUERY_SECRET = "querysecret-5d1e"
FIELD = re.compile(r' (?P<key>[a-z_]+)=(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]+)')
TRAILING_FIELDS = re.compile(rf"(?P<message>.*?)(?P<fields>(?:{FIELD.pattern})*)")
TEXT_LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>\S+) (?P<rest>.*)"
)


def parse_text(line: str) -> dict[str, Any] | None:
    """A text line as a dict like a JSON line: time, level, logger, message and the fields
    (the `key=value` words that end it; a quoted value is a JSON string)."""
    match = TEXT_LINE.fullmatch(line)
    if match is None:
        return None
    rest = TRAILING_FIELDS.fullmatch(match["rest"])
    assert rest is not None
    found: dict[str, Any] = {}
    for field in FIELD.finditer(rest["fields"]):
        value = field["value"]
        found[field["key"]] = json.loads(value) if value.startswith('"') else value
    return {
        "time": match["time"],
        "level": match["level"],
        "logger": match["logger"],
        "message": rest["message"],
        **found,
    }


def read_log(text: str, log_format: str) -> list[dict[str, Any]]:
    """Every line hookline wrote (the harness's own `=== start` lines left out)."""
    lines = [line for line in text.splitlines() if line and not line.startswith("=== start")]
    parsed = []
    for line in lines:
        if log_format == "json":
            parsed.append(json.loads(line))  # every line is one JSON object
        else:
            entry = parse_text(line)
            assert entry is not None, f"not a log line: {line!r}"
            parsed.append(entry)
    return parsed


def attempt_fields(entry: dict[str, Any]) -> dict[str, str]:
    """The fields of an attempt line, as strings (text mode has no types)."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in entry.items()}


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_log_of_a_real_process(tmp_path: Path, log_format: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)  # readable by every user: warned of
    port = free_port()
    env = clean_environ(
        HOOKLINE_DATA_DIR=str(data_dir),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ADMIN_TOKEN=ADMIN_TOKEN,
        HOOKLINE_LOG_FORMAT=log_format,
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_PING_ON_CREATE="false",
        HOOKLINE_RATE_LIMIT_PER_SECOND="0",
        HOOKLINE_RETRY_SCHEDULE="0.3,1",
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_POLL_INTERVAL="0.2",
    )
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with Receiver() as receiver:
        receiver.script("/hook", [500, 200])
        with ServeProcess(tmp_path, env=env, port=port) as serve:
            await serve.start()
            async with httpx.AsyncClient(base_url=serve.base_url, timeout=10) as client:
                hook = await client.post(
                    "/webhook",
                    headers=admin,
                    json={
                        "event": "user_send_message",
                        "url": receiver.url(f"/hook?key={QUERY_SECRET}"),
                    },
                )
                assert hook.status_code == 201, hook.text
                secret = hook.json()["secret"]
                assert secret.startswith("whsec_")
                alice = (await client.post("/users", json={"username": "alice"})).json()
                await client.post("/users", json={"username": "bob"})
                user_token = alice["token"]
                sent = await client.post(
                    "/users/messages",
                    headers={"Authorization": f"Bearer {user_token}"},
                    json={
                        "sender": "alice",
                        "recipient": "bob",
                        "subject": SUBJECT,
                        "message": PAYLOAD,
                    },
                )
                assert sent.status_code == 201, sent.text
                # A token where none belongs: in a query string (logged without it).
                health = await client.get("/health", params={"token": user_token})
                assert health.status_code == 200
                await receiver.wait_for(2, path="/hook", timeout=15)
                await serve.wait_for_line("attempt succeeded", timeout=10)
                endpoint_id = hook.json()["id"]
                disabled = await client.patch(
                    f"/endpoints/{endpoint_id}", headers=admin, json={"enabled": False}
                )
                assert disabled.status_code == 200, disabled.text
            assert await serve.terminate(timeout=20) == 0
            text = serve.log_text()

    # Nothing secret, anywhere: tokens, the endpoint's secret, the payload, the query string.
    for needle in (ADMIN_TOKEN, user_token, secret, "whsec_", PAYLOAD, SUBJECT, QUERY_SECRET):
        assert needle not in text, f"{needle!r} is in the log"
    assert "Traceback" not in text

    entries = read_log(text, log_format)

    # One line per attempt: the first failed and will be retried, the second succeeded.
    attempts = [e for e in entries if e["message"] in {"attempt succeeded", "attempt failed"}]
    assert [e["level"] for e in attempts] == ["WARNING", "INFO"], attempts
    first, second = (attempt_fields(e) for e in attempts)
    for fields, number in ((first, "1"), (second, "2")):
        assert fields["logger"] == "hookline.worker"
        assert fields["event"] == "user_send_message"
        assert fields["event_id"].startswith("evt_")
        assert fields["delivery_id"].startswith("dlv_")
        assert fields["endpoint_id"] == endpoint_id
        assert fields["host"] == "127.0.0.1"
        assert fields["attempt"] == number
        assert int(fields["duration_ms"]) >= 0
    assert first["event_id"] == second["event_id"] and first["delivery_id"] == second["delivery_id"]
    assert first["status_code"] == "500" and first["error_kind"] == "http_status"
    assert first["delivery"] == "pending" and float(first["retry_in_s"]) == pytest.approx(0.3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["retry_at"])
    assert second["status_code"] == "200" and "error_kind" not in second
    assert second["delivery"] == "succeeded" and "retry_at" not in second
    if log_format == "json":  # typed there
        assert isinstance(attempts[0]["attempt"], int) and isinstance(
            attempts[0]["status_code"], int
        )

    # One line per request: method, path without its query, status, duration.
    requests = [
        (e["method"], e["path"], str(e["status"]))
        for e in entries
        if e["logger"] == "hookline.access"
    ]
    assert ("POST", "/webhook", "201") in requests
    assert requests.count(("POST", "/users", "201")) == 2
    assert ("POST", "/users/messages", "201") in requests
    assert ("GET", "/health", "200") in requests
    assert all("?" not in path for _, path, _ in requests)
    assert all(float(e["duration_ms"]) >= 0 for e in entries if e["logger"] == "hookline.access")

    # A line when an endpoint is disabled (here by request; the worker's say by=worker).
    [disabled_line] = [e for e in entries if e["message"] == "endpoint disabled"]
    assert disabled_line["endpoint_id"] == endpoint_id and disabled_line["by"] == "api"

    # Start and stop, in order; each weakening setting warned of once.
    messages = [e["message"] for e in entries]
    order = [messages.index(m) for m in ("api started", "worker started", "worker stopped")]
    assert order == sorted(order)
    assert messages.index("api stopped") > messages.index("worker stopped")
    warned = [e["setting"] for e in entries if e["level"] == "WARNING" and "setting" in e]
    assert warned == [
        "HOOKLINE_ALLOW_PRIVATE_NETWORKS",
        "HOOKLINE_ADMIN_TOKEN",
        "HOOKLINE_DATA_DIR",
    ]
