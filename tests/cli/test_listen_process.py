"""`hookline listen` as a real process: every header and the body printed, `--forward-to` a
real local app and its answer passed back, a malformed option one line and exit 2."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from multidict import CIMultiDict

from hookline.delivery import signing
from tests.support.process import free_port
from tests.support.receiver import Receiver

SECRET = signing.generate_secret()
TIMEOUT = 30


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Listener:
    """`hookline listen --port 0 <args>`, its output in a file (never a pipe that could fill)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out_path = tmp_path / "listen.out"
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookline", "listen", "--port", "0", *args],
            env=_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    async def url(self) -> str:
        """The address it reports listening on."""
        deadline = time.monotonic() + TIMEOUT
        while (found := re.search(r"listening on (http://[^\s,]+)", self.output())) is None:
            assert self.proc.poll() is None, f"listen exited: {self.output()}"
            assert time.monotonic() < deadline, f"listen did not start: {self.output()}"
            await asyncio.sleep(0.05)
        return found[1]

    async def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + 10
        while text not in (printed := self.output()):
            assert time.monotonic() < deadline, f"{text!r} never printed:\n{printed}"
            await asyncio.sleep(0.05)
        return printed

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop()


def _signed(body: bytes, msg_id: str) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "user-agent": "hookline/0.1.0",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header([SECRET], msg_id, timestamp, body),
        "X-Tenant": "acme",  # an endpoint's custom header
    }


async def test_forward_to_relays_each_webhook_and_passes_the_apps_answer_back(
    tmp_path: Path, receiver: Receiver, listeners: list[Listener]
) -> None:
    receiver.script("/app/hook", [202], headers={"X-App": "seen"}, body='{"ok":true}')
    forward = receiver.url("/app/hook")
    listener = Listener(tmp_path, "--secret", SECRET, "--forward-to", forward)
    listeners.append(listener)
    base = await listener.url()
    body = json.dumps({"id": "evt_f1", "event": "order.shipped", "data": {"order_id": "o-1"}})
    headers = _signed(body.encode(), "evt_f1")

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        answer = await client.post(f"{base}/hook", content=body, headers=headers)

    # The app's answer, as it gave it.
    assert answer.status_code == 202
    assert answer.text == '{"ok":true}'
    assert answer.headers["x-app"] == "seen"
    # The app got what hookline sent: the same body and every header.
    [got] = receiver.at("/app/hook")
    assert got.body == body.encode()
    received = CIMultiDict(got.headers)
    for name, value in headers.items():
        assert received[name] == value, name
    # And all of it was printed: every header, the verdict, the body, the app's answer.
    printed = await listener.wait_for("<-- 202")
    for name, value in headers.items():
        assert f"  {name}: {value}" in printed, name
    assert "signature:  valid" in printed
    assert '"order_id": "o-1"' in printed
    assert f"<-- 202 Accepted for evt_f1 from {forward}" in printed
    assert f"forwarding to {forward}" in printed


async def test_forward_to_an_app_that_is_down_answers_502(
    tmp_path: Path, listeners: list[Listener]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    listener = Listener(tmp_path, "--forward-to", down)
    listeners.append(listener)
    base = await listener.url()
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        answer = await client.post(base, content=b"{}", headers={"webhook-id": "evt_d1"})
    assert answer.status_code == 502
    printed = await listener.wait_for("<-- 502")
    assert f"<-- 502 for evt_d1: {down} failed: connection refused" in printed


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--secret", "not-a-secret"], ["--secret", "whsec_"]),
        (["--secret", "whsec_!!!"], ["--secret", "base64"]),
        (["--forward-to", "ftp://127.0.0.1/x"], ["--forward-to"]),
    ],
)
def test_a_malformed_option_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], names: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hookline", "listen", "--port", "0", *args],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    for name in names:
        assert name in line, line
    assert "listening" not in result.stdout  # it stopped before listening
