"""Endpoints: create and list them; by id read, change, remove, secrets and
their rotation, ping.

Every unit takes the caller's `scope`: None for the admin, who sees every endpoint, or a user's
id: a user sees only its own, and another's is 404, as if it did not exist. A deleted endpoint
(`deleted_at`) is 404 to everyone, as if it did not exist; its deliveries stay readable.

Secrets and custom header values are sealed at rest (secretbox.py): every write seals them, every
view opens them, the sender opens what the claim hands it as stored.
"""

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from hookline import filtering, logs
from hookline.delivery import envelope, signing
from hookline.delivery.sender import Sender
from hookline.delivery.ssrf import DestinationCheck
from hookline.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from hookline.events import service as events
from hookline.events import types
from hookline.events.schemas import AttemptOut
from hookline.ids import new_id
from hookline.models import utcnow
from hookline.secretbox import SecretBox
from hookline.store import Store, counts, health, redelivery, units
from hookline.store.sql import js, pick, sql, ts, ts_required, variants
from hookline.store.units import Unit
from hookline.webhooks import headers as custom_headers
from hookline.webhooks import pings, service, urls
from hookline.webhooks.schemas import (
    DeliveryStats,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointPatch,
    EndpointSummary,
    PingAttempt,
    RotatedSecret,
)

log = logging.getLogger("hookline.endpoints")

ROTATION_OVERLAP = timedelta(hours=24)
DISABLED_BY_REQUEST = "disabled by request"
PING_BY_ID_DATA = {"message": "Ping from hookline"}

Scope = str | None

_COLUMNS = (
    "e.id, e.url, e.description, e.headers, e.enabled, e.disabled_reason, e.disabled_at,"
    " e.failing_since, e.created_at, e.owner_id, u.username, e.filter, e.rate_limit, e.ordered"
)
_TABLES = "endpoints e LEFT JOIN users u ON u.id = e.owner_id"
_ENDPOINT = sql(f"SELECT {_COLUMNS} FROM {_TABLES} WHERE e.id = :id AND e.deleted_at IS NULL")
_OWNER = sql("SELECT owner_id FROM endpoints WHERE id = :id AND deleted_at IS NULL")
_EVENTS_OF_MANY = sql(
    "SELECT endpoint_id, event FROM subscriptions WHERE endpoint_id {in:ids} ORDER BY event"
)
# A user's endpoints are counted under a lock on its row (PostgreSQL), so that two concurrent
# creations cannot both pass the limit; SQLite's one writer serializes them anyway.
_LOCK_OWNER = sql(
    "SELECT id FROM users WHERE id = :id",
    postgres="SELECT id FROM users WHERE id = :id FOR UPDATE",
)
_OWNED = sql("SELECT count(*) FROM endpoints WHERE owner_id = :owner_id AND deleted_at IS NULL")
_USER_ID = sql("SELECT id FROM users WHERE username = :username")
_ADD = sql(
    "INSERT INTO endpoints (id, url, owner_id, description, secret, headers, filter, rate_limit,"
    " ordered, enabled, created_at) VALUES (:id, :url, :owner_id, :description, :secret,"
    " :headers, :filter, :rate_limit, :ordered, TRUE, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_SET_FILTER = sql("UPDATE endpoints SET filter = :filter WHERE id = :id")
_SET_RATE_LIMIT = sql("UPDATE endpoints SET rate_limit = :rate_limit WHERE id = :id")
_SET_ORDERED = sql("UPDATE endpoints SET ordered = :ordered WHERE id = :id")
_LIST = variants(
    f"SELECT {_COLUMNS} FROM {_TABLES}",
    "ORDER BY e.id DESC LIMIT :limit",
    always=["e.deleted_at IS NULL"],
    optional={
        "owner_id": "e.owner_id = :owner_id",
        "enabled": "e.enabled = :enabled",
        "url_contains": "lower(e.url) LIKE :url_contains ESCAPE '!'",
        "event": "e.id IN (SELECT endpoint_id FROM subscriptions WHERE event IN (:event, '*'))",
        "cursor": "e.id < :cursor",
    },
)
_EVENTS = sql("SELECT event FROM subscriptions WHERE endpoint_id = :id ORDER BY event")
_SET_URL = sql("UPDATE endpoints SET url = :url WHERE id = :id")
_SET_DESCRIPTION = sql("UPDATE endpoints SET description = :description WHERE id = :id")
_SET_HEADERS = sql("UPDATE endpoints SET headers = :headers WHERE id = :id")
_UNSUBSCRIBE = sql("DELETE FROM subscriptions WHERE endpoint_id = :id AND event {in:events}")
_SUBSCRIBE = sql(
    "INSERT INTO subscriptions (endpoint_id, event) VALUES (:id, :event) ON CONFLICT DO NOTHING"
)
# Kept, hidden, for its deliveries' sake (retention removes it once they are pruned); its
# secrets and custom headers (often a receiver's credentials) go at once, and its URL is free
# again (the unique indexes leave deleted rows out).
_REMOVE = sql(
    "UPDATE endpoints SET deleted_at = {now}, secret = '', old_secret = NULL,"
    " old_secret_until = NULL, headers = NULL WHERE id = :id AND deleted_at IS NULL RETURNING id"
)
_UNSUBSCRIBE_ALL = sql("DELETE FROM subscriptions WHERE endpoint_id = :id")
_SECRET = sql("SELECT secret FROM endpoints WHERE id = :id AND deleted_at IS NULL")
_SECRET_AND_HEADERS = sql(
    "SELECT secret, headers FROM endpoints WHERE id = :id AND deleted_at IS NULL"
)
# SET reads the row as it was: the present secret becomes the old one.
# A second rotation inside the overlap would drop the first secret at once, while receivers
# were promised 24 hours with it: refused until the overlap has passed.
_ROTATE = sql(
    "UPDATE endpoints SET old_secret = secret, secret = :secret, old_secret_until = :until"
    " WHERE id = :id AND deleted_at IS NULL"
    " AND (old_secret_until IS NULL OR old_secret_until <= {now}) RETURNING id"
)
_OVERLAP_UNTIL = sql("SELECT old_secret_until FROM endpoints WHERE id = :id AND deleted_at IS NULL")


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"Webhook '{endpoint_id}' not found")


def _visible(owner_id: str | None, scope: Scope) -> bool:
    return scope is None or owner_id == scope


def _load(endpoint_id: str, scope: Scope) -> Unit[Sequence[Any]]:
    found: Sequence[Any] | None = yield units.one(_ENDPOINT, {"id": endpoint_id})
    if found is None or not _visible(found[9], scope):
        raise _not_found(endpoint_id)
    return found


def require_visible(endpoint_id: str, scope: Scope) -> Unit[None]:
    """NotFound unless the endpoint exists and the caller may see it."""
    found = yield units.one(_OWNER, {"id": endpoint_id})
    if found is None or not _visible(found[0], scope):
        raise _not_found(endpoint_id)


def sealed_headers(box: SecretBox, headers: dict[str, str] | None) -> dict[str, str] | None:
    """Custom headers as stored: names readable, each value sealed."""
    if not headers:
        return None
    return {name: box.seal(value) for name, value in headers.items()}


def opened_headers(box: SecretBox, stored: Any) -> dict[str, str]:
    """The stored headers column (JSON) as given: each value opened (SecretKeyError when the
    key does not open one, as for a secret)."""
    return {name: box.open(value) for name, value in (js(stored) or {}).items()}


def _summary(box: SecretBox, row: Sequence[Any], events: list[str]) -> dict[str, Any]:
    return {
        "id": row[0],
        "url": row[1],
        "description": row[2],
        "headers": opened_headers(box, row[3]),
        "enabled": bool(row[4]),
        "disabled_reason": row[5],
        "disabled_at": ts(row[6]),
        "failing_since": ts(row[7]),
        "created_at": ts_required(row[8]),
        "owner": row[10],
        "filter": js(row[11]),
        "rate_limit": row[12],
        "ordered": bool(row[13]),
        "events": events,
    }


def get(*, box: SecretBox, endpoint_id: str, scope: Scope = None) -> Unit[EndpointOut]:
    fields = yield from _fields(box, endpoint_id, scope)
    stats = yield from counts.by_status(endpoint_id)
    return EndpointOut(
        **fields,
        stats=DeliveryStats.model_validate({status.value: n for status, n in stats.items()}),
    )


def summary(*, box: SecretBox, endpoint_id: str, scope: Scope = None) -> Unit[EndpointSummary]:
    """The endpoint without its counts (which read every delivery it has: the dashboard's
    pages, which must stay fast with a long history, count a recent window instead)."""
    return EndpointSummary(**(yield from _fields(box, endpoint_id, scope)))


def _fields(box: SecretBox, endpoint_id: str, scope: Scope) -> Unit[dict[str, Any]]:
    endpoint = yield from _load(endpoint_id, scope)
    subscribed = yield units.rows(_EVENTS, {"id": endpoint_id})
    return _summary(box, endpoint, [row[0] for row in subscribed])


def list_endpoints(
    *,
    box: SecretBox,
    scope: Scope,
    event: str | None,
    enabled: bool | None,
    url_contains: str | None,
    owner: str | None,
    limit: int,
    cursor: str | None,
) -> Unit[list[EndpointSummary]]:
    """Endpoints, newest first, older than `cursor` (an endpoint id) when given."""
    owner_id = scope
    if owner is not None:
        found = yield units.value(_USER_ID, {"username": owner.strip().lower()})
        if found is None or (scope is not None and found != scope):
            return []  # nobody's endpoints, or another user's: none that this caller sees
        owner_id = found
    params = {
        "owner_id": owner_id,
        "enabled": enabled,
        "url_contains": None if url_contains is None else f"%{_like(url_contains.lower())}%",
        "event": None if event is None else types.canonical(event),
        "cursor": cursor,
    }
    rows = yield units.rows(pick(_LIST, params), {**params, "limit": limit})
    subscribed: dict[str, list[str]] = {}
    if rows:
        ids = [row[0] for row in rows]
        for endpoint_id, name in (yield units.rows(_EVENTS_OF_MANY, {"ids": ids})):
            subscribed.setdefault(endpoint_id, []).append(name)
    return [EndpointSummary(**_summary(box, row, subscribed.get(row[0], []))) for row in rows]


def _like(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (`!` escapes)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


async def creation(
    *,
    destinations: DestinationCheck,
    box: SecretBox,
    body: EndpointCreate,
    scope: Scope,
    max_per_user: int,
    ping_new: bool,
) -> Unit[EndpointCreated]:
    """The unit that creates an endpoint; the URL is checked first (a unit cannot wait on DNS),
    its refusal raised in the unit (after an idempotent replay, which wins)."""
    refusal = await urls.refusal(body.url, destinations)
    return _create(
        box=box,
        body=body,
        scope=scope,
        refusal=refusal,
        max_per_user=max_per_user,
        ping_new=ping_new,
    )


def _create(
    *,
    box: SecretBox,
    body: EndpointCreate,
    scope: Scope,
    refusal: AppError | None,
    max_per_user: int,
    ping_new: bool,
) -> Unit[EndpointCreated]:
    owner_id = scope
    if body.owner is not None:
        found = yield units.value(_USER_ID, {"username": body.owner.strip().lower()})
        if found is None:
            raise NotFound(f"User '{body.owner}' does not exist")
        if scope is not None and found != scope:
            raise Forbidden("A user may only create endpoints of its own")
        owner_id = found
    names = set()
    for name in body.events:
        names.add((yield from types.subscribable(name)))
    if refusal is not None:
        raise refusal
    headers = _checked_headers(body.headers)
    _check_filter(body.filter)
    secret = _checked_secret(body.secret) if body.secret is not None else signing.generate_secret()
    if owner_id is not None:
        yield units.value(_LOCK_OWNER, {"id": owner_id})
        if (yield units.value(_OWNED, {"owner_id": owner_id})) >= max_per_user:
            raise Conflict(
                f"A user may own at most {max_per_user} endpoints"
                " (HOOKLINE_MAX_ENDPOINTS_PER_USER); delete one first"
            )
    endpoint_id = new_id("wh")
    added = yield units.value(
        _ADD,
        {
            "id": endpoint_id,
            "url": body.url,
            "owner_id": owner_id,
            "description": body.description,
            "secret": box.seal(secret),
            "headers": sealed_headers(box, headers),
            "filter": body.filter,
            "rate_limit": body.rate_limit,
            "ordered": body.ordered,
            "created_at": utcnow(),
        },
    )
    if added is None:
        raise Conflict(f"Webhook URL '{body.url}' already exists")
    yield units.execute_many(
        _SUBSCRIBE, ({"id": endpoint_id, "event": name} for name in sorted(names))
    )
    if ping_new:
        data = {"message": service.CREATED_PING_MESSAGE, "webhook_id": endpoint_id, "url": body.url}
        yield from events.publish(event=events.PING, data=data, to=[endpoint_id])
    created = yield from get(box=box, endpoint_id=endpoint_id)
    return EndpointCreated(**created.model_dump(), secret=secret)


def remembered_creation(created: EndpointCreated) -> dict[str, Any]:
    """What an idempotent creation stores of its answer: neither the secret nor the custom
    headers (a replay reads the endpoint's own, `with_secret_and_headers`)."""
    return created.model_dump(mode="json", exclude={"secret", "headers"})


def with_secret_and_headers(
    box: SecretBox,
) -> Callable[[dict[str, Any]], Unit[dict[str, Any]]]:
    """For an idempotent replay of a creation: put the endpoint's secret and custom headers
    back into the stored answer."""

    def restore(stored: dict[str, Any]) -> Unit[dict[str, Any]]:
        found = yield units.one(_SECRET_AND_HEADERS, {"id": stored["id"]})
        if found is None:
            raise Conflict(
                f"The webhook '{stored['id']}' this Idempotency-Key created no longer exists"
            )
        return stored | {"headers": opened_headers(box, found[1]), "secret": box.open(found[0])}

    return restore


def _check_filter(filter_: dict[str, Any] | None) -> None:
    if filter_ is None:
        return
    try:
        filtering.check(filter_)
    except filtering.FilterError as exc:
        raise Unprocessable(str(exc)) from exc


def _checked_headers(given: dict[str, str] | None) -> dict[str, str] | None:
    try:
        return custom_headers.check(given or {}) or None
    except ValueError as exc:
        raise Unprocessable(f"Invalid headers: {exc}") from exc


MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64


def _checked_secret(secret: str) -> str:
    """A secret brought by the caller: `whsec_` and 24 to 64 bytes in base64."""
    if not secret.startswith(signing.SECRET_PREFIX):
        raise Unprocessable("Invalid secret: it must start with 'whsec_'")
    try:
        key = signing.secret_key(secret)
    except ValueError as exc:
        raise Unprocessable(f"Invalid secret: {exc}") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise Unprocessable(
            f"Invalid secret: it must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
            f" (this one holds {len(key)})"
        )
    return secret


async def update_endpoint(
    *,
    store: Store,
    destinations: DestinationCheck,
    box: SecretBox,
    endpoint_id: str,
    patch: EndpointPatch,
    scope: Scope = None,
) -> EndpointOut:
    """Apply the fields given; a changed event list cancels what no event covers any more."""
    # Checked before the unit (which cannot wait on DNS), raised in it where it applies.
    url_refusal = None
    if patch.url is not None:
        try:
            await urls.check_destination(urls.check(patch.url), destinations)
        except AppError as exc:
            url_refusal = exc
    updated, disabled = await store.write(_update(box, endpoint_id, patch, url_refusal, scope))
    if disabled:
        reason = DISABLED_BY_REQUEST
        log.info(
            "endpoint disabled", extra=logs.fields(endpoint_id=endpoint_id, reason=reason, by="api")
        )
    return updated


def _update(
    box: SecretBox,
    endpoint_id: str,
    patch: EndpointPatch,
    url_refusal: AppError | None,
    scope: Scope,
) -> Unit[tuple[EndpointOut, bool]]:
    """The endpoint changed, and whether this disabled it."""
    endpoint = yield from _load(endpoint_id, scope)
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
        headers = sealed_headers(box, _checked_headers(patch.headers))
        yield units.execute(_SET_HEADERS, {"id": endpoint_id, "headers": headers})
    if "filter" in given:
        _check_filter(patch.filter)
        yield units.execute(_SET_FILTER, {"id": endpoint_id, "filter": patch.filter})
    if "rate_limit" in given:
        yield units.execute(_SET_RATE_LIMIT, {"id": endpoint_id, "rate_limit": patch.rate_limit})
    if patch.ordered is not None:
        yield units.execute(_SET_ORDERED, {"id": endpoint_id, "ordered": patch.ordered})
    disabled: list[str] = []
    if patch.enabled is True and not enabled:
        yield from health.enable(endpoint_id)
    elif patch.enabled is False and enabled:
        disabled = yield from health.disable([endpoint_id], reason=DISABLED_BY_REQUEST)
    return (yield from get(box=box, endpoint_id=endpoint_id)), bool(disabled)


def _change_url(endpoint_id: str, url: str) -> Unit[None]:
    try:
        # Guarded: the unique index refuses a URL taken, by a concurrent request too.
        yield units.execute(_SET_URL, {"id": endpoint_id, "url": url}, guarded=True)
    except units.IntegrityError as exc:
        raise Conflict(f"Webhook URL '{url}' already exists") from exc


def _change_events(endpoint_id: str, names: list[str]) -> Unit[None]:
    present = {row[0] for row in (yield units.rows(_EVENTS, {"id": endpoint_id}))}
    wanted = set()
    for name in names:  # an archived type it has already may stay; no new one
        canonical = types.canonical(name)
        wanted.add(canonical if canonical in present else (yield from types.subscribable(name)))
    if present - wanted:
        yield units.execute(_UNSUBSCRIBE, {"id": endpoint_id, "events": sorted(present - wanted)})
    if wanted - present:
        added = ({"id": endpoint_id, "event": name} for name in sorted(wanted - present))
        yield units.execute_many(_SUBSCRIBE, added)
    yield from service.cancel_uncovered(endpoint_id)


def remove(*, endpoint_id: str, scope: Scope = None) -> Unit[None]:
    """Delete the endpoint: nothing more is sent to it (its pending deliveries are cancelled,
    its subscriptions removed), and every endpoint route answers 404 for it; its deliveries,
    their attempts and their events stay readable until retention prunes them.

    An attempt in flight finishes and is recorded; its delivery stays cancelled.
    """
    yield from require_visible(endpoint_id, scope)
    if (yield units.value(_REMOVE, {"id": endpoint_id})) is None:
        raise _not_found(endpoint_id)
    yield units.execute(_UNSUBSCRIBE_ALL, {"id": endpoint_id})
    yield from redelivery.cancel([endpoint_id])


def secret(*, box: SecretBox, endpoint_id: str, scope: Scope = None) -> Unit[str]:
    yield from require_visible(endpoint_id, scope)
    sealed = yield units.value(_SECRET, {"id": endpoint_id})
    if sealed is None:
        raise _not_found(endpoint_id)
    return box.open(sealed)


def rotate_secret(*, box: SecretBox, endpoint_id: str, scope: Scope = None) -> Unit[RotatedSecret]:
    """A new secret; the present one keeps signing beside it for 24 hours."""
    yield from require_visible(endpoint_id, scope)
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


async def ping(
    *, store: Store, sender: Sender, endpoint_id: str, scope: Scope = None
) -> PingAttempt:
    """Send one `ping` event to this endpoint now (enabled or not) and answer with the attempt."""
    target = await store.read(_target(endpoint_id, scope))
    sent = await pings.send_pings(
        store=store, sender=sender, targets=[target], data=PING_BY_ID_DATA
    )
    [outcome], [delivery_id] = sent.outcomes, sent.delivery_ids
    return PingAttempt(
        event_id=sent.payload["id"],
        delivery_id=delivery_id,
        payload=sent.payload,
        attempt=AttemptOut(number=1, trigger="manual", **outcome.as_row()),
    )


def _target(endpoint_id: str, scope: Scope) -> Unit[pings.PingTarget]:
    yield from require_visible(endpoint_id, scope)
    found = yield from pings.target(endpoint_id)
    if found is None:
        raise _not_found(endpoint_id)
    return found
