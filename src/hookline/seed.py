"""Import the original service's webhook_data.json: all of it in one transaction, or nothing."""

from typing import Any

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.delivery.ssrf import DestinationCheck
from hookline.errors import AppError, Conflict
from hookline.events import types
from hookline.secretbox import SecretBox
from hookline.store import open_store
from hookline.store.units import Unit
from hookline.webhooks import service as webhooks
from hookline.webhooks import urls as webhook_urls


class SeedError(Exception):
    pass


def _pairs(data: Any) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        raise SeedError('expected a JSON object {"event": ["url", ...]}')
    pairs: list[tuple[str, str]] = []
    for event, urls in data.items():
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise SeedError(f"event '{event}': expected a list of URL strings")
        pairs.extend((event, url) for url in urls)
    return pairs


async def import_file(settings: Settings, data: Any) -> tuple[int, int]:
    """Subscribe every (event, url) pair; return (added, already there)."""
    pairs = _pairs(data)
    box = secretbox.load(settings)
    destinations = DestinationCheck(allow_private_networks=settings.allow_private_networks)
    checked = []
    for event, url in pairs:  # every URL before anything is written (the events in the unit)
        refusal = await webhook_urls.refusal(url, destinations)
        if refusal is not None:
            raise SeedError(f"{event} {url}: {refusal.detail}")
        checked.append((event, url.strip()))
    await migrate.upgrade(settings, box)
    store = open_store(settings)
    try:
        return await store.write(_subscribe_all(box, checked))
    finally:
        await store.close()


def _subscribe_all(box: SecretBox, pairs: list[tuple[str, str]]) -> Unit[tuple[int, int]]:
    added = existing = 0
    for event, url in pairs:
        try:
            name = yield from types.subscribable(event)
        except AppError as exc:  # the whole import rolls back
            raise SeedError(f"{event} {url}: {exc.detail}") from exc
        try:
            yield from webhooks.register(box=box, event=name, url=url)
            added += 1
        except Conflict:  # subscribed already (it wrote nothing)
            existing += 1
    return added, existing
