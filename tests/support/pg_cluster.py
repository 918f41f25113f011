"""The machine's own PostgreSQL cluster, restarted under a test (Debian's postgresql-common).

    cluster = Cluster.serving(database_url)   # None unless a local cluster listens on its port
    await cluster.restart(timeout=60)         # `pg_ctlcluster <version> <name> restart -m fast`
    await cluster.ensure_up(timeout=60)       # started if it is down; waits until it accepts

Every other test of the session uses the same server: `ensure_up` belongs in a `finally`.
"""

import asyncio
import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

LOCAL_HOSTS = {None, "", "127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    dsn: str  # libpq form, to see whether it accepts connections

    @classmethod
    def serving(cls, database_url: str) -> "Cluster | None":
        """The local cluster that serves `database_url`, if pg_lsclusters lists one."""
        url = make_url(database_url)
        if url.host not in LOCAL_HOSTS or shutil.which("pg_lsclusters") is None:
            return None
        port = url.port or 5432
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        for version, name, listed_port, _status in _clusters():
            if listed_port == port:
                return cls(version, name, port, dsn)
        return None

    async def restart(self, *, timeout: float) -> float:
        """Restart it (fast mode: open connections are cut); the seconds it took."""
        began = time.monotonic()
        await _ctl(self.version, self.name, "restart", "-m", "fast", timeout=timeout)
        return time.monotonic() - began

    async def ensure_up(self, *, timeout: float) -> None:
        """Start it if pg_lsclusters says it is down, then wait until it accepts connections."""
        deadline = time.monotonic() + timeout
        listed = [c for c in _clusters() if (c[0], c[1]) == (self.version, self.name)]
        if not listed or listed[0][3] != "online":
            await _ctl(self.version, self.name, "start", timeout=timeout)
        await self.wait_accepting(timeout=max(1.0, deadline - time.monotonic()))

    async def wait_accepting(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"PostgreSQL {self.version}/{self.name} did not accept connections"
                        f" within {timeout} s"
                    ) from None
                await asyncio.sleep(0.1)
            else:
                await conn.close()
                return


def _clusters() -> list[tuple[str, str, int, str]]:
    """(version, name, port, status) of every cluster pg_lsclusters lists."""
    out = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2].isdigit():
            rows.append((fields[0], fields[1], int(fields[2]), fields[3]))
    return rows


async def _ctl(version: str, name: str, action: str, *options: str, timeout: float) -> None:
    # Without systemd running, pg_ctlcluster acts itself; this says so even where it runs.
    proc = await asyncio.create_subprocess_exec(
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        version,
        name,
        action,
        *options,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise AssertionError(
            f"pg_ctlcluster {version} {name} {action}: not within {timeout} s"
        ) from None
    assert proc.returncode == 0, (
        f"pg_ctlcluster {version} {name} {action} exited {proc.returncode}: {out.decode()}"
    )
