"""The `hookline` commands, run as real processes on a SQLite data dir."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def hookline(
    *args: str, data_dir: Path, timeout: float = 60, guard: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_DATA_DIR"] = str(data_dir)
    # The seed files name hosts under .example, which resolve nowhere: skip the address check
    # unless a test asks for it.
    env["HOOKLINE_ALLOW_PRIVATE_NETWORKS"] = "false" if guard else "true"
    return subprocess.run(
        [sys.executable, "-m", "hookline", *args],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def subscriptions(data_dir: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(data_dir / "hookline.db") as db:
        rows = db.execute(
            "SELECT s.event, e.url FROM subscriptions s JOIN endpoints e ON e.id = s.endpoint_id"
        ).fetchall()
    return set(rows)


def test_migrate_creates_the_database_and_its_folder(tmp_path):
    data_dir = tmp_path / "data"
    result = hookline("migrate", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(data_dir / "hookline.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "messages", "endpoints", "subscriptions", "events", "deliveries"} <= tables
    assert {"attempts", "alembic_version"} <= tables
    again = hookline("migrate", data_dir=data_dir)
    assert again.returncode == 0, again.stderr


def test_import_seed_subscribes_every_pair_of_the_original_file(tmp_path):
    seed = tmp_path / "webhook_data.json"
    seed.write_text(
        json.dumps(
            {
                "user_registered": ["https://a.example/hook", "https://b.example/hook"],
                "USER_SEND_MESSAGE": ["https://a.example/hook"],
            }
        )
    )
    data_dir = tmp_path / "data"
    first = hookline("import-seed", str(seed), data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert "imported 3 subscription(s); 0 already existed" in first.stdout
    assert subscriptions(data_dir) == {
        ("user_registered", "https://a.example/hook"),
        ("user_registered", "https://b.example/hook"),
        ("user_send_message", "https://a.example/hook"),
    }
    again = hookline("import-seed", str(seed), data_dir=data_dir)
    assert "imported 0 subscription(s); 3 already existed" in again.stdout
    with sqlite3.connect(data_dir / "hookline.db") as db:
        (endpoints,) = db.execute("SELECT count(*) FROM endpoints").fetchone()
    assert endpoints == 2  # one endpoint per URL, whatever its events


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"user_registered": ["https://ok.example/"], "no_such_event": ["https://x.example/"]}',
            "Event 'no_such_event' not found",
        ),
        ('{"user_registered": ["https://ok.example/", "ftp://x.example/"]}', "scheme"),
        ('{"user_registered": "https://ok.example/"}', "expected a list"),
        ('["https://ok.example/"]', "expected a JSON object"),
        ("{not json", "error"),
    ],
)
def test_import_seed_writes_nothing_when_any_entry_is_bad(tmp_path, content, message):
    seed = tmp_path / "webhook_data.json"
    seed.write_text(content)
    data_dir = tmp_path / "data"
    hookline("migrate", data_dir=data_dir)
    result = hookline("import-seed", str(seed), data_dir=data_dir)
    assert result.returncode == 1
    assert message in result.stderr
    assert subscriptions(data_dir) == set()


def test_import_seed_checks_where_urls_point_and_writes_nothing_when_one_may_not(tmp_path):
    seed = tmp_path / "webhook_data.json"
    seed.write_text(
        json.dumps({"user_registered": ["http://93.184.216.34/hook", "http://10.0.0.1/hook"]})
    )
    data_dir = tmp_path / "data"
    hookline("migrate", data_dir=data_dir)

    result = hookline("import-seed", str(seed), data_dir=data_dir, guard=True)

    assert result.returncode == 1
    assert "http://10.0.0.1/hook" in result.stderr
    assert "10.0.0.1 is a private address" in result.stderr
    assert subscriptions(data_dir) == set()


def test_version_is_printed():
    result = subprocess.run(
        [sys.executable, "-m", "hookline", "version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "0.1.0"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HOOKLINE_RETRY_SCHEDULE", "5,soon", "HOOKLINE_RETRY_SCHEDULE: could not convert"),
        ("HOOKLINE_PORT", "eighty", "HOOKLINE_PORT: Input should be a valid integer"),
        ("HOOKLINE_DATABASE_URL", "mysql://db/x", "must be a sqlite:// or postgresql:// URL"),
        ("HOOKLINE_LEASE_SECONDS", "5", "HOOKLINE_LEASE_SECONDS must be longer than"),
    ],
)
def test_bad_configuration_is_one_clear_line_and_exit_code_2(tmp_path, variable, value, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update({"HOOKLINE_DATA_DIR": str(tmp_path / "data"), variable: value})
    result = subprocess.run(
        [sys.executable, "-m", "hookline", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid configuration: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
