"""The admin token: a configured one, or one generated at first start.

A generated token is stored only as its hash; the token itself is written once to
`<data dir>/admin-token` (mode 0600) and printed once.
"""

import os
from pathlib import Path

from hookline.config import Settings
from hookline.models import utcnow
from hookline.store import Store, units
from hookline.store.sql import sql
from hookline.store.units import Unit
from hookline.tokens import ADMIN_PREFIX, new_token, token_hash

ADMIN_TOKEN_FILE = "admin-token"

_ADMIN_HASH = sql("SELECT token_hash FROM admin_tokens WHERE id = 1")
_ADD_ADMIN_HASH = sql(
    "INSERT INTO admin_tokens (id, token_hash, created_at) VALUES (1, :token_hash, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING token_hash"
)


def stored_hash() -> Unit[str | None]:
    found = yield units.value(_ADMIN_HASH)
    return None if found is None else str(found)


async def find_or_generate(
    store: Store, settings: Settings, *, migrated: bool
) -> tuple[str | None, str | None]:
    """The admin token's hash, and the token itself when it was generated just now.

    A configured HOOKLINE_ADMIN_TOKEN wins. Otherwise the first process to start generates
    one, stores its hash, and writes the token to `<data dir>/admin-token` (mode 0600).
    The hash is None while the database is not migrated.
    """
    if settings.admin_token is not None:
        return token_hash(settings.admin_token.get_secret_value()), None
    if not migrated:
        return None, None
    stored = await store.read(stored_hash())
    if stored is not None:
        return stored, None
    token = new_token(ADMIN_PREFIX)
    added = await store.write(_add_admin_hash(token_hash(token)))
    if added is None:  # another process generated it first
        return await store.read(stored_hash()), None
    write_admin_token(settings.data_dir, token)
    return added, token


def _add_admin_hash(hashed: str) -> Unit[str | None]:
    found = yield units.value(_ADD_ADMIN_HASH, {"token_hash": hashed, "created_at": utcnow()})
    return None if found is None else str(found)


def write_admin_token(data_dir: Path, token: str) -> Path:
    """Write the token to `<data dir>/admin-token`, readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ADMIN_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that was already there
    return path
