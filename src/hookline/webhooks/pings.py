"""Pings: one `ping` event sent at once to endpoints, concurrently, then recorded as finished
deliveries (never retried)."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hookline.delivery import envelope
from hookline.delivery.sender import Outcome, Sender
from hookline.errors import Unprocessable
from hookline.events import service as events
from hookline.ids import new_id
from hookline.models import utcnow
from hookline.store import Store, outbox, units
from hookline.store.sql import js, sql, ts
from hookline.store.units import Unit
from hookline.webhooks import service
from hookline.webhooks.schemas import PingEntry, PingReport

DEFAULT_PING_DATA = {"message": "Ping from User Notification Webhook Service"}

_TARGET_COLUMNS = "id, url, secret, old_secret, old_secret_until, headers"
# POST /ping is the admin's: the admin's endpoints (one per URL).
_TARGETS = sql(
    f"SELECT {_TARGET_COLUMNS} FROM endpoints WHERE url {{in:urls}} AND owner_id IS NULL"
    " AND deleted_at IS NULL"
)
_TARGET = sql(f"SELECT {_TARGET_COLUMNS} FROM endpoints WHERE id = :id AND deleted_at IS NULL")


@dataclass(frozen=True, slots=True)
class PingTarget:
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]  # sealed, as stored
    headers: dict[str, str] | None  # each value sealed, as stored: the sender opens them

    @classmethod
    def of(cls, row: Sequence[Any]) -> "PingTarget":
        """From a row of `_TARGET_COLUMNS`."""
        endpoint_id, url, secret, old_secret, old_secret_until, headers = row
        secrets: tuple[str, ...] = (secret,)
        until = ts(old_secret_until)
        # During a rotation the old secret signs beside the new one.
        if old_secret is not None and until is not None and until > utcnow():
            secrets = (secret, old_secret)
        return cls(endpoint_id, url, secrets, js(headers))


@dataclass(frozen=True, slots=True)
class PingsSent:
    payload: dict[str, Any]  # the envelope, as receivers got it
    outcomes: list[Outcome]
    delivery_ids: list[str]


async def send_pings(
    *, store: Store, sender: Sender, targets: list[PingTarget], data: dict[str, Any]
) -> PingsSent:
    """Send one `ping` event to every target concurrently, then record it as delivered.

    No transaction stays open while receivers take up to the delivery timeout.
    """
    event_id, created_at = new_id("evt"), utcnow()
    body = envelope.render(event_id=event_id, event=events.PING, created_at=created_at, data=data)
    outcomes = await asyncio.gather(
        *(
            sender.send(url=t.url, msg_id=event_id, body=body, secrets=t.secrets, headers=t.headers)
            for t in targets
        )
    )
    delivery_ids = await store.write(
        outbox.record_sent(
            event_id=event_id,
            event=events.PING,
            created_at=created_at,
            data=data,
            sent=[(t.endpoint_id, o.as_row()) for t, o in zip(targets, outcomes, strict=True)],
        )
    )
    payload = {
        "id": event_id,
        "event": events.PING,
        "timestamp": envelope.timestamp(created_at),
        "data": data,
    }
    return PingsSent(payload, list(outcomes), delivery_ids)


async def ping(
    *, store: Store, sender: Sender, event_filter: str | None, data: dict[str, Any] | None
) -> PingReport:
    """Send one signed `ping` to every endpoint concurrently; report per (event, url) pair."""
    if data is not None:
        try:
            envelope.check_data(data)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from exc
    pairs, targets = await store.read(_ping_targets(event_filter))
    sent = await send_pings(
        store=store,
        sender=sender,
        targets=targets,
        data=DEFAULT_PING_DATA if data is None else data,
    )
    by_url = {t.url: o for t, o in zip(targets, sent.outcomes, strict=True)}
    return _report(pairs, by_url, sent.payload)


def _ping_targets(
    event_filter: str | None,
) -> Unit[tuple[list[tuple[str, str]], list[PingTarget]]]:
    """The (event, url) pairs to report on, and the endpoints behind them (one per URL)."""
    listed = yield from service.urls_by_event(event_filter=event_filter)
    pairs = [(entry.event, url) for entry in listed for url in entry.urls]
    found = yield units.rows(_TARGETS, {"urls": sorted({url for _, url in pairs})})
    return pairs, [PingTarget.of(row) for row in found]


def _report(
    pairs: list[tuple[str, str]], by_url: dict[str, Outcome], payload: dict[str, Any]
) -> PingReport:
    """The original service's answer: one entry per (event, url) pair, split by outcome."""
    ok, failed = [], []
    for event, url in pairs:
        outcome = by_url[url]
        if outcome.ok:
            ok.append(
                PingEntry(event=event, url=url, status_code=outcome.status_code, payload=payload)
            )
        else:
            failed.append(
                PingEntry(
                    event=event, url=url, status_code=outcome.status_code, error=outcome.error
                )
            )
    return PingReport(
        successful_webhooks_count=len(ok),
        successful_webhooks=ok,
        failed_webhooks_count=len(failed),
        failed_webhooks=failed,
        message=f"Pinged {len(pairs)} webhook(s): {len(ok)} succeeded, {len(failed)} failed",
    )


def target(endpoint_id: str) -> Unit[PingTarget | None]:
    """The endpoint to ping, enabled or not; None when there is none."""
    found = yield units.one(_TARGET, {"id": endpoint_id})
    return None if found is None else PingTarget.of(found)
