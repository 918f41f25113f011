"""Endpoints by id (CONTRACT §5): read, change, remove, secrets and their rotation, ping."""

from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hookline.db import SessionMaker
from hookline.delivery import signing
from hookline.delivery.sender import Sender
from hookline.errors import Conflict, NotFound, Unprocessable
from hookline.events.schemas import AttemptOut
from hookline.models import Attempt, Delivery, Endpoint, Subscription, utcnow
from hookline.secretbox import SecretBox
from hookline.webhooks import headers as custom_headers
from hookline.webhooks import lifecycle, service, urls
from hookline.webhooks.schemas import (
    DeliveryStats,
    EndpointOut,
    EndpointPatch,
    PingAttempt,
    RotatedSecret,
)

ROTATION_OVERLAP = timedelta(hours=24)
DISABLED_BY_REQUEST = "disabled by request"
PING_BY_ID_DATA = {"message": "Ping from hookline"}


async def load(session: AsyncSession, endpoint_id: str) -> Endpoint:
    endpoint = await session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"Webhook '{endpoint_id}' not found")
    return endpoint


async def get(*, session: AsyncSession, endpoint_id: str) -> EndpointOut:
    endpoint = await load(session, endpoint_id)
    subscribed = await session.execute(
        select(Subscription.event)
        .where(Subscription.endpoint_id == endpoint_id)
        .order_by(Subscription.event)
    )
    counts = await session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.endpoint_id == endpoint_id)
        .group_by(Delivery.status)
    )
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        events=list(subscribed.scalars()),
        headers=endpoint.headers or {},
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        failing_since=endpoint.failing_since,
        created_at=endpoint.created_at,
        stats=DeliveryStats.model_validate({status: n for status, n in counts}),
    )


async def update_endpoint(
    *, session: AsyncSession, sender: Sender, endpoint_id: str, patch: EndpointPatch
) -> EndpointOut:
    """Apply the fields given; a changed event list cancels what no event covers any more."""
    endpoint = await load(session, endpoint_id)
    given = patch.model_fields_set
    if patch.url is not None and patch.url != endpoint.url:
        url = urls.check(patch.url)
        await urls.check_destination(url, sender)
        await _change_url(session, endpoint, url)
    if patch.events is not None:
        await _change_events(session, endpoint, patch.events)
    if "description" in given:
        endpoint.description = patch.description
    if "headers" in given:
        try:
            endpoint.headers = custom_headers.check(patch.headers or {}) or None
        except ValueError as exc:
            raise Unprocessable(f"Invalid headers: {exc}") from exc
    await session.flush()
    if patch.enabled is True and not endpoint.enabled:
        await lifecycle.enable(session, endpoint.id)
    elif patch.enabled is False and endpoint.enabled:
        await lifecycle.disable(session, [endpoint.id], reason=DISABLED_BY_REQUEST)
    # The lifecycle changes went around the ORM: read the row again.
    await session.refresh(endpoint)
    return await get(session=session, endpoint_id=endpoint_id)


async def _change_url(session: AsyncSession, endpoint: Endpoint, url: str) -> None:
    conflict = Conflict(f"Webhook URL '{url}' already exists")
    taken = await session.scalar(select(Endpoint.id).where(Endpoint.url == url))
    if taken is not None:
        raise conflict
    try:
        async with session.begin_nested():
            endpoint.url = url
    except IntegrityError as exc:  # taken by a concurrent request in between
        raise conflict from exc


async def _change_events(session: AsyncSession, endpoint: Endpoint, names: list[str]) -> None:
    wanted = {service.subscribable_event(name) for name in names}
    present = set(
        (
            await session.execute(
                select(Subscription.event).where(Subscription.endpoint_id == endpoint.id)
            )
        ).scalars()
    )
    if present - wanted:
        await session.execute(
            delete(Subscription).where(
                Subscription.endpoint_id == endpoint.id,
                Subscription.event.in_(present - wanted),
            )
        )
    for name in sorted(wanted - present):
        session.add(Subscription(endpoint_id=endpoint.id, event=name))
    await session.flush()
    await service.cancel_uncovered(session, endpoint.id)


async def remove(*, session: AsyncSession, endpoint_id: str) -> None:
    """Delete the endpoint with its subscriptions, deliveries and their attempts.

    An attempt in flight finishes, but its result is dropped (its delivery is gone).
    """
    await load(session, endpoint_id)
    of_endpoint = select(Delivery.id).where(Delivery.endpoint_id == endpoint_id)
    await session.execute(delete(Attempt).where(Attempt.delivery_id.in_(of_endpoint)))
    await session.execute(delete(Delivery).where(Delivery.endpoint_id == endpoint_id))
    await session.execute(delete(Subscription).where(Subscription.endpoint_id == endpoint_id))
    await session.execute(delete(Endpoint).where(Endpoint.id == endpoint_id))


async def secret(*, session: AsyncSession, box: SecretBox, endpoint_id: str) -> str:
    return box.open((await load(session, endpoint_id)).secret)


async def rotate_secret(
    *, session: AsyncSession, box: SecretBox, endpoint_id: str
) -> RotatedSecret:
    """A new secret; the present one keeps signing beside it for 24 hours."""
    endpoint = await load(session, endpoint_id)
    until = utcnow() + ROTATION_OVERLAP
    new_secret = signing.generate_secret()
    await session.execute(
        update(Endpoint)
        .where(Endpoint.id == endpoint_id)
        .values(secret=box.seal(new_secret), old_secret=endpoint.secret, old_secret_until=until)
        .execution_options(synchronize_session=False)
    )
    return RotatedSecret(secret=new_secret, previous_valid_until=until)


async def ping(*, sessions: SessionMaker, sender: Sender, endpoint_id: str) -> PingAttempt:
    """Send one `ping` event to this endpoint now (enabled or not) and answer with the attempt."""
    async with sessions.begin() as session:
        target = service.PingTarget.of(await load(session, endpoint_id))
    sent = await service.send_pings(
        sessions=sessions, sender=sender, targets=[target], data=PING_BY_ID_DATA
    )
    [outcome], [delivery_id] = sent.outcomes, sent.delivery_ids
    return PingAttempt(
        event_id=sent.payload["id"],
        delivery_id=delivery_id,
        payload=sent.payload,
        attempt=AttemptOut(number=1, **outcome.as_row()),
    )
