"""Run `hookline` as a real child process for end-to-end tests.

    with ServeProcess(tmp_path, env={...}) as serve:   # killed (and reaped) on the way out
        await serve.start()                              # spawns, waits for GET /health
        ...
        serve.kill()                                     # SIGKILL, no chance to clean up
        await serve.start()                              # again, same data dir and port
        assert await serve.terminate(timeout=15) == 0    # SIGTERM, the exit code

Output goes to a log file (never to a pipe), so nothing blocks and nothing leaks.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environ(**overrides: str) -> dict[str, str]:
    """This process's environment without any HOOKLINE_* variable, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class ServeProcess:
    """`python -m hookline <command>` (or `program <command>`) in `workdir`, restartable, its
    output in one log file."""

    def __init__(
        self,
        workdir: Path,
        *,
        env: dict[str, str],
        port: int,
        command: str = "serve",
        args: Sequence[str] = (),
        program: Sequence[str] = (sys.executable, "-m", "hookline"),
    ) -> None:
        self.args = list(args)
        self.program = list(program)  # e.g. another venv's bin/hookline
        self.workdir = workdir
        self.env = env
        self.port = port
        self.command = command
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"hookline-{command}.log"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        if exc_type is not None:
            print(f"\n----- {self.log_path} -----\n{self.log_text()}\n----- end of log -----")

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def start(self, *, timeout: float = 30) -> float:
        """Spawn the process and wait until GET /health answers 200; return the seconds it took."""
        began = time.monotonic()
        self.spawn()
        await self.wait_healthy(timeout=timeout)
        return time.monotonic() - began

    def spawn(self) -> None:
        """Start the process (output appended to the log file); do not wait for it."""
        assert not self.running, "already running"
        self._close_log()
        self.starts += 1
        self._log = self.log_path.open("ab")
        self._log.write(f"=== start #{self.starts}: hookline {self.command} ===\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            [*self.program, self.command, *self.args],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, *, timeout: float) -> None:
        """Poll GET /health until it answers 200; fail if the process exits or time runs out."""
        assert self._proc is not None, "not started"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while True:
                if self._proc.poll() is not None:
                    raise AssertionError(
                        f"hookline {self.command} exited with {self._proc.returncode} at start"
                    )
                try:
                    response = await client.get("/health")
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"GET /health did not answer 200 within {timeout} s")
                await asyncio.sleep(0.05)

    async def wait_for_line(self, fragment: str, *, timeout: float) -> None:
        """Wait until the log of the current start holds `fragment`; fail after `timeout`."""
        marker = f"=== start #{self.starts}: "
        deadline = time.monotonic() + timeout
        while fragment not in self.log_text().rpartition(marker)[2]:
            assert time.monotonic() < deadline, f"no {fragment!r} in the log within {timeout} s"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap it."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._close_log()

    async def terminate(self, *, timeout: float) -> int | None:
        """SIGTERM; the exit code, or None (and SIGKILL) if it did not exit within `timeout`."""
        assert self._proc is not None and self.running, "not running"
        proc = self._proc
        proc.send_signal(signal.SIGTERM)

        def wait() -> int | None:
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None

        code = await asyncio.to_thread(wait)
        self.kill()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
