"""What the worker prunes every so often: old events (with their deliveries and attempts) and
expired idempotency keys."""

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from hookline.api import idempotency
from hookline.config import Settings
from hookline.events import retention
from hookline.models import utcnow

log = logging.getLogger("hookline.housekeeping")


async def run_once(engine: AsyncEngine, settings: Settings) -> int:
    """Prune once; return how many events and keys went."""
    now = utcnow()
    pruned = await retention.prune(engine, before=retention.cutoff(settings.retention_days, now))
    async with engine.begin() as conn:
        pruned += await idempotency.prune(conn, before=now - idempotency.TTL)
    return pruned
