"""The dashboard's log pages: the event log (the admin's, as `GET /events` is), one event with
its deliveries, one delivery with every attempt, and its retry.

Read through events/log.py with the session's scope: a user sees an event only through its own
endpoints' deliveries, and another user's delivery is 404.
"""

import json

from fastapi import APIRouter, Request, Response

from hookline.api.deps import SecretBoxDep, StoreDep
from hookline.api.pagination import page
from hookline.dashboard.pages import FormDep, PageRoute, redirect, render
from hookline.dashboard.session import PREFIX, SessionDep
from hookline.errors import Forbidden, NotFound
from hookline.events import log, types
from hookline.webhooks import endpoints

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 25
PREVIEW_CHARS = 120


def _query(request: Request, name: str) -> str | None:
    value = (request.query_params.get(name) or "").strip()
    return value if value and len(value) <= 64 else None


@router.get("/events")
async def events_page(request: Request, session: SessionDep, store: StoreDep) -> Response:
    if not session.is_admin:  # as GET /events: the log holds every user's events
        raise Forbidden("The event log is the admin's; your deliveries are on your endpoints")
    event = _query(request, "event")
    cursor = _query(request, "cursor")
    found = await store.read(log.list_events(event=event, limit=PAGE_SIZE + 1, cursor=cursor))
    listed = page(found, PAGE_SIZE, lambda e: e.id)
    known = await store.read(types.list_types())
    previews = {
        e.id: _preview(json.dumps(e.data, ensure_ascii=False, separators=(",", ":")))
        for e in listed.data
    }
    return render(
        request,
        "events.html",
        session=session,
        events=listed.data,
        previews=previews,
        next_cursor=listed.next_cursor,
        cursor=cursor,
        event=event or "",
        names=[t.name for t in known],
    )


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@router.get("/events/{event_id}")
async def event_page(
    request: Request, event_id: str, session: SessionDep, store: StoreDep
) -> Response:
    event = await store.read(log.get_event(event_id=event_id, scope=session.scope))
    return render(request, "event.html", session=session, event=event)


@router.get("/deliveries/{delivery_id}")
async def delivery_page(
    request: Request, delivery_id: str, session: SessionDep, store: StoreDep, box: SecretBoxDep
) -> Response:
    delivery = await store.read(log.get_delivery(delivery_id=delivery_id, scope=session.scope))
    try:
        endpoint = await store.read(
            endpoints.summary(box=box, endpoint_id=delivery.endpoint_id, scope=session.scope)
        )
    except NotFound:  # deleted since: its deliveries stay readable
        endpoint = None
    return render(request, "delivery.html", session=session, delivery=delivery, endpoint=endpoint)


@router.post("/deliveries/{delivery_id}/retry")
async def retry(delivery_id: str, session: SessionDep, _form: FormDep, store: StoreDep) -> Response:
    """Due again now, whatever its status (as POST /deliveries/{id}/retry)."""
    await store.write(log.retry(delivery_id=delivery_id, scope=session.scope))
    return redirect(f"{PREFIX}/deliveries/{delivery_id}", notice="retried")
