"""The dashboard's event-type pages: the catalog, a type with its schema, and
(for the admin, as `POST /event-types`) a new type. Through events/types.py."""

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from hookline.api.deps import StoreDep
from hookline.dashboard.pages import FormDep, PageRoute, problems, redirect, render
from hookline.dashboard.session import PREFIX, Session, SessionDep
from hookline.errors import AppError, Forbidden, Unprocessable
from hookline.events import types
from hookline.events.schemas import EventTypeCreate
from hookline.store import Store

router = APIRouter(route_class=PageRoute)

NEW_TYPE = {"name": "", "description": "", "schema": ""}


async def _catalog(
    request: Request,
    session: Session,
    store: Store,
    *,
    values: dict[str, Any] | None = None,
    create_problems: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "event_types.html",
        session=session,
        status_code=status_code,
        types=await store.read(types.list_types()),
        values=values or NEW_TYPE,
        create_problems=create_problems or [],
    )


@router.get("/event-types")
async def catalog(request: Request, session: SessionDep, store: StoreDep) -> Response:
    return await _catalog(request, session, store)


def _schema(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Unprocessable(f"schema: not JSON ({exc})") from exc


@router.post("/event-types")
async def create_type(
    request: Request, session: SessionDep, form: FormDep, store: StoreDep
) -> Response:
    if not session.is_admin:  # as POST /event-types
        raise Forbidden("Only the admin defines event types")
    values = {
        "name": form.text("name"),
        "description": form.text("description"),
        "schema": form.text("schema"),
    }
    try:
        body = EventTypeCreate.model_validate(
            {
                "name": values["name"],
                "description": values["description"] or None,
                "schema": _schema(values["schema"]),
            }
        )
        created = await store.write(types.create(body))
    except (AppError, ValidationError) as exc:
        return await _catalog(
            request,
            session,
            store,
            values=values,
            create_problems=problems(exc),
            status_code=exc.status_code if isinstance(exc, AppError) else 422,
        )
    return redirect(f"{PREFIX}/event-types/{created.name}", notice="type-created")


@router.get("/event-types/{name}")
async def event_type(request: Request, name: str, session: SessionDep, store: StoreDep) -> Response:
    found = await store.read(types.get(name))
    return render(request, "event_type.html", session=session, type=found)
