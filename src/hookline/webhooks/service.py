"""Endpoints and their subscriptions, as the original service's per-event URL lists see them."""

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.db import SessionMaker
from hookline.delivery import envelope, signing
from hookline.delivery.sender import Outcome, Sender
from hookline.errors import Conflict, NotFound
from hookline.events import service as events
from hookline.ids import new_id
from hookline.models import Delivery, Endpoint, Event, Subscription, utcnow
from hookline.webhooks import urls
from hookline.webhooks.schemas import EventUrls, PingEntry, PingReport, WebhookRegistered

DEFAULT_PING_DATA = {"message": "Ping from User Notification Webhook Service"}
LISTED_EVENTS = (*events.SUBSCRIBABLE, events.WILDCARD)


def subscribable_event(name: str) -> str:
    """The canonical (lowercase) event name, or NotFound as the original service answered."""
    canonical = name.strip().lower()
    if canonical not in LISTED_EVENTS:
        raise NotFound(f"Event '{name}' not found")
    return canonical


async def register(*, session: AsyncSession, event: str, url: str) -> WebhookRegistered:
    """Subscribe `url` to `event`; one endpoint (id, secret) per URL whatever its events."""
    event = subscribable_event(event)
    url = urls.check(url)
    endpoint = await _endpoint_by_url(session, url) or await _create_endpoint(session, url)
    conflict = Conflict(f"Webhook URL '{url}' already exists for event '{event}'")
    if await _subscription(session, endpoint.id, event) is not None:
        raise conflict
    try:
        async with session.begin_nested():
            session.add(Subscription(endpoint_id=endpoint.id, event=event))
    except IntegrityError as exc:  # subscribed by a concurrent request in between
        raise conflict from exc
    return WebhookRegistered(
        message="Webhook registered successfully",
        url=url,
        event=event,
        id=endpoint.id,
        secret=endpoint.secret,
    )


async def _create_endpoint(session: AsyncSession, url: str) -> Endpoint:
    """A new endpoint for `url`, or the one a concurrent request created for it in between."""
    endpoint = Endpoint(
        id=new_id("wh"), url=url, secret=signing.generate_secret(), created_at=utcnow()
    )
    try:
        async with session.begin_nested():
            session.add(endpoint)
    except IntegrityError:
        existing = await _endpoint_by_url(session, url)
        if existing is None:
            raise
        return existing
    return endpoint


async def unregister(*, session: AsyncSession, event: str, url: str) -> None:
    """Unsubscribe `url` from `event` and cancel what was still pending for it."""
    event = subscribable_event(event)
    endpoint = await _endpoint_by_url(session, url.strip())
    subscription = None if endpoint is None else await _subscription(session, endpoint.id, event)
    if endpoint is None or subscription is None:
        raise NotFound(f"Webhook URL '{url}' not found for event '{event}'")
    await session.execute(delete(Subscription).where(Subscription.id == subscription.id))
    # Cancel what is pending for events no remaining subscription of this URL covers.
    remaining = set(
        (
            await session.execute(
                select(Subscription.event).where(Subscription.endpoint_id == endpoint.id)
            )
        ).scalars()
    )
    if events.WILDCARD in remaining:
        return
    await session.execute(
        update(Delivery)
        .where(
            Delivery.endpoint_id == endpoint.id,
            Delivery.status == "pending",
            Delivery.event_id.in_(select(Event.id).where(Event.event.not_in(remaining))),
        )
        .values(status="cancelled", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def urls_by_event(*, session: AsyncSession, event_filter: str | None) -> list[EventUrls]:
    """Every subscribable event with its URLs (empty ones too), or the one asked for."""
    rows = await session.execute(
        select(Subscription.event, Endpoint.url)
        .join(Endpoint, Endpoint.id == Subscription.endpoint_id)
        .order_by(Subscription.event, Endpoint.created_at, Endpoint.id)
    )
    by_event: dict[str, list[str]] = {name: [] for name in events.SUBSCRIBABLE}
    for event, url in rows:
        by_event.setdefault(event, []).append(url)
    if event_filter is None:
        return [EventUrls(event=e, urls=u) for e, u in by_event.items()]
    wanted = event_filter.strip().lower()
    if wanted not in LISTED_EVENTS:
        raise NotFound(f"Event '{event_filter}' not found.")
    if not by_event.get(wanted):
        raise NotFound(f"Event '{event_filter}' has no registered URLs.")
    return [EventUrls(event=wanted, urls=by_event[wanted])]


@dataclass(frozen=True, slots=True)
class _Target:
    endpoint_id: str
    url: str
    secret: str


async def ping(
    *,
    sessions: SessionMaker,
    sender: Sender,
    event_filter: str | None,
    data: dict[str, Any] | None,
) -> PingReport:
    """Send one signed `ping` to every endpoint concurrently; report per (event, url) pair.

    It owns two short transactions instead of taking the request's: none may stay open while
    receivers take up to the delivery timeout (on SQLite it would hold the write lock).
    """
    async with sessions.begin() as session:
        listed = await urls_by_event(session=session, event_filter=event_filter)
        pairs = [(entry.event, url) for entry in listed for url in entry.urls]
        query = select(Endpoint).where(Endpoint.url.in_({u for _, u in pairs}))
        targets = [_Target(e.id, e.url, e.secret) for e in (await session.execute(query)).scalars()]
    data = DEFAULT_PING_DATA if data is None else data
    event_id, created_at = new_id("evt"), utcnow()
    body = envelope.render(event_id=event_id, event=events.PING, created_at=created_at, data=data)
    outcomes = await asyncio.gather(
        *(sender.send(url=t.url, msg_id=event_id, body=body, secrets=(t.secret,)) for t in targets)
    )
    async with sessions.begin() as session:
        await events.record_sent(
            session=session,
            event_id=event_id,
            event=events.PING,
            created_at=created_at,
            data=data,
            sent=[
                events.SentDirectly(t.endpoint_id, o)
                for t, o in zip(targets, outcomes, strict=True)
            ],
        )
    payload = {
        "id": event_id,
        "event": events.PING,
        "timestamp": envelope.timestamp(created_at),
        "data": data,
    }
    by_url = {t.url: o for t, o in zip(targets, outcomes, strict=True)}
    return _report(pairs, by_url, payload)


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


async def _endpoint_by_url(session: AsyncSession, url: str) -> Endpoint | None:
    query = select(Endpoint).where(Endpoint.url == url)
    return (await session.execute(query)).scalar_one_or_none()


async def _subscription(session: AsyncSession, endpoint_id: str, event: str) -> Subscription | None:
    query = select(Subscription).where(
        Subscription.endpoint_id == endpoint_id, Subscription.event == event
    )
    return (await session.execute(query)).scalar_one_or_none()
