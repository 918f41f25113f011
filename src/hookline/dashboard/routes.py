"""The dashboard: web pages at /dashboard, served by hookline on the API's port.

Server-rendered; every page reads through the services the API uses, with the signed-in
caller's scope (the admin sees everything, a user its own endpoints and their deliveries).
Without a session every route but the sign-in page and the static files answers with a
redirect to the sign-in page. Forms post and redirect (Post/Redirect/Get), each with the
session's CSRF token.
"""

from datetime import timedelta
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from hookline.api.deps import StoreDep
from hookline.dashboard import endpoint_pages, log_pages, type_pages
from hookline.dashboard import session as sessions
from hookline.dashboard.pages import (
    ASSETS,
    FormDep,
    FormRefused,
    PageRoute,
    read_form,
    redirect,
    render,
)
from hookline.dashboard.queries import PerMinute, deliveries_per_minute, troubled_endpoints
from hookline.dashboard.session import PREFIX, SIGN_IN_PATH, SessionDep
from hookline.errors import NotFound
from hookline.store import counts

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=PageRoute)


@router.get("/static/{name:path}")
async def static(name: str) -> Response:
    """The dashboard's styles and scripts (public: the sign-in page needs them too)."""
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound("No such file")
    return FileResponse(
        asset.path,
        media_type=asset.media_type,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


# -- signing in and out ---------------------------------------------------------------------


def _next_page(given: str | None) -> str:
    """Where to go after signing in: a dashboard page, never another site."""
    target = unquote(given or "")
    if target == PREFIX or (
        target.startswith(f"{PREFIX}/") and "//" not in target and "\\" not in target
    ):
        return target
    return PREFIX


def _sign_in_page(
    request: Request, *, next_page: str, status_code: int = 200, problem: str | None = None
) -> Response:
    token, cookie = sessions.sign_in_token(request)
    response = render(
        request,
        "sign_in.html",
        session=None,
        status_code=status_code,
        next_page=next_page,
        problem=problem,
        sign_in_csrf=token,
    )
    if cookie is not None:
        response.headers.append("Set-Cookie", cookie)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    next_page = _next_page(request.query_params.get("next"))
    if await sessions.current(request) is not None:
        return RedirectResponse(next_page, status_code=303)
    return _sign_in_page(request, next_page=next_page)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    if not sessions.sign_in_form_is_genuine(request, form.get("csrf_token")):
        raise FormRefused("the sign-in form's token is missing or stale")
    next_page = _next_page(form.get("next"))
    response = RedirectResponse(next_page, status_code=303)
    if await sessions.sign_in(request, response, form.get("token") or "") is None:
        # 401: the rate limit counts it as a failed attempt of this address.
        return _sign_in_page(
            request,
            next_page=next_page,
            status_code=401,
            problem="That is not the admin's token nor a user's.",
        )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, _session: SessionDep, _form: FormDep) -> Response:
    response = redirect(SIGN_IN_PATH, notice="signed-out")
    sessions.sign_out(request, response)
    return response


# -- the overview ---------------------------------------------------------------------------


@router.get("")
async def overview(request: Request, session: SessionDep, store: StoreDep) -> Response:
    """Queue health (the admin's: the queue is everyone's), the last 24 hours' deliveries per
    minute by outcome, the endpoints in trouble. `?part=queue` (htmx's refresh of the queue's
    tiles) reads the queue alone."""
    queue = await store.read(counts.queue_health()) if session.is_admin else None
    oldest_due_age = None
    if queue is not None and queue.oldest_due_at is not None:
        oldest_due_age = max(timedelta(0), queue.now - queue.oldest_due_at)
    queue_only = request.query_params.get("part") == "queue"
    per_minute = (
        None if queue_only else await store.read(deliveries_per_minute(scope=session.scope))
    )
    troubled = [] if queue_only else await store.read(troubled_endpoints(scope=session.scope))
    return render(
        request,
        "overview.html",
        session=session,
        queue=queue,
        oldest_due_age=oldest_due_age,
        per_minute=per_minute,
        chart=None if per_minute is None else _chart_data(per_minute),
        troubled=troubled,
    )


def _chart_data(per_minute: PerMinute) -> dict[str, Any]:
    """What static/dashboard.js draws (a JSON script element: no inline script runs)."""
    return {
        "labels": [minute.strftime("%H:%M") for minute in per_minute.minutes],
        # In the order drawn (the first at the bottom of each bar): a list keeps it.
        "series": [
            {"status": status, "counts": counts} for status, counts in per_minute.counts.items()
        ],
    }


router.include_router(endpoint_pages.router)
router.include_router(log_pages.router)
router.include_router(type_pages.router)


# Last: any other dashboard path is the sign-in page without a session, a 404 page with one.
@router.get("/{rest:path}")
async def not_found(request: Request, session: SessionDep, rest: str) -> Response:
    raise NotFound("No such page")
