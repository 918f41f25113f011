"""The dashboard's endpoint pages: the list (search, create) and one endpoint (its stats and
deliveries; its secret revealed or rotated; enabled or disabled; its events, headers, filter,
rate limit and order changed; pinged; a window of failed deliveries recovered).

Every read and change goes through webhooks/endpoints.py and events/log.py, as the API's
routes do, with the signed-in caller's scope: another user's endpoint is 404 here too.
"""

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from hookline.api.deps import (
    DestinationsDep,
    SecretBoxDep,
    SenderDep,
    SettingsDep,
    StoreDep,
    runtime_of,
)
from hookline.api.pagination import page
from hookline.dashboard.pages import Form, FormDep, PageRoute, problems, redirect, render
from hookline.dashboard.queries import recent_by_status
from hookline.dashboard.session import PREFIX, Session, SessionDep
from hookline.errors import AppError, Unprocessable
from hookline.events import log, types
from hookline.events.schemas import DeliveryStatus
from hookline.store import Store
from hookline.webhooks import endpoints
from hookline.webhooks.schemas import (
    EndpointCreate,
    EndpointPatch,
    EndpointSummary,
    RecoverIn,
)

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 25
MAX_QUERY = 2048
STATUSES: tuple[DeliveryStatus, ...] = ("pending", "succeeded", "failed", "cancelled")


def _base(endpoint_id: str) -> str:
    return f"{PREFIX}/endpoints/{endpoint_id}"


def _query(request: Request, name: str, max_length: int = 64) -> str | None:
    """A query parameter, None when absent, blank or too long to be one of ours."""
    value = (request.query_params.get(name) or "").strip()
    return value if value and len(value) <= max_length else None


# -- the form's fields ----------------------------------------------------------------------


def _headers(text: str) -> dict[str, str] | None:
    """`Name: value` lines as a dict; None for none."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise Unprocessable(f"headers, line {number}: write it as 'Name: value'")
        found[name.strip()] = value.strip()
    return found or None


def _filter(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Unprocessable(f"filter: not JSON ({exc})") from exc


def _rate_limit(text: str) -> Any:
    return text or None  # pydantic reads the number (and says what is wrong with it)


def _fields(form: Form) -> dict[str, Any]:
    """The fields the create and settings forms share, as the API's bodies have them."""
    return {
        "url": form.text("url"),
        "events": [name for name in form.all("events") if name.strip()],
        "description": form.text("description") or None,
        "headers": _headers(form.text("headers")),
        "filter": _filter(form.text("filter")),
        "rate_limit": _rate_limit(form.text("rate_limit")),
        "ordered": form.checked("ordered"),
    }


def _form_values(form: Form) -> dict[str, Any]:
    """What the form held, to show it again with what was wrong."""
    return {
        "url": form.text("url"),
        "events": form.all("events"),
        "description": form.text("description"),
        "headers": form.text("headers"),
        "filter": form.text("filter"),
        "rate_limit": form.text("rate_limit"),
        "ordered": form.checked("ordered"),
        "owner": form.text("owner"),
    }


# The create form, empty.
NEW_ENDPOINT: dict[str, Any] = {
    "url": "",
    "events": [],
    "description": "",
    "headers": "",
    "filter": "",
    "rate_limit": "",
    "ordered": False,
    "owner": "",
}


def _values_of(endpoint: EndpointSummary) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description or "",
        "headers": "\n".join(f"{k}: {v}" for k, v in endpoint.headers.items()),
        "filter": "" if endpoint.filter is None else json.dumps(endpoint.filter, indent=2),
        "rate_limit": "" if endpoint.rate_limit is None else f"{endpoint.rate_limit:g}",
        "ordered": endpoint.ordered,
        "owner": endpoint.owner or "",
    }


async def _event_choices(store: Store) -> list[str]:
    """What an endpoint may subscribe to: every event (`*`) or a type not archived."""
    known = await store.read(types.list_types())
    return [
        types.WILDCARD,
        *(t.name for t in known if t.name != types.PING and not t.archived),
    ]


# -- the list -------------------------------------------------------------------------------


async def _list_page(
    request: Request,
    session: Session,
    store: Store,
    *,
    values: dict[str, Any] | None = None,
    create_problems: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    search = _query(request, "q", MAX_QUERY)
    state = _query(request, "enabled")
    enabled = {"true": True, "false": False}.get(state or "")
    event = _query(request, "event")
    cursor = _query(request, "cursor")
    found = await store.read(
        endpoints.list_endpoints(
            box=runtime_of(request).box,
            scope=session.scope,
            event=event,
            enabled=enabled,
            url_contains=search,
            owner=None,
            limit=PAGE_SIZE + 1,
            cursor=cursor,
        )
    )
    listed = page(found, PAGE_SIZE, lambda e: e.id)
    return render(
        request,
        "endpoints.html",
        session=session,
        status_code=status_code,
        endpoints=listed.data,
        next_cursor=listed.next_cursor,
        cursor=cursor,
        search=search or "",
        state=state or "",
        event=event or "",
        choices=await _event_choices(store),
        values=values or NEW_ENDPOINT,
        create_problems=create_problems or [],
    )


@router.get("/endpoints")
async def list_endpoints(request: Request, session: SessionDep, store: StoreDep) -> Response:
    return await _list_page(request, session, store)


@router.post("/endpoints")
async def create_endpoint(
    request: Request,
    session: SessionDep,
    form: FormDep,
    store: StoreDep,
    settings: SettingsDep,
    destinations: DestinationsDep,
    box: SecretBoxDep,
) -> Response:
    try:
        fields = _fields(form)
        owner = form.text("owner")
        if owner and session.is_admin:
            fields["owner"] = owner
        body = EndpointCreate.model_validate(fields)
        creation = await endpoints.creation(
            destinations=destinations,
            box=box,
            body=body,
            scope=session.scope,
            max_per_user=settings.max_endpoints_per_user,
            ping_new=settings.ping_on_create,
        )
        created = await store.write(creation)
    except (AppError, ValidationError) as exc:
        status_code = exc.status_code if isinstance(exc, AppError) else 422
        return await _list_page(
            request,
            session,
            store,
            values=_form_values(form),
            create_problems=problems(exc),
            status_code=status_code,
        )
    return redirect(_base(created.id), notice="created")


# -- one endpoint ---------------------------------------------------------------------------


async def _endpoint_page(
    request: Request,
    session: Session,
    store: Store,
    endpoint_id: str,
    *,
    values: dict[str, Any] | None = None,
    settings_problems: list[str] | None = None,
    secret: str | None = None,
    previous_valid_until: datetime | None = None,
    status_code: int = 200,
) -> Response:
    box = runtime_of(request).box
    endpoint = await store.read(
        endpoints.summary(box=box, endpoint_id=endpoint_id, scope=session.scope)
    )
    day_stats = await store.read(recent_by_status(endpoint_id=endpoint_id))
    status = _query(request, "status")
    if status not in STATUSES:
        status = None
    cursor = _query(request, "cursor")
    found = await store.read(
        log.list_deliveries(
            endpoint_id=endpoint_id,
            status=status,
            limit=PAGE_SIZE + 1,
            cursor=cursor,
            scope=session.scope,
        )
    )
    listed = page(found, PAGE_SIZE, lambda d: d.id)
    return render(
        request,
        "endpoint.html",
        session=session,
        status_code=status_code,
        endpoint=endpoint,
        day_stats=day_stats,
        base=_base(endpoint_id),
        deliveries=listed.data,
        next_cursor=listed.next_cursor,
        cursor=cursor,
        status=status or "",
        statuses=STATUSES,
        choices=await _event_choices(store),
        values=values or _values_of(endpoint),
        settings_problems=settings_problems or [],
        secret=secret,
        previous_valid_until=previous_valid_until,
        count=request.query_params.get("count", ""),
    )


@router.get("/endpoints/{endpoint_id}")
async def endpoint_page(
    request: Request, endpoint_id: str, session: SessionDep, store: StoreDep
) -> Response:
    return await _endpoint_page(request, session, store, endpoint_id)


@router.post("/endpoints/{endpoint_id}/settings")
async def change_settings(
    request: Request,
    endpoint_id: str,
    session: SessionDep,
    form: FormDep,
    store: StoreDep,
    destinations: DestinationsDep,
    box: SecretBoxDep,
) -> Response:
    try:
        patch = EndpointPatch.model_validate(_fields(form))
        await endpoints.update_endpoint(
            store=store,
            destinations=destinations,
            box=box,
            endpoint_id=endpoint_id,
            patch=patch,
            scope=session.scope,
        )
    except (AppError, ValidationError) as exc:
        if isinstance(exc, AppError) and exc.status_code == 404:
            raise
        return await _endpoint_page(
            request,
            session,
            store,
            endpoint_id,
            values=_form_values(form),
            settings_problems=problems(exc),
            status_code=exc.status_code if isinstance(exc, AppError) else 422,
        )
    return redirect(_base(endpoint_id), notice="saved")


@router.post("/endpoints/{endpoint_id}/enabled")
async def set_enabled(
    endpoint_id: str,
    session: SessionDep,
    form: FormDep,
    store: StoreDep,
    destinations: DestinationsDep,
    box: SecretBoxDep,
) -> Response:
    enabled = form.text("enabled") == "true"
    await endpoints.update_endpoint(
        store=store,
        destinations=destinations,
        box=box,
        endpoint_id=endpoint_id,
        patch=EndpointPatch(enabled=enabled),
        scope=session.scope,
    )
    return redirect(_base(endpoint_id), notice="enabled" if enabled else "disabled")


@router.post("/endpoints/{endpoint_id}/secret")
async def reveal_secret(
    request: Request,
    endpoint_id: str,
    session: SessionDep,
    _form: FormDep,
    store: StoreDep,
    box: SecretBoxDep,
) -> Response:
    """The secret, in this answer only (never in a URL or a redirect)."""
    secret = await store.read(
        endpoints.secret(box=box, endpoint_id=endpoint_id, scope=session.scope)
    )
    return await _endpoint_page(request, session, store, endpoint_id, secret=secret)


@router.post("/endpoints/{endpoint_id}/secret/rotate")
async def rotate_secret(
    request: Request,
    endpoint_id: str,
    session: SessionDep,
    _form: FormDep,
    store: StoreDep,
    box: SecretBoxDep,
) -> Response:
    rotated = await store.write(
        endpoints.rotate_secret(box=box, endpoint_id=endpoint_id, scope=session.scope)
    )
    return await _endpoint_page(
        request,
        session,
        store,
        endpoint_id,
        secret=rotated.secret,
        previous_valid_until=rotated.previous_valid_until,
    )


@router.post("/endpoints/{endpoint_id}/ping")
async def ping(
    endpoint_id: str, session: SessionDep, _form: FormDep, store: StoreDep, sender: SenderDep
) -> Response:
    sent = await endpoints.ping(
        store=store, sender=sender, endpoint_id=endpoint_id, scope=session.scope
    )
    return redirect(f"{PREFIX}/deliveries/{sent.delivery_id}", notice="pinged")


def _utc(text: str, field: str) -> datetime | None:
    """A `datetime-local` field's value (no zone: the form says UTC)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise Unprocessable(f"{field}: not a date and time ({text[:40]!r})") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.post("/endpoints/{endpoint_id}/recover")
async def recover(
    endpoint_id: str, session: SessionDep, form: FormDep, store: StoreDep
) -> Response:
    """Send the endpoint's deliveries created in [since, until) again: its failed ones, or
    those of the statuses ticked (cancelled, pending: due now rather than at their retry)."""
    try:
        window = RecoverIn.model_validate(
            {
                "since": _utc(form.text("since"), "since"),
                "until": _utc(form.text("until"), "until"),
                "statuses": form.all("statuses") or ["failed"],
            }
        )
    except ValidationError as exc:
        raise Unprocessable("; ".join(problems(exc))) from exc
    requeued = await store.write(
        log.recover(
            endpoint_id=endpoint_id,
            since=window.since,
            until=window.until,
            statuses=window.statuses,
            scope=session.scope,
        )
    )
    return redirect(_base(endpoint_id), notice="recovered", count=requeued)
