"""Import the original service's webhook_data.json: all of it in one transaction, or nothing."""

from typing import Any

from hookline import migrate, secretbox
from hookline.config import Settings
from hookline.db import create_engine, create_sessionmaker
from hookline.delivery.sender import Sender
from hookline.errors import AppError, Conflict
from hookline.webhooks import service as webhooks


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
    engine = create_engine(settings)
    box = secretbox.load(settings)
    sender = Sender.from_settings(settings, box=box)  # only its address check is used
    await sender.start()
    try:
        await migrate.upgrade(settings)
        added = existing = 0
        async with create_sessionmaker(engine).begin() as session:
            for event, url in pairs:
                try:
                    async with session.begin_nested():
                        await webhooks.register(
                            session=session, sender=sender, box=box, event=event, url=url
                        )
                    added += 1
                except Conflict:
                    existing += 1
                except AppError as exc:
                    raise SeedError(f"{event} {url}: {exc.detail}") from exc
        return added, existing
    finally:
        await sender.close()
        await engine.dispose()
