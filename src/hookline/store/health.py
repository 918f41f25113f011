"""An endpoint's health: the auto-disable clock, disabling an endpoint (cancelling what it had
pending, telling subscribers) and enabling it again.

The worker records its attempts here in the transaction that completes them; the API disables
and enables by hand.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hookline.models import utcnow
from hookline.store import outbox, redelivery, units
from hookline.store.outbox import timestamp
from hookline.store.sql import sql, ts_required
from hookline.store.units import Unit

WEBHOOK_DISABLED = "webhook_disabled"

_DISABLE = sql(
    "UPDATE endpoints SET enabled = FALSE, disabled_reason = :reason, disabled_at = :now"
    " WHERE id {in:ids} AND enabled = TRUE AND deleted_at IS NULL RETURNING id, url, owner_id"
)
_ENABLE = sql(
    "UPDATE endpoints SET enabled = TRUE, disabled_reason = NULL, disabled_at = NULL,"
    " failing_since = NULL WHERE id = :id"
)
_RESET_CLOCK = sql(
    "UPDATE endpoints SET failing_since = NULL WHERE id {in:ids} AND failing_since IS NOT NULL"
)
_START_CLOCK = sql(
    "UPDATE endpoints SET failing_since = :since WHERE id = :id AND failing_since IS NULL"
)
_FAILING_SINCE = sql(
    "SELECT id, failing_since FROM endpoints"
    " WHERE id {in:ids} AND enabled = TRUE AND failing_since <= :cutoff ORDER BY id"
)


@dataclass(slots=True)  # made per attempt: not frozen, whose __init__ costs ~7x
class AttemptResult:
    """What the clock needs to know of one recorded attempt."""

    endpoint_id: str
    succeeded: bool
    started_at: datetime
    # Its answer takes the endpoint down at once (410 Gone), for this reason.
    disable_reason: str | None = None


def record(results: Iterable[AttemptResult], *, disable_after: float) -> Unit[list[str]]:
    """Advance each endpoint's clock: reset on a success, start at the first failure; disable
    the endpoints failing for longer than `disable_after` seconds, and those an answer said to
    disable. Returns the ids of the endpoints this disabled."""
    tally = _Tally(results)
    if tally.succeeded:
        yield units.execute(_RESET_CLOCK, {"ids": sorted(tally.succeeded)})
    disabled: list[str] = []
    for reason, ids in tally.gone_by_reason().items():
        disabled += yield from disable(ids, reason=reason)
    failing = tally.failing()
    if failing:
        yield units.execute_many(
            _START_CLOCK, ({"id": k, "since": v} for k, v in sorted(failing.items()))
        )
        disabled += yield from _disable_expired(failing.keys() - tally.gone, disable_after)
    return disabled


class _Tally:
    """One batch of results, per endpoint."""

    def __init__(self, results: Iterable[AttemptResult]) -> None:
        self.succeeded: set[str] = set()
        self.first_failure: dict[str, datetime] = {}
        self.gone: dict[str, str] = {}  # endpoint: why an answer disables it
        for result in results:
            if result.succeeded:
                self.succeeded.add(result.endpoint_id)
                continue
            since = self.first_failure.get(result.endpoint_id)
            if since is None or result.started_at < since:
                self.first_failure[result.endpoint_id] = result.started_at
            if result.disable_reason is not None:
                self.gone[result.endpoint_id] = result.disable_reason

    def gone_by_reason(self) -> dict[str, list[str]]:
        by_reason: dict[str, list[str]] = {}
        for endpoint_id, reason in sorted(self.gone.items()):
            by_reason.setdefault(reason, []).append(endpoint_id)
        return by_reason

    def failing(self) -> dict[str, datetime]:
        """The first failure of each endpoint that had no success: any success resets the
        clock, even beside failures in the same batch."""
        return {k: v for k, v in self.first_failure.items() if k not in self.succeeded}


def _disable_expired(endpoint_ids: Collection[str], disable_after: float) -> Unit[list[str]]:
    cutoff = utcnow() - timedelta(seconds=disable_after)
    expired = yield units.rows(_FAILING_SINCE, {"ids": sorted(endpoint_ids), "cutoff": cutoff})
    disabled: list[str] = []
    for endpoint_id, since in expired:
        reason = (
            f"every delivery failed for more than {disable_after:g} s"
            f" (since {timestamp(ts_required(since))})"
        )
        disabled += yield from disable([endpoint_id], reason=reason)
    return disabled


def disable(endpoint_ids: Collection[str], *, reason: str) -> Unit[list[str]]:
    """Disable these endpoints (those still enabled), cancel their pending deliveries and fire
    `webhook_disabled` for each; return the ids that were enabled until now."""
    now = utcnow()
    found = yield units.rows(_DISABLE, {"ids": sorted(endpoint_ids), "reason": reason, "now": now})
    disabled = [(row[0], row[1], row[2]) for row in found]
    if not disabled:
        return []
    ids = [endpoint_id for endpoint_id, _, _ in disabled]
    yield from redelivery.cancel(ids)
    for endpoint_id, url, owner_id in disabled:
        data = {"id": endpoint_id, "url": url, "reason": reason, "disabled_at": timestamp(now)}
        # It concerns the endpoint's owner: that user's endpoints hear of it, beside the admin's.
        yield from outbox.publish(event=WEBHOOK_DISABLED, data=data, user_id=owner_id)
    return ids


def enable(endpoint_id: str) -> Unit[None]:
    """Enable an endpoint again with a fresh clock (its cancelled deliveries stay cancelled)."""
    yield units.execute(_ENABLE, {"id": endpoint_id})
