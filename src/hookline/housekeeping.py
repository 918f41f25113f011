"""What the worker prunes every so often: old events (with their deliveries and attempts),
deleted endpoints left without deliveries, and expired idempotency keys."""

from hookline.config import Settings
from hookline.models import utcnow
from hookline.store import Store, prune


async def run_once(store: Store, settings: Settings) -> int:
    """Prune once; return how many events, endpoints and keys went."""
    now = utcnow()
    pruned = await prune.prune(store, before=prune.cutoff(settings.retention_days, now))
    pruned += await store.write_aside(prune.deleted_endpoints())
    pruned += await store.write_aside(
        prune.idempotency_keys(before=now - prune.IDEMPOTENCY_KEY_TTL)
    )
    return pruned
