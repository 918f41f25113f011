"""Endpoints and their subscriptions, as the original service's per-event URL lists see them."""

from collections.abc import Callable
from typing import Any

from hookline.delivery import signing
from hookline.delivery.ssrf import DestinationCheck
from hookline.errors import AppError, Conflict, NotFound
from hookline.events import service as events
from hookline.events import types
from hookline.ids import new_id
from hookline.models import utcnow
from hookline.secretbox import SecretBox
from hookline.store import redelivery, units
from hookline.store.sql import sql
from hookline.store.units import Unit
from hookline.webhooks import urls
from hookline.webhooks.schemas import EventUrls, WebhookRegistered

CREATED_PING_MESSAGE = "Webhook endpoint created"

# The original routes (`/webhook`, `/webhooks`, `/ping`) are the admin's, over the admin's
# endpoints (no owner); users manage theirs under /endpoints.
# The unique indexes (the admin's URLs; subscriptions' endpoint and event) are the checks: a URL
# or subscription that a concurrent request added first comes back as nothing, not an error.
_ADD_ENDPOINT = sql(
    "INSERT INTO endpoints (id, url, secret, enabled, ordered, created_at)"
    " VALUES (:id, :url, :secret, TRUE, FALSE, :created_at) ON CONFLICT DO NOTHING RETURNING id"
)
_ADMINS = "owner_id IS NULL AND deleted_at IS NULL"  # the admin's endpoints (not deleted)
_ENDPOINT_BY_URL = sql(f"SELECT id, secret FROM endpoints WHERE url = :url AND {_ADMINS}")
_SUBSCRIBE = sql(
    "INSERT INTO subscriptions (endpoint_id, event) VALUES (:endpoint_id, :event)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_UNSUBSCRIBE = sql(
    "DELETE FROM subscriptions WHERE event = :event AND endpoint_id ="
    f" (SELECT id FROM endpoints WHERE url = :url AND {_ADMINS}) RETURNING endpoint_id"
)
_EVENTS_OF = sql("SELECT event FROM subscriptions WHERE endpoint_id = :endpoint_id")
_LISTING = sql(
    "SELECT s.event, e.url FROM subscriptions s JOIN endpoints e ON e.id = s.endpoint_id"
    " WHERE e.owner_id IS NULL AND e.deleted_at IS NULL ORDER BY s.event, e.created_at, e.id"
)
_SECRET = sql("SELECT secret FROM endpoints WHERE id = :id AND deleted_at IS NULL")


async def registration(
    *, destinations: DestinationCheck, box: SecretBox, event: str, url: str, ping_new: bool
) -> Unit[WebhookRegistered]:
    """The unit that subscribes `url` to `event`; the URL is checked first (a unit cannot wait
    on DNS), the event in the unit (the catalog is in the database).

    A refusal is raised when the unit runs, so that it comes where it always came: after an
    idempotent replay, which wins, and an unknown event's 404 before a bad URL's 422.
    """
    refusal = await urls.refusal(url, destinations)
    return _checked_register(
        box=box, event=event, url=url.strip(), refusal=refusal, ping_new=ping_new
    )


def _checked_register(
    *, box: SecretBox, event: str, url: str, refusal: AppError | None, ping_new: bool
) -> Unit[WebhookRegistered]:
    event = yield from types.subscribable(event)
    if refusal is not None:
        raise refusal
    return (yield from register(box=box, event=event, url=url, ping_new=ping_new))


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
    name = types.canonical(event)
    known = name == events.WILDCARD or (name != events.PING and (yield from types.find(name)))
    if not known:
        raise NotFound(f"Event '{event}' not found")
    event = name
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
    """Every subscribable event type with its URLs (empty ones too), or the one asked for."""
    listed = yield from types.listed()
    wanted = None
    if event_filter is not None:
        wanted = types.canonical(event_filter)
        if wanted not in listed and wanted != events.WILDCARD:
            raise NotFound(f"Event '{event_filter}' not found.")
    by_event: dict[str, list[str]] = {name: [] for name in listed}
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
