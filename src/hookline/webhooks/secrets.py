"""Endpoint secrets at rest: checking the key at start, and sealing them again with a new one."""

from hookline.secretbox import SEALED_PREFIX, SecretBox
from hookline.store import Store, units
from hookline.store.sql import sql
from hookline.store.units import Unit

# A deleted endpoint's secrets are gone (endpoints.py): only the others are sealed.
_NEWEST_SEALED = sql(
    "SELECT secret FROM endpoints WHERE secret LIKE 'fernet:%' AND deleted_at IS NULL"
    " ORDER BY id DESC LIMIT 1"
)
_ALL = sql("SELECT id, secret, old_secret FROM endpoints WHERE deleted_at IS NULL ORDER BY id")
_SET = sql("UPDATE endpoints SET secret = :secret, old_secret = :old_secret WHERE id = :id")

assert SEALED_PREFIX == "fernet:"  # the LIKE pattern above spells it out


async def check_key(store: Store, box: SecretBox) -> None:
    """Raise SecretKeyError at start when the key does not open the stored secrets, rather
    than on the first signature (the newest endpoint's secret stands for all)."""
    newest = await store.read(_newest())
    if newest is not None:
        box.open(newest)


def _newest() -> Unit[str | None]:
    found = yield units.value(_NEWEST_SEALED)
    return None if found is None else str(found)


async def reseal(store: Store, box: SecretBox, *, every: bool) -> int:
    """Seal the secrets stored in plain text (from before sealing), or with `every`, re-seal
    every secret with the first key (after a key rotation). Returns how many changed."""
    return await store.write(_reseal(box, every=every))


def _reseal(box: SecretBox, *, every: bool) -> Unit[int]:
    changed = []
    for row in (yield units.rows(_ALL)):
        endpoint_id, secret, old_secret = row[0], row[1], row[2]
        new_secret, new_old = secret, old_secret
        if every or not secret.startswith(SEALED_PREFIX):
            new_secret = box.reseal(secret)
        if old_secret is not None and (every or not old_secret.startswith(SEALED_PREFIX)):
            new_old = box.reseal(old_secret)
        if (new_secret, new_old) != (secret, old_secret):
            changed.append({"id": endpoint_id, "secret": new_secret, "old_secret": new_old})
    if changed:
        yield units.execute_many(_SET, changed)
    return len(changed)
