"""The event log and deliveries, application events and the event-type catalog: what was sent,
to whom, how it went."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from hookline.api import idempotency
from hookline.api.auth import AdminDep, CallerDep
from hookline.api.deps import StoreDep
from hookline.api.idempotency import IdempotencyKeyHeader
from hookline.api.pagination import Cursor, Page, PageLimit, page
from hookline.api.responses import AUTH
from hookline.events import log, service, types
from hookline.events.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryStatus,
    EventDetail,
    EventIn,
    EventOut,
    EventSent,
    EventTypeCreate,
    EventTypeOut,
    EventTypePatch,
)

router = APIRouter(tags=["events"], responses=AUTH)

Id = Annotated[str, Path(min_length=1, max_length=64)]
TypeNameInPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/events", responses={404: {"description": "Unknown event name"}})
async def list_events(
    store: StoreDep,
    _admin: AdminDep,
    event: Annotated[
        str | None, Query(max_length=64, description="Only this event (case-insensitive).")
    ] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[EventOut]:
    """Events, newest first."""
    found = await store.read(log.list_events(event=event, limit=limit + 1, cursor=cursor))
    return page(found, limit, lambda e: e.id)


@router.post(
    "/events",
    status_code=status.HTTP_201_CREATED,
    response_model=EventSent,
    responses={
        404: {"description": "Unknown event type, or user"},
        409: {"description": "Idempotency-Key reused"},
    },
)
async def send_event(
    body: EventIn,
    store: StoreDep,
    _admin: AdminDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> EventSent:
    """Send an event of a type you defined: `data` must match the type's schema (`422` naming
    each failing path, nothing stored). It reaches the admin's endpoints subscribed to it and,
    with `user`, that user's own."""
    return await store.write(
        idempotency.once(
            scope="POST /events",
            key=idempotency_key,
            request=body,
            work=service.send(body),
            status_code=status.HTTP_201_CREATED,
            remember=lambda sent: sent.model_dump(mode="json"),
        )
    )


@router.get("/events/{event_id}", responses={404: {"description": "No such event"}})
async def get_event(event_id: Id, store: StoreDep, caller: CallerDep) -> EventDetail:
    """One event: its data and its deliveries (a user's token: its own endpoints' only)."""
    return await store.read(log.get_event(event_id=event_id, scope=caller.scope))


@router.get("/deliveries", responses={404: {"description": "Unknown event name"}})
async def list_deliveries(
    store: StoreDep,
    caller: CallerDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only these.")] = None,
    event: Annotated[
        str | None, Query(max_length=64, description="Only this event (case-insensitive).")
    ] = None,
    endpoint_id: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this endpoint's.")
    ] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """Deliveries across endpoints, newest first (a user's token: its own endpoints' only),
    deleted endpoints' included."""
    found = await store.read(
        log.list_all_deliveries(
            status=status,
            event=event,
            endpoint_id=endpoint_id,
            limit=limit + 1,
            cursor=cursor,
            scope=caller.scope,
        )
    )
    return page(found, limit, lambda d: d.id)


@router.get("/deliveries/{delivery_id}", responses={404: {"description": "No such delivery"}})
async def get_delivery(delivery_id: Id, store: StoreDep, caller: CallerDep) -> DeliveryDetail:
    """One delivery with every attempt: its trigger, the request headers as sent, the status
    code, the answer's headers and first 4 KiB, the error."""
    return await store.read(log.get_delivery(delivery_id=delivery_id, scope=caller.scope))


_RETRY_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such delivery"},
    409: {"description": "Its endpoint is disabled, or deleted"},
}


@router.post(
    "/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_RETRY_ERRORS,
)
async def retry_delivery(delivery_id: Id, store: StoreDep, caller: CallerDep) -> DeliveryDetail:
    """Send it again now, whatever its status: same `webhook-id`, fresh timestamp and signature."""
    return await store.write(log.retry(delivery_id=delivery_id, scope=caller.scope))


# -- the event-type catalog ----------------------------------------------------------------


@router.get("/event-types", tags=["event types"])
async def list_event_types(
    store: StoreDep, _caller: CallerDep, limit: PageLimit = 250, cursor: Cursor = None
) -> Page[EventTypeOut]:
    """Every event type, built-in and defined, by name."""
    found = [t for t in await store.read(types.list_types()) if cursor is None or t.name > cursor]
    return page(found[: limit + 1], limit, lambda t: t.name)


@router.post(
    "/event-types",
    tags=["event types"],
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "A type of this name exists"}},
)
async def create_event_type(
    body: EventTypeCreate, store: StoreDep, _admin: AdminDep
) -> EventTypeOut:
    """Define an event type, with an optional JSON Schema (2020-12) for its `data`."""
    return await store.write(types.create(body))


@router.get(
    "/event-types/{name}", tags=["event types"], responses={404: {"description": "No such type"}}
)
async def get_event_type(name: TypeNameInPath, store: StoreDep, _caller: CallerDep) -> EventTypeOut:
    """One event type with its schema."""
    return await store.read(types.get(name))


@router.patch(
    "/event-types/{name}",
    tags=["event types"],
    responses={404: {"description": "No such type"}, 422: {"description": "A built-in type"}},
)
async def update_event_type(
    name: TypeNameInPath, patch: EventTypePatch, store: StoreDep, _admin: AdminDep
) -> EventTypeOut:
    """Change its description or schema, or archive it (an archived type can't be sent or
    newly subscribed to); the built-in types cannot be changed."""
    return await store.write(types.update(name, patch))
