"""Liveness and readiness."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from hookline import migrate

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready"}})
async def ready(request: Request) -> JSONResponse:
    """The database answers and its schema is current."""
    engine = request.app.state.engine
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await migrate.is_current(engine)
    except Exception:
        return JSONResponse({"status": "database unreachable"}, status_code=503)
    if not current:
        return JSONResponse({"status": "migrations pending"}, status_code=503)
    return JSONResponse({"status": "ready"})
