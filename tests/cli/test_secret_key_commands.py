"""`hookline secret-key` and `hookline rotate-secret-key`, run as real processes on SQLite."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from hookline import secretbox
from hookline.config import Settings
from hookline.secretbox import SEALED_PREFIX, SecretBox, SecretKeyError
from tests.delivery.helpers import subscribe
from tests.support.app import running_app
from tests.support.receiver import Receiver

ADMIN_TOKEN = "hl_admin_secret-key-commands-0123456789abcdef"
HOOK = "https://a.example/hook"


def hookline(
    *args: str, data_dir: Path, secret_key: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_DATA_DIR"] = str(data_dir)
    # The seed file names a host under .example, which resolves nowhere: skip the address check.
    env["HOOKLINE_ALLOW_PRIVATE_NETWORKS"] = "true"
    if secret_key is not None:
        env["HOOKLINE_SECRET_KEY"] = secret_key
    return subprocess.run(
        [sys.executable, "-m", "hookline", *args],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def app_settings(data_dir: Path, secret_key: str) -> Settings:
    """The app in this process, on the data dir's SQLite database, with only `secret_key`."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        secret_key=secret_key,
        admin_token=ADMIN_TOKEN,
        allow_private_networks=True,
        ping_on_create=False,
    )


def stored_endpoints(data_dir: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(data_dir / "hookline.db") as db:
        return db.execute("SELECT id, secret, old_secret FROM endpoints ORDER BY id").fetchall()


def import_one_endpoint(tmp_path: Path, data_dir: Path, secret_key: str) -> tuple[str, str, str]:
    """Import a seed of one URL sealed with `secret_key`: its id, stored secret and plaintext."""
    seed = tmp_path / "webhook_data.json"
    seed.write_text(json.dumps({"user_registered": [HOOK]}))
    imported = hookline("import-seed", str(seed), data_dir=data_dir, secret_key=secret_key)
    assert imported.returncode == 0, imported.stderr
    [(endpoint_id, stored, _)] = stored_endpoints(data_dir)
    return endpoint_id, stored, SecretBox([secret_key]).open(stored)


def test_secret_key_prints_a_new_fernet_key_each_time(tmp_path: Path) -> None:
    first = hookline("secret-key", data_dir=tmp_path / "data")
    second = hookline("secret-key", data_dir=tmp_path / "data")

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert [first.stdout.count("\n"), second.stdout.count("\n")] == [1, 1]
    keys = [first.stdout.strip(), second.stdout.strip()]
    assert keys[0] != keys[1]
    for key in keys:
        fernet = Fernet(key.encode())
        assert fernet.decrypt(fernet.encrypt(b"whsec_x")) == b"whsec_x"
    assert not (tmp_path / "data").exists()


async def test_rotate_secret_key_reseals_every_secret_so_the_new_key_alone_opens_it(
    tmp_path: Path,
) -> None:
    old_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    data_dir = tmp_path / "data"
    endpoint_id, sealed_old, plaintext = import_one_endpoint(tmp_path, data_dir, old_key)
    assert sealed_old.startswith(SEALED_PREFIX)

    rotated = hookline("rotate-secret-key", data_dir=data_dir, secret_key=f"{new_key},{old_key}")

    assert rotated.returncode == 0, rotated.stderr
    assert "re-sealed the secrets of 1 endpoint(s) with the first key" in rotated.stdout
    [(_, sealed_new, _)] = stored_endpoints(data_dir)
    assert sealed_new.startswith(SEALED_PREFIX)
    assert SecretBox([new_key]).open(sealed_new) == plaintext
    with pytest.raises(SecretKeyError):
        SecretBox([old_key]).open(sealed_new)
    async with running_app(app_settings(data_dir, new_key)) as running:
        response = await running.client.get(f"/webhooks/{endpoint_id}/secret")
    assert response.status_code == 200, response.text
    assert response.json() == {"secret": plaintext}


async def test_rotate_secret_key_reseals_the_old_secret_of_a_rotation_in_progress_too(
    tmp_path: Path, receiver: Receiver
) -> None:
    old_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    data_dir = tmp_path / "data"
    async with running_app(app_settings(data_dir, old_key)) as before:
        registered = await subscribe(before.client, receiver.url("/hook"))
        response = await before.client.post(f"/webhooks/{registered['id']}/secret/rotate")
        assert response.status_code == 200, response.text
        rotated = response.json()["secret"]

    result = hookline("rotate-secret-key", data_dir=data_dir, secret_key=f"{new_key},{old_key}")

    assert result.returncode == 0, result.stderr
    assert "re-sealed the secrets of 1 endpoint(s)" in result.stdout
    [(_, secret, old_secret)] = stored_endpoints(data_dir)
    assert old_secret is not None
    new_box = SecretBox([new_key])
    assert (new_box.open(secret), new_box.open(old_secret)) == (rotated, registered["secret"])
    async with running_app(app_settings(data_dir, new_key)) as after:
        pinged = await after.client.post(f"/webhooks/{registered['id']}/ping")
    assert pinged.status_code == 200, pinged.text
    assert pinged.json()["attempt"]["status_code"] == 200
    [received] = receiver.at("/hook")
    Webhook(rotated).verify(received.body, received.headers)
    Webhook(registered["secret"]).verify(received.body, received.headers)


async def test_rotate_secret_key_reseals_the_custom_header_values_too(
    tmp_path: Path, receiver: Receiver
) -> None:
    old_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    data_dir = tmp_path / "data"
    given = {"Authorization": "Bearer receiver-credential-0123456789"}
    async with running_app(app_settings(data_dir, old_key)) as before:
        body = {"url": receiver.url("/hook"), "events": ["user_registered"], "headers": given}
        created = await before.client.post("/endpoints", json=body)
        assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    sealed_old = stored_headers(data_dir)

    result = hookline("rotate-secret-key", data_dir=data_dir, secret_key=f"{new_key},{old_key}")

    assert result.returncode == 0, result.stderr
    assert "re-sealed the secrets of 1 endpoint(s)" in result.stdout
    sealed_new = stored_headers(data_dir)
    assert SecretBox([old_key]).open(sealed_old["Authorization"]) == given["Authorization"]
    assert sealed_new["Authorization"].startswith(SEALED_PREFIX)
    assert SecretBox([new_key]).open(sealed_new["Authorization"]) == given["Authorization"]
    with pytest.raises(SecretKeyError):
        SecretBox([old_key]).open(sealed_new["Authorization"])
    async with running_app(app_settings(data_dir, new_key)) as after:
        shown = await after.client.get(f"/endpoints/{endpoint_id}")
        pinged = await after.client.post(f"/endpoints/{endpoint_id}/ping")
    assert shown.json()["headers"] == given
    assert pinged.status_code == 200, pinged.text
    [received] = receiver.at("/hook")
    assert received.headers["Authorization"] == given["Authorization"]


async def test_rotate_secret_key_changes_nothing_when_a_header_value_does_not_open(
    tmp_path: Path,
) -> None:
    first_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    data_dir = tmp_path / "data"
    async with running_app(app_settings(data_dir, first_key)) as before:
        body = {"url": HOOK, "events": ["user_registered"], "headers": {"X-Api-Key": "k-123"}}
        created = await before.client.post("/endpoints", json=body)
        assert created.status_code == 201, created.text
    lost = json.dumps({"X-Api-Key": SecretBox([secretbox.generate_key()]).seal("k-123")})
    with sqlite3.connect(data_dir / "hookline.db") as db:
        db.execute("UPDATE endpoints SET headers = ?", (lost,))
    before_rows = stored_endpoints(data_dir), stored_headers(data_dir)

    result = hookline("rotate-secret-key", data_dir=data_dir, secret_key=f"{new_key},{first_key}")

    assert result.returncode == 2
    assert "error: a stored endpoint secret does not open with HOOKLINE_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert (stored_endpoints(data_dir), stored_headers(data_dir)) == before_rows


def stored_headers(data_dir: Path) -> dict[str, str]:
    """The one endpoint's `headers` column, as stored."""
    with sqlite3.connect(data_dir / "hookline.db") as db:
        [(raw,)] = db.execute("SELECT headers FROM endpoints").fetchall()
    found: dict[str, str] = json.loads(raw)
    return found


@pytest.mark.parametrize("bad_key", ["nope", "{new},", "{new},not-a-key"])
def test_rotate_secret_key_with_a_malformed_key_exits_2_with_a_clear_error(
    tmp_path: Path, bad_key: str
) -> None:
    result = hookline(
        "rotate-secret-key",
        data_dir=tmp_path / "data",
        secret_key=bad_key.format(new=secretbox.generate_key()),
    )

    assert result.returncode == 2
    assert "error: HOOKLINE_SECRET_KEY must be Fernet keys" in result.stderr
    assert "`hookline secret-key`" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_malformed_key_is_refused_in_one_line_before_the_database_is_touched(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    result = hookline("rotate-secret-key", data_dir=data_dir, secret_key="nope")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: HOOKLINE_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes),"
        " comma-separated; make one with `hookline secret-key`"
    ]
    assert not (data_dir / "hookline.db").exists()


def one_secret_the_rotation_cannot_open(tmp_path: Path, data_dir: Path, first_key: str) -> None:
    """Two endpoints sealed with `first_key`; then the second re-sealed under a key nobody has."""
    seed = tmp_path / "webhook_data.json"
    seed.write_text(json.dumps({"user_registered": [HOOK, "https://b.example/hook"]}))
    imported = hookline("import-seed", str(seed), data_dir=data_dir, secret_key=first_key)
    assert imported.returncode == 0, imported.stderr
    _, (second_id, sealed, _) = stored_endpoints(data_dir)
    lost = SecretBox([secretbox.generate_key()]).seal(SecretBox([first_key]).open(sealed))
    with sqlite3.connect(data_dir / "hookline.db") as db:
        db.execute("UPDATE endpoints SET secret = ? WHERE id = ?", (lost, second_id))


def test_rotate_secret_key_changes_nothing_when_a_secret_does_not_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    one_secret_the_rotation_cannot_open(tmp_path, data_dir, first_key)
    before = stored_endpoints(data_dir)

    result = hookline("rotate-secret-key", data_dir=data_dir, secret_key=f"{new_key},{first_key}")

    assert result.returncode == 2
    assert result.stdout == ""
    assert stored_endpoints(data_dir) == before  # the first one re-sealed, then rolled back


def test_rotate_secret_key_says_clearly_when_a_secret_does_not_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first_key, new_key = secretbox.generate_key(), secretbox.generate_key()
    one_secret_the_rotation_cannot_open(tmp_path, data_dir, first_key)

    result = hookline("rotate-secret-key", data_dir=data_dir, secret_key=f"{new_key},{first_key}")

    assert result.returncode == 2
    assert "error: a stored endpoint secret does not open with HOOKLINE_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
