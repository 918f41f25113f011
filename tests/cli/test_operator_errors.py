"""An operator's mistake is one line on stderr and exit status 2, never a traceback.

The contract the systemd units of docs/deploy.md rely on (RestartPreventExitStatus=2): a bad
setting, a malformed or wrong secret key, a database that does not exist or cannot be reached
at start, a busy port. Each case runs the real `hookline` command as a process.
"""

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookline import __version__, migrate, secretbox
from tests.conftest import IN_CI, POSTGRES_URL, _pg_dsn
from tests.support.process import free_port

# Long enough for a slow start; a process that waits or retries instead of stopping fails.
TIMEOUT = 30


def hookline(*args: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`hookline <args>` on a data dir under `tmp_path`, with HOOKLINE_<NAME> `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_DATA_DIR"] = str(tmp_path / "data")
    env["HOOKLINE_ALLOW_PRIVATE_NETWORKS"] = "true"  # the seed's hosts resolve nowhere
    env.update({f"HOOKLINE_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "hookline", *args],
        env=env,
        cwd=tmp_path,  # no .env of the repository
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The single error line of a process that stopped on an operator's mistake."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result.stderr
    [line] = lines
    assert line.startswith("error: "), line
    assert "; " in line, f"no remedy: {line}"  # what is wrong; what to do
    for name in names:
        assert name in line, line
    return line


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def missing_database() -> str:
    """A URL of the real PostgreSQL server naming a database it does not have."""
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("HOOKLINE_TEST_POSTGRES_URL is not set; CI must run the PostgreSQL tests")
        pytest.skip("HOOKLINE_TEST_POSTGRES_URL is not set")
    return _pg_dsn(POSTGRES_URL, f"hookline_missing_{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize("command", ["worker", "api", "serve"])
def test_a_malformed_secret_key_is_one_line(tmp_path: Path, command: str) -> None:
    result = hookline(command, tmp_path=tmp_path, secret_key="notakey", port="0")

    one_line(result, "HOOKLINE_SECRET_KEY", "`hookline secret-key`")
    assert not (tmp_path / "data" / "hookline.db").exists()


@pytest.mark.parametrize("command", ["worker", "api", "serve"])
def test_a_key_that_does_not_open_the_stored_secrets_is_one_line(
    tmp_path: Path, command: str
) -> None:
    seed = tmp_path / "webhook_data.json"
    seed.write_text(json.dumps({"user_registered": ["https://a.example/hook"]}))
    imported = hookline("import-seed", str(seed), tmp_path=tmp_path, secret_key=_key())
    assert imported.returncode == 0, imported.stderr

    result = hookline(command, tmp_path=tmp_path, secret_key=_key(), port="0")

    one_line(result, "does not open with HOOKLINE_SECRET_KEY")


def _key() -> str:
    return secretbox.generate_key()


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["migrate", "worker", "api"])
def test_a_database_that_does_not_exist_is_one_line(
    tmp_path: Path, missing_database: str, command: str
) -> None:
    name = missing_database.rsplit("/", 1)[1]

    result = hookline(command, tmp_path=tmp_path, database_url=missing_database, port="0")

    line = one_line(result, f'database "{name}" does not exist', "HOOKLINE_DATABASE_URL")
    assert "@" not in line  # no credentials


@pytest.mark.parametrize("command", ["migrate", "worker", "serve"])
def test_a_database_that_cannot_be_reached_at_start_is_one_line(
    tmp_path: Path, command: str
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://hookline:secret-password@127.0.0.1:{port}/hookline"

    result = hookline(command, tmp_path=tmp_path, database_url=url, port="0")

    line = one_line(result, f"cannot reach the database at 127.0.0.1:{port}", "refused")
    assert "secret-password" not in line


@pytest.mark.parametrize(
    "command", [["serve"], ["api"], ["api", "--workers", "2"], ["listen", "--port", "{port}"]]
)
def test_a_busy_port_is_one_line(tmp_path: Path, busy_port: int, command: list[str]) -> None:
    args = [arg.format(port=busy_port) for arg in command]

    result = hookline(*args, tmp_path=tmp_path, port=str(busy_port))

    option = "--port" if args[0] == "listen" else "HOOKLINE_PORT"
    one_line(result, f"cannot listen on 127.0.0.1:{busy_port}: address already in use", option)
    assert not (tmp_path / "data").exists()  # stopped before the database was touched


@pytest.mark.parametrize("command", [["serve"], ["api"], ["api", "--workers", "2"]])
def test_host_and_port_options_win_over_the_settings(
    tmp_path: Path, busy_port: int, command: list[str]
) -> None:
    options = ["--host", "127.0.0.1", "--port", str(busy_port)]

    result = hookline(*command, *options, tmp_path=tmp_path, host="localhost", port="0")

    one_line(result, f"cannot listen on 127.0.0.1:{busy_port}: address already in use", "--port")


def test_a_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = hookline("worker", tmp_path=tmp_path, port="eighty")

    one_line(result, "invalid configuration: HOOKLINE_PORT")


def test_migrating_says_in_one_line_what_it_applied_and_nothing_when_up_to_date(
    tmp_path: Path,
) -> None:
    first = hookline("migrate", tmp_path=tmp_path)
    again = hookline("migrate", tmp_path=tmp_path)

    assert first.returncode == 0, first.stderr
    [line] = first.stderr.splitlines()
    assert line.endswith(f"migrated the database from empty to revision {migrate.head()}")
    assert (again.returncode, again.stderr) == (0, "")


@pytest.mark.parametrize("option", ["--version", "-h"])
def test_version_and_short_help(tmp_path: Path, option: str) -> None:
    result = hookline(option, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    if option == "--version":
        assert result.stdout == f"{__version__}\n"
    else:
        assert "Usage: hookline" in result.stdout
        assert "--version" in result.stdout
