"""Endpoint secrets and custom header values at rest: checking the key at start, and sealing
them again with a new one."""

from typing import Any

from hookline.secretbox import SEALED_PREFIX, SecretBox
from hookline.store import Store, units
from hookline.store.sql import js, sql
from hookline.store.units import Unit

# A deleted endpoint's secrets and headers are gone (endpoints.py): only the others are sealed.
_NEWEST_SEALED = sql(
    "SELECT secret FROM endpoints WHERE secret LIKE 'fernet:%' AND deleted_at IS NULL"
    " ORDER BY id DESC LIMIT 1"
)
_ALL = sql(
    "SELECT id, secret, old_secret, headers FROM endpoints WHERE deleted_at IS NULL ORDER BY id"
)
_SET = sql(
    "UPDATE endpoints SET secret = :secret, old_secret = :old_secret, headers = :headers"
    " WHERE id = :id"
)

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
    """Seal the secrets and custom header values stored in plain text (from before sealing),
    or with `every`, re-seal every one with the first key (after a key rotation). Returns how
    many endpoints changed; one that does not open raises SecretKeyError and changes nothing."""
    return await store.write(_reseal(box, every=every))


def _reseal(box: SecretBox, *, every: bool) -> Unit[int]:
    def again(stored: str) -> str:
        return box.reseal(stored) if every or not stored.startswith(SEALED_PREFIX) else stored

    changed = []
    for row in (yield units.rows(_ALL)):
        endpoint_id, secret, old_secret, headers = row[0], row[1], row[2], js(row[3])
        new: dict[str, Any] = {
            "secret": again(secret),
            "old_secret": None if old_secret is None else again(old_secret),
            "headers": headers and {name: again(value) for name, value in headers.items()},
        }
        if new != {"secret": secret, "old_secret": old_secret, "headers": headers}:
            changed.append({"id": endpoint_id, **new})
    if changed:
        yield units.execute_many(_SET, changed)
    return len(changed)
