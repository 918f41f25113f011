"""Endpoints and their subscriptions, as the original service's per-event URL lists see them."""

from collections.abc import Callable
from typing import Any

from hookline.delivery import signing
from hookline.delivery.ssrf import DestinationCheck
from hookline.errors import AppError, Conflict, NotFound
from hookline.events import service as events
from hookline.ids import new_id
from hookline.models import utcnow
from hookline.secretbox import SecretBox
from hookline.store import redelivery, units
from hookline.store.sql import sql
from hookline.store.units import Unit
from hookline.webhooks import urls
from hookline.webhooks.schemas import EventUrls, WebhookRegistered

CREATED_PING_MESSAGE = "Webhook endpoint created"
LISTED_EVENTS = (*events.SUBSCRIBABLE, events.WILDCARD)

# The unique indexes (endpoints.url; subscriptions' endpoint and event) are the checks: a URL
# or subscription that a concurrent request added first comes back as nothing, not an error.
_ADD_ENDPOINT = sql(
    "INSERT INTO endpoints (id, url, secret, enabled, created_at)"
    " VALUES (:id, :url, :secret, TRUE, :created_at) ON CONFLICT DO NOTHING RETURNING id"
)
_ENDPOINT_BY_URL = sql("SELECT id, secret FROM endpoints WHERE url = :url")
_SUBSCRIBE = sql(
    "INSERT INTO subscriptions (endpoint_id, event) VALUES (:endpoint_id, :event)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_UNSUBSCRIBE = sql(
    "DELETE FROM subscriptions WHERE event = :event"
    " AND endpoint_id = (SELECT id FROM endpoints WHERE url = :url) RETURNING endpoint_id"
)
_EVENTS_OF = sql("SELECT event FROM subscriptions WHERE endpoint_id = :endpoint_id")
_LISTING = sql(
    "SELECT s.event, e.url FROM subscriptions s JOIN endpoints e ON e.id = s.endpoint_id"
    " ORDER BY s.event, e.created_at, e.id"
)
_SECRET = sql("SELECT secret FROM endpoints WHERE id = :id")


def subscribable_event(name: str) -> str:
    """The canonical (lowercase) event name, or NotFound as the original service answered."""
    canonical = name.strip().lower()
    if canonical not in LISTED_EVENTS:
        raise NotFound(f"Event '{name}' not found")
    return canonical


async def checked(*, destinations: DestinationCheck, event: str, url: str) -> tuple[str, str]:
    """The event's canonical name and the URL, if the URL may be subscribed to it."""
    event = subscribable_event(event)
    url = urls.check(url)
    await urls.check_destination(url, destinations)
    return event, url


async def registration(
    *, destinations: DestinationCheck, box: SecretBox, event: str, url: str, ping_new: bool
) -> Unit[WebhookRegistered]:
    """The unit that subscribes `url` to `event`, checked first (a unit cannot wait on DNS).

    A refusal is raised when the unit runs, so that it comes where it always came: after an
    idempotent replay, which wins.
    """
    try:
        event, url = await checked(destinations=destinations, event=event, url=url)
    except AppError as exc:
        return _refused(exc)
    return register(box=box, event=event, url=url, ping_new=ping_new)


def _refused(error: AppError) -> Unit[Any]:
    raise error
    yield  # pragma: no cover - makes this a unit


def register(
    *, box: SecretBox, event: str, url: str, ping_new: bool = False
) -> Unit[WebhookRegistered]:
    """Subscribe `url` to `event` (both checked); one endpoint (id, secret) per URL whatever
    its events.

    With `ping_new`, an endpoint created for this URL gets a `ping` event (through the outbox).
    """
    secret = box.seal(signing.generate_secret())
    new = {"id": new_id("wh"), "url": url, "secret": secret, "created_at": utcnow()}
    endpoint_id = yield units.value(_ADD_ENDPOINT, new)
    if endpoint_id is None:  # the URL has its endpoint (maybe a concurrent request's, now)
        found = yield units.one(_ENDPOINT_BY_URL, {"url": url})
        if found is None:  # pragma: no cover - deleted by another request in between
            raise Conflict(f"Webhook URL '{url}' was removed while it was registered; retry")
        endpoint_id, secret = found[0], found[1]
    elif ping_new:
        data = {"message": CREATED_PING_MESSAGE, "webhook_id": endpoint_id, "url": url}
        yield from events.publish(event=events.PING, data=data, to=[endpoint_id])
    subscribed = yield units.value(_SUBSCRIBE, {"endpoint_id": endpoint_id, "event": event})
    if subscribed is None:
        raise Conflict(f"Webhook URL '{url}' already exists for event '{event}'")
    return WebhookRegistered(
        message="Webhook registered successfully",
        url=url,
        event=event,
        id=endpoint_id,
        secret=box.open(secret),
    )


def unregister(*, event: str, url: str) -> Unit[None]:
    """Unsubscribe `url` from `event` and cancel what was still pending for it."""
    event = subscribable_event(event)
    params = {"event": event, "url": urls.check(url.strip())}
    endpoint_id = yield units.value(_UNSUBSCRIBE, params)
    if endpoint_id is None:
        raise NotFound(f"Webhook URL '{url}' not found for event '{event}'")
    yield from cancel_uncovered(endpoint_id)


def cancel_uncovered(endpoint_id: str) -> Unit[None]:
    """Cancel the endpoint's pending deliveries of events none of its subscriptions covers."""
    remaining = {row[0] for row in (yield units.rows(_EVENTS_OF, {"endpoint_id": endpoint_id}))}
    if events.WILDCARD not in remaining:
        yield from redelivery.cancel_uncovered(endpoint_id, remaining)


def urls_by_event(*, event_filter: str | None) -> Unit[list[EventUrls]]:
    """Every subscribable event with its URLs (empty ones too), or the one asked for."""
    wanted = None
    if event_filter is not None:
        wanted = event_filter.strip().lower()
        if wanted not in LISTED_EVENTS:
            raise NotFound(f"Event '{event_filter}' not found.")
    by_event: dict[str, list[str]] = {name: [] for name in events.SUBSCRIBABLE}
    for event, url in (yield units.rows(_LISTING)):
        by_event.setdefault(event, []).append(url)
    if wanted is None:
        return [EventUrls(event=e, urls=u) for e, u in by_event.items()]
    if not by_event.get(wanted):
        raise NotFound(f"Event '{event_filter}' has no registered URLs.")
    return [EventUrls(event=wanted, urls=by_event[wanted])]


def with_secret(box: SecretBox) -> Callable[[dict[str, Any]], Unit[dict[str, Any]]]:
    """For an idempotent replay of a registration: put the endpoint's secret back into the
    stored answer (secrets are not stored with answers)."""

    def restore(stored: dict[str, Any]) -> Unit[dict[str, Any]]:
        secret = yield units.value(_SECRET, {"id": stored["id"]})
        if secret is None:
            raise Conflict(
                f"The webhook '{stored['id']}' this Idempotency-Key registered no longer exists"
            )
        return stored | {"secret": box.open(secret)}

    return restore
