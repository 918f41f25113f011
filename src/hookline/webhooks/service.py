"""Endpoints and their subscriptions, as the original service's per-event URL lists see them."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.db import SessionMaker
from hookline.delivery import envelope, signing
from hookline.delivery.sender import Outcome, Sender
from hookline.errors import Conflict, NotFound, Unprocessable
from hookline.events import service as events
from hookline.ids import new_id
from hookline.models import Delivery, Endpoint, Event, Subscription, utcnow
from hookline.secretbox import SEALED_PREFIX, SecretBox
from hookline.webhooks import urls
from hookline.webhooks.schemas import EventUrls, PingEntry, PingReport, WebhookRegistered

DEFAULT_PING_DATA = {"message": "Ping from User Notification Webhook Service"}
CREATED_PING_MESSAGE = "Webhook endpoint created"
LISTED_EVENTS = (*events.SUBSCRIBABLE, events.WILDCARD)


def subscribable_event(name: str) -> str:
    """The canonical (lowercase) event name, or NotFound as the original service answered."""
    canonical = name.strip().lower()
    if canonical not in LISTED_EVENTS:
        raise NotFound(f"Event '{name}' not found")
    return canonical


async def register(
    *,
    session: AsyncSession,
    sender: Sender,
    box: SecretBox,
    event: str,
    url: str,
    ping_new: bool = False,
) -> WebhookRegistered:
    """Subscribe `url` to `event`; one endpoint (id, secret) per URL whatever its events.

    With `ping_new`, an endpoint created for this URL gets a `ping` event (through the outbox).
    """
    event = subscribable_event(event)
    url = urls.check(url)
    await urls.check_destination(url, sender)
    endpoint = await _endpoint_by_url(session, url)
    if endpoint is None:
        endpoint, created = await _create_endpoint(session, box, url)
        if created and ping_new:
            data = {"message": CREATED_PING_MESSAGE, "webhook_id": endpoint.id, "url": url}
            await events.publish_in_session(
                session=session, event=events.PING, data=data, to=[endpoint.id]
            )
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
        secret=box.open(endpoint.secret),
    )


async def _create_endpoint(
    session: AsyncSession, box: SecretBox, url: str
) -> tuple[Endpoint, bool]:
    """A new endpoint for `url` (True), or the one a concurrent request created in between."""
    endpoint = Endpoint(
        id=new_id("wh"), url=url, secret=box.seal(signing.generate_secret()), created_at=utcnow()
    )
    try:
        async with session.begin_nested():
            session.add(endpoint)
    except IntegrityError:
        existing = await _endpoint_by_url(session, url)
        if existing is None:
            raise
        return existing, False
    return endpoint, True


async def unregister(*, session: AsyncSession, event: str, url: str) -> None:
    """Unsubscribe `url` from `event` and cancel what was still pending for it."""
    event = subscribable_event(event)
    endpoint = await _endpoint_by_url(session, urls.check(url.strip()))
    subscription = None if endpoint is None else await _subscription(session, endpoint.id, event)
    if endpoint is None or subscription is None:
        raise NotFound(f"Webhook URL '{url}' not found for event '{event}'")
    await session.execute(delete(Subscription).where(Subscription.id == subscription.id))
    await cancel_uncovered(session, endpoint.id)


async def cancel_uncovered(session: AsyncSession, endpoint_id: str) -> None:
    """Cancel the endpoint's pending deliveries of events none of its subscriptions covers."""
    remaining = set(
        (
            await session.execute(
                select(Subscription.event).where(Subscription.endpoint_id == endpoint_id)
            )
        ).scalars()
    )
    if events.WILDCARD in remaining:
        return
    await session.execute(
        update(Delivery)
        .where(
            Delivery.endpoint_id == endpoint_id,
            Delivery.status == "pending",
            Delivery.event_id.in_(select(Event.id).where(Event.event.not_in(remaining))),
        )
        .values(status="cancelled", next_attempt_at=None, finished_at=utcnow())
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
class PingTarget:
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    headers: dict[str, str] | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> "PingTarget":
        return cls(endpoint.id, endpoint.url, signing_secrets(endpoint), endpoint.headers)


def signing_secrets(endpoint: Endpoint) -> tuple[str, ...]:
    """The secrets that sign for the endpoint now: during a rotation the old one too."""
    until = endpoint.old_secret_until
    if endpoint.old_secret is not None and until is not None and until > utcnow():
        return (endpoint.secret, endpoint.old_secret)
    return (endpoint.secret,)


@dataclass(frozen=True, slots=True)
class PingsSent:
    payload: dict[str, Any]  # the envelope, as receivers got it
    outcomes: list[Outcome]
    delivery_ids: list[str]


async def send_pings(
    *, sessions: SessionMaker, sender: Sender, targets: list[PingTarget], data: dict[str, Any]
) -> PingsSent:
    """Send one `ping` event to every target concurrently and record it as delivered."""
    event_id, created_at = new_id("evt"), utcnow()
    body = envelope.render(event_id=event_id, event=events.PING, created_at=created_at, data=data)
    outcomes = await asyncio.gather(
        *(
            sender.send(url=t.url, msg_id=event_id, body=body, secrets=t.secrets, headers=t.headers)
            for t in targets
        )
    )
    async with sessions.begin() as session:
        delivery_ids = await events.record_sent(
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
    return PingsSent(payload, list(outcomes), delivery_ids)


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
    if data is not None:
        try:
            envelope.check_data(data)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from exc
    async with sessions.begin() as session:
        listed = await urls_by_event(session=session, event_filter=event_filter)
        pairs = [(entry.event, url) for entry in listed for url in entry.urls]
        query = select(Endpoint).where(Endpoint.url.in_({u for _, u in pairs}))
        targets = [PingTarget.of(e) for e in (await session.execute(query)).scalars()]
    sent = await send_pings(
        sessions=sessions,
        sender=sender,
        targets=targets,
        data=DEFAULT_PING_DATA if data is None else data,
    )
    by_url = {t.url: o for t, o in zip(targets, sent.outcomes, strict=True)}
    return _report(pairs, by_url, sent.payload)


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


def with_secret(
    session: AsyncSession, box: SecretBox
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """For an idempotent replay of a registration: put the endpoint's secret back into the
    stored answer (secrets are not stored with answers)."""

    async def restore(stored: dict[str, Any]) -> dict[str, Any]:
        query = select(Endpoint.secret).where(Endpoint.id == stored["id"])
        secret = (await session.execute(query)).scalar_one_or_none()
        if secret is None:
            raise Conflict(
                f"The webhook '{stored['id']}' this Idempotency-Key registered no longer exists"
            )
        return stored | {"secret": box.open(secret)}

    return restore


async def reseal_secrets(session: AsyncSession, box: SecretBox, *, every: bool) -> int:
    """Seal the secrets stored in plain text (from before sealing), or with `every`, re-seal
    every secret with the first key (after a key rotation). Returns how many changed."""
    rows = await session.execute(select(Endpoint.id, Endpoint.secret, Endpoint.old_secret))
    changed = 0
    for endpoint_id, secret, old_secret in rows.all():
        values: dict[str, str] = {}
        if every or not secret.startswith(SEALED_PREFIX):
            values["secret"] = box.reseal(secret)
        if old_secret is not None and (every or not old_secret.startswith(SEALED_PREFIX)):
            values["old_secret"] = box.reseal(old_secret)
        if values:
            await session.execute(
                update(Endpoint).where(Endpoint.id == endpoint_id).values(**values)
            )
            changed += 1
    return changed


async def check_secret_key(session: AsyncSession, box: SecretBox) -> None:
    """Raise SecretKeyError at start when the key does not open the stored secrets, rather
    than on the first signature (the newest endpoint's secret stands for all)."""
    newest = await session.scalar(
        select(Endpoint.secret)
        .where(Endpoint.secret.startswith(SEALED_PREFIX))
        .order_by(Endpoint.id.desc())
        .limit(1)
    )
    if newest is not None:
        box.open(newest)
