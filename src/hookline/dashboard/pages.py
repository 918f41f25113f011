"""How the dashboard answers: Jinja2 templates (autoescaped), the pages' headers, the forms they
post, and the pages a refusal or an error shows.

Every page is private (`Cache-Control: no-store`), may not be framed, and may load scripts,
styles and images from hookline alone (the Content-Security-Policy says so to the browser).
"""

import hashlib
import json
import mimetypes
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from hookline import __version__
from hookline.dashboard.session import (
    CSRF_FIELD,
    PREFIX,
    Session,
    SessionDep,
    SignInRequired,
    csrf_is_valid,
)
from hookline.errors import AppError
from hookline.store import StoreUnavailable

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_URL = f"{PREFIX}/static"
MAX_FORM_FIELDS = 200

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# -- static files ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asset:
    path: Path
    media_type: str
    version: str  # the start of its SHA-256: in its URL, so a new one is never a stale cached one


def _assets() -> dict[str, Asset]:
    found = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in (".css", ".js", ".svg", ".png"):
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if path.suffix == ".js":
                media_type = "text/javascript"
            version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            found[path.relative_to(STATIC).as_posix()] = Asset(path, media_type, version)
    return found


ASSETS = _assets()


def asset_url(name: str) -> str:
    return f"{STATIC_URL}/{name}?v={ASSETS[name].version}"


# -- templates ------------------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A time as the pages show it: UTC, to the second."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def link(path: str, **params: Any) -> str:
    """`path` with the query parameters that are not None."""
    given = {name: value for name, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(given)}" if given else path


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = when
_env.filters["pretty_json"] = pretty_json
_env.globals.update(
    asset_url=asset_url,
    link=link,
    prefix=PREFIX,
    csrf_field=CSRF_FIELD,
    version=__version__,
)

# What a redirect after a form may ask the next page to say (never text from the request).
NOTICES = {
    "signed-out": "Signed out.",
    "created": "Endpoint created.",
    "saved": "Saved.",
    "enabled": "Endpoint enabled.",
    "disabled": "Endpoint disabled: its pending deliveries were cancelled.",
    "pinged": "Ping sent: its attempt is below.",
    "retried": "The delivery is due again: a new attempt follows shortly.",
    "recovered": "Deliveries of that window due again now: {count}.",
    "type-created": "Event type created.",
}


def render(
    request: Request,
    template: str,
    *,
    session: Session | None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("notice") or "")
    if notice is not None and "{count}" in notice:
        count = request.query_params.get("count", "")
        notice = notice.format(count=int(count) if count.isdigit() and len(count) < 10 else "Some")
    body = _env.get_template(template).render(
        request_path=request.url.path,
        session=session,
        notice=notice,
        **context,
    )
    return HTMLResponse(
        body, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )


def redirect(path: str, **params: Any) -> RedirectResponse:
    """After a form: 303 to a page to read (Post/Redirect/Get)."""
    return RedirectResponse(link(path, **params), status_code=303)


# -- forms ----------------------------------------------------------------------------------


class Form:
    """A posted form's fields (application/x-www-form-urlencoded)."""

    def __init__(self, fields: Iterable[tuple[str, str]]) -> None:
        self._fields = list(fields)

    def get(self, name: str) -> str | None:
        return next((value for key, value in self._fields if key == name), None)

    def text(self, name: str) -> str:
        """The field's value stripped, '' when absent."""
        return (self.get(name) or "").strip()

    def all(self, name: str) -> list[str]:
        return [value for key, value in self._fields if key == name]

    def checked(self, name: str) -> bool:
        return self.get(name) is not None


class FormRefused(Exception):
    """A POST without this session's CSRF token, or that is not a form: 403, nothing done."""


async def read_form(request: Request) -> Form:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormRefused("not a form")
    body = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:
        raise FormRefused("too many fields") from exc
    return Form(fields)


async def _checked_form(request: Request, session: SessionDep) -> Form:
    form = await read_form(request)
    if not csrf_is_valid(session, form.get(CSRF_FIELD)):
        raise FormRefused("no valid CSRF token")
    return form


# A form of a signed-in session that carries its CSRF token; else 403 before the handler runs.
FormDep = Annotated[Form, Depends(_checked_form)]


def problems(error: AppError | ValidationError) -> list[str]:
    """What was wrong, as lines a person reads."""
    if isinstance(error, ValidationError):
        return [_problem(e) for e in error.errors(include_url=False)]
    if isinstance(error.detail, list):
        return [_problem(e) if isinstance(e, dict) else str(e) for e in error.detail]
    return [str(error.detail)]


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
    message = str(error.get("msg", ""))
    return f"{where}: {message}" if where else message


# -- the routes' wrapper --------------------------------------------------------------------


class PageRoute(APIRoute):
    """A dashboard route: a missing session is a redirect to the sign-in page, a refused form
    403, and an error of the services a page that says it (with its status), never JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return exc.response()
            except FormRefused:
                return _error(
                    request,
                    403,
                    [
                        "This form was refused: it did not carry this session's CSRF token."
                        " Reload the page and send it again."
                    ],
                )
            except AppError as exc:
                return _error(request, exc.status_code, problems(exc))
            except StoreUnavailable:
                return _error(
                    request,
                    503,
                    ["The database is unavailable; try again shortly."],
                    headers={"Retry-After": "1"},
                )

        return page


def _error(
    request: Request,
    status_code: int,
    lines: list[str],
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    session = getattr(request.state, "dashboard_session", None)
    back = "/".join(request.url.path.split("/")[:4]) if request.method == "POST" else None
    return render(
        request,
        "error.html",
        session=session,
        status_code=status_code,
        headers=headers,
        status=status_code,
        problems=lines,
        back=back,
    )
