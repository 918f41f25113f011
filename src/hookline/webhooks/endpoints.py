"""Endpoints by id (CONTRACT §5): read, change, remove, secrets and their rotation, ping."""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from hookline.delivery import envelope, signing
from hookline.delivery.sender import Sender
from hookline.delivery.ssrf import DestinationCheck
from hookline.errors import AppError, Conflict, NotFound, Unprocessable
from hookline.events.schemas import AttemptOut
from hookline.models import utcnow
from hookline.secretbox import SecretBox
from hookline.store import Store, counts, health, units
from hookline.store.sql import js, sql, ts, ts_required
from hookline.store.units import Unit
from hookline.webhooks import headers as custom_headers
from hookline.webhooks import pings, service, urls
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

_ENDPOINT = sql(
    "SELECT id, url, description, headers, enabled, disabled_reason, disabled_at,"
    " failing_since, created_at FROM endpoints WHERE id = :id"
)
_EVENTS = sql("SELECT event FROM subscriptions WHERE endpoint_id = :id ORDER BY event")
_SET_URL = sql("UPDATE endpoints SET url = :url WHERE id = :id")
_SET_DESCRIPTION = sql("UPDATE endpoints SET description = :description WHERE id = :id")
_SET_HEADERS = sql("UPDATE endpoints SET headers = :headers WHERE id = :id")
_UNSUBSCRIBE = sql("DELETE FROM subscriptions WHERE endpoint_id = :id AND event {in:events}")
_SUBSCRIBE = sql(
    "INSERT INTO subscriptions (endpoint_id, event) VALUES (:id, :event) ON CONFLICT DO NOTHING"
)
# Its subscriptions, deliveries and their attempts go with it (ON DELETE CASCADE): an attempt in
# flight finishes, but its result is dropped.
_REMOVE = sql("DELETE FROM endpoints WHERE id = :id RETURNING id")
_SECRET = sql("SELECT secret FROM endpoints WHERE id = :id")
# SET reads the row as it was: the present secret becomes the old one.
# A second rotation inside the overlap would drop the first secret at once, while receivers
# were promised 24 hours with it: refused until the overlap has passed.
_ROTATE = sql(
    "UPDATE endpoints SET old_secret = secret, secret = :secret, old_secret_until = :until"
    " WHERE id = :id AND (old_secret_until IS NULL OR old_secret_until <= {now}) RETURNING id"
)
_OVERLAP_UNTIL = sql("SELECT old_secret_until FROM endpoints WHERE id = :id")


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"Webhook '{endpoint_id}' not found")


def _load(endpoint_id: str) -> Unit[Sequence[Any]]:
    found: Sequence[Any] | None = yield units.one(_ENDPOINT, {"id": endpoint_id})
    if found is None:
        raise _not_found(endpoint_id)
    return found


def get(*, endpoint_id: str) -> Unit[EndpointOut]:
    endpoint = yield from _load(endpoint_id)
    subscribed = yield units.rows(_EVENTS, {"id": endpoint_id})
    stats = yield from counts.by_status(endpoint_id)
    return EndpointOut(
        id=endpoint[0],
        url=endpoint[1],
        description=endpoint[2],
        headers=js(endpoint[3]) or {},
        enabled=bool(endpoint[4]),
        disabled_reason=endpoint[5],
        disabled_at=ts(endpoint[6]),
        failing_since=ts(endpoint[7]),
        created_at=ts_required(endpoint[8]),
        events=[row[0] for row in subscribed],
        stats=DeliveryStats.model_validate({status.value: n for status, n in stats.items()}),
    )


async def update_endpoint(
    *, store: Store, destinations: DestinationCheck, endpoint_id: str, patch: EndpointPatch
) -> EndpointOut:
    """Apply the fields given; a changed event list cancels what no event covers any more."""
    # Checked before the unit (which cannot wait on DNS), raised in it where it applies.
    url_refusal = None
    if patch.url is not None:
        try:
            await urls.check_destination(urls.check(patch.url), destinations)
        except AppError as exc:
            url_refusal = exc
    return await store.write(_update(endpoint_id, patch, url_refusal))


def _update(
    endpoint_id: str, patch: EndpointPatch, url_refusal: AppError | None
) -> Unit[EndpointOut]:
    endpoint = yield from _load(endpoint_id)
    url, enabled = endpoint[1], bool(endpoint[4])
    given = patch.model_fields_set
    if patch.url is not None and patch.url != url:
        if url_refusal is not None:
            raise url_refusal
        yield from _change_url(endpoint_id, patch.url)
    if patch.events is not None:
        yield from _change_events(endpoint_id, patch.events)
    if "description" in given:
        yield units.execute(_SET_DESCRIPTION, {"id": endpoint_id, "description": patch.description})
    if "headers" in given:
        try:
            headers = custom_headers.check(patch.headers or {}) or None
        except ValueError as exc:
            raise Unprocessable(f"Invalid headers: {exc}") from exc
        yield units.execute(_SET_HEADERS, {"id": endpoint_id, "headers": headers})
    if patch.enabled is True and not enabled:
        yield from health.enable(endpoint_id)
    elif patch.enabled is False and enabled:
        yield from health.disable([endpoint_id], reason=DISABLED_BY_REQUEST)
    return (yield from get(endpoint_id=endpoint_id))


def _change_url(endpoint_id: str, url: str) -> Unit[None]:
    try:
        # Guarded: the unique index refuses a URL taken, by a concurrent request too.
        yield units.execute(_SET_URL, {"id": endpoint_id, "url": url}, guarded=True)
    except units.IntegrityError as exc:
        raise Conflict(f"Webhook URL '{url}' already exists") from exc


def _change_events(endpoint_id: str, names: list[str]) -> Unit[None]:
    wanted = {service.subscribable_event(name) for name in names}
    present = {row[0] for row in (yield units.rows(_EVENTS, {"id": endpoint_id}))}
    if present - wanted:
        yield units.execute(_UNSUBSCRIBE, {"id": endpoint_id, "events": sorted(present - wanted)})
    if wanted - present:
        added = ({"id": endpoint_id, "event": name} for name in sorted(wanted - present))
        yield units.execute_many(_SUBSCRIBE, added)
    yield from service.cancel_uncovered(endpoint_id)


def remove(*, endpoint_id: str) -> Unit[None]:
    """Delete the endpoint with its subscriptions, deliveries and their attempts."""
    if (yield units.value(_REMOVE, {"id": endpoint_id})) is None:
        raise _not_found(endpoint_id)


def secret(*, box: SecretBox, endpoint_id: str) -> Unit[str]:
    sealed = yield units.value(_SECRET, {"id": endpoint_id})
    if sealed is None:
        raise _not_found(endpoint_id)
    return box.open(sealed)


def rotate_secret(*, box: SecretBox, endpoint_id: str) -> Unit[RotatedSecret]:
    """A new secret; the present one keeps signing beside it for 24 hours."""
    until = utcnow() + ROTATION_OVERLAP
    new_secret = signing.generate_secret()
    params = {"id": endpoint_id, "secret": box.seal(new_secret), "until": until}
    if (yield units.value(_ROTATE, params)) is None:
        found = yield units.one(_OVERLAP_UNTIL, {"id": endpoint_id})
        if found is None:
            raise _not_found(endpoint_id)
        raise Conflict(
            f"Webhook '{endpoint_id}' was rotated less than 24 hours ago: its previous secret"
            f" signs until {envelope.timestamp(ts_required(found[0]))}; rotate again after that"
        )
    return RotatedSecret(secret=new_secret, previous_valid_until=until)


async def ping(*, store: Store, sender: Sender, endpoint_id: str) -> PingAttempt:
    """Send one `ping` event to this endpoint now (enabled or not) and answer with the attempt."""
    target = await store.read(_target(endpoint_id))
    sent = await pings.send_pings(
        store=store, sender=sender, targets=[target], data=PING_BY_ID_DATA
    )
    [outcome], [delivery_id] = sent.outcomes, sent.delivery_ids
    return PingAttempt(
        event_id=sent.payload["id"],
        delivery_id=delivery_id,
        payload=sent.payload,
        attempt=AttemptOut(number=1, **outcome.as_row()),
    )


def _target(endpoint_id: str) -> Unit[pings.PingTarget]:
    found = yield from pings.target(endpoint_id)
    if found is None:
        raise _not_found(endpoint_id)
    return found
