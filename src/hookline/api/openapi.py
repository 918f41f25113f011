"""`/openapi.json` with its OpenAPI 3.1 `webhooks` section, and the interactive docs on it
(Swagger UI at /docs, ReDoc at /redoc), their assets served from the package under /static.

The paths are FastAPI's, built once; `webhooks` holds one entry per event type of the catalog:
the request a receiver gets, its envelope with the type's `data` schema, read from the
catalog at every request so that it follows the types as they change.
"""

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from hookline.api.deps import runtime_of
from hookline.events import types
from hookline.events.schemas import EventTypeOut

OPENAPI_URL = "/openapi.json"
_OAUTH2_REDIRECT = "/docs/oauth2-redirect"
# The docs' scripts, styles and icon, served from the package (static/README.md says whence):
# /docs and /redoc work with no internet access and load nothing from anyone else.
STATIC_URL = "/static"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_SWAGGER_UI = f"{STATIC_URL}/swagger_ui"
_REDOC = f"{STATIC_URL}/redoc"
_FAVICON = f"{_SWAGGER_UI}/favicon-32x32.png"
# Off, whatever the layout: the online validator's badge sends the schema's URL to its vendor.
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The event's id: the same on every retry of it; dedupe on it.",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds when this attempt was signed.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}`"
        " keyed with the endpoint's secret, per Standard Webhooks; during a rotation two,"
        " space-separated.",
        "schema": {"type": "string"},
    },
]


def webhook(event_type: EventTypeOut) -> dict[str, Any]:
    """The OpenAPI 3.1 path item of what a receiver gets for events of this type."""
    envelope = {
        "type": "object",
        "required": ["id", "event", "timestamp", "data"],
        "properties": {
            "id": {"type": "string", "description": "The event's id (`evt_…`)."},
            "event": {"const": event_type.name},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": types.standalone(event_type.schema_) or {"type": "object"},
        },
    }
    summary = f"`{event_type.name}`" + (" (archived)" if event_type.archived else "")
    return {
        "post": {
            "operationId": "webhook_" + "".join(c if c.isalnum() else "_" for c in event_type.name),
            "summary": summary,
            "description": event_type.description or f"An event of type `{event_type.name}`.",
            "tags": ["webhooks (what receivers get)"],
            "parameters": _HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": envelope}},
            },
            "responses": {
                "2XX": {"description": "Received; any other answer is retried on the schedule."}
            },
        }
    }


def install(app: FastAPI) -> None:
    """Serve the schema and the docs (the app is made with `openapi_url=None`)."""

    async def openapi(request: Request) -> JSONResponse:
        catalog = await runtime_of(request).store.read(types.list_types())
        document = {**app.openapi(), "webhooks": {t.name: webhook(t) for t in catalog}}
        return JSONResponse(document)

    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=_OAUTH2_REDIRECT,
            swagger_js_url=f"{_SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{_SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=_FAVICON,
            swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
        )

    async def swagger_ui_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(_request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{_REDOC}/redoc.standalone.js",
            redoc_favicon_url=_FAVICON,
            with_google_fonts=False,
        )

    app.add_route(OPENAPI_URL, openapi, include_in_schema=False)
    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(_OAUTH2_REDIRECT, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
