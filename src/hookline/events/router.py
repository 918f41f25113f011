"""The event log and deliveries (CONTRACT §5): what was sent, to whom, how it went."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from hookline.api.auth import ADMIN_ONLY
from hookline.api.deps import StoreDep
from hookline.api.pagination import Cursor, Page, PageLimit, page
from hookline.api.responses import AUTH
from hookline.events import log
from hookline.events.schemas import DeliveryDetail, EventDetail, EventOut

router = APIRouter(tags=["events"], dependencies=[ADMIN_ONLY], responses=AUTH)

Id = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/events", responses={404: {"description": "Unknown event name"}})
async def list_events(
    store: StoreDep,
    event: Annotated[
        str | None, Query(max_length=64, description="Only this event (case-insensitive).")
    ] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[EventOut]:
    """Events, newest first."""
    found = await store.read(log.list_events(event=event, limit=limit + 1, cursor=cursor))
    return page(found, limit, lambda e: e.id)


@router.get("/events/{event_id}", responses={404: {"description": "No such event"}})
async def get_event(event_id: Id, store: StoreDep) -> EventDetail:
    """One event: its data and its deliveries."""
    return await store.read(log.get_event(event_id=event_id))


@router.get("/deliveries/{delivery_id}", responses={404: {"description": "No such delivery"}})
async def get_delivery(delivery_id: Id, store: StoreDep) -> DeliveryDetail:
    """One delivery with every attempt: status code, the first 4 KiB of the answer, error."""
    return await store.read(log.get_delivery(delivery_id=delivery_id))


_RETRY_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such delivery"},
    409: {"description": "Its webhook is disabled"},
}


@router.post(
    "/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_RETRY_ERRORS,
)
async def retry_delivery(delivery_id: Id, store: StoreDep) -> DeliveryDetail:
    """Send it again now, whatever its status: same `webhook-id`, fresh timestamp and signature."""
    return await store.write(log.retry(delivery_id=delivery_id))
