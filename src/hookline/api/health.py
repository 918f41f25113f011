"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hookline import migrate
from hookline.api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready"}})
async def ready(store: StoreDep) -> JSONResponse:
    """The database answers and its schema is current."""
    try:
        current = await migrate.is_current(store)
    except Exception:
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    if not current:
        return JSONResponse({"status": "migrations pending"}, status_code=503)
    return JSONResponse({"status": "ready"})
