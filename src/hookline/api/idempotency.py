"""The `Idempotency-Key` header: the same key and body within 24 hours replays the first answer.

A route calls `replay()` before its work and `remember()` after it, in the same transaction, so
the answer is stored if and only if the work is. Error answers are never stored: they roll back.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import CursorResult, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hookline.errors import Conflict
from hookline.models import IdempotencyKey, utcnow

TTL = timedelta(hours=24)
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description=(
            "Send the same key with the same body within 24 hours to get the first answer back"
            " (with `Idempotent-Replayed: true`) and change nothing; the same key with another"
            " body is 409."
        ),
    ),
]

# Puts back into a stored answer what was left out of it (secrets), before it is replayed.
Restore = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def request_hash(request: BaseModel) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def replay(
    *,
    session: AsyncSession,
    scope: str,
    key: str | None,
    request: BaseModel,
    restore: Restore | None = None,
) -> JSONResponse | None:
    """The first answer to this key and body, or None when the route should do the work."""
    if key is None:
        return None
    where = (IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    stored = (
        await session.execute(
            select(
                IdempotencyKey.request_hash,
                IdempotencyKey.status_code,
                IdempotencyKey.response,
                IdempotencyKey.created_at,
            ).where(*where)
        )
    ).one_or_none()
    if stored is None:
        return None
    cutoff = utcnow() - TTL
    if stored.created_at < cutoff:  # expired: free the key for this request to use
        await session.execute(
            delete(IdempotencyKey).where(*where, IdempotencyKey.created_at < cutoff)
        )
        return None
    if stored.request_hash != request_hash(request):
        raise Conflict(f"Idempotency-Key '{key}' was already used with a different request body")
    body = stored.response if restore is None else await restore(stored.response)
    return JSONResponse(body, status_code=stored.status_code, headers={REPLAYED_HEADER: "true"})


async def remember(
    *,
    session: AsyncSession,
    scope: str,
    key: str | None,
    request: BaseModel,
    status_code: int,
    response: dict[str, Any],
) -> None:
    """Store the answer in the route's transaction; `response` must hold no secret or token."""
    if key is None:
        return
    row = {
        "scope": scope,
        "key": key,
        "request_hash": request_hash(request),
        "status_code": status_code,
        "response": response,
        "created_at": utcnow(),
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(IdempotencyKey), row)
    except IntegrityError as exc:  # a concurrent request with this key stored its answer first
        raise Conflict(
            f"A request with Idempotency-Key '{key}' is already being processed"
        ) from exc


async def prune(db: AsyncConnection | AsyncSession, *, before: datetime) -> int:
    """Delete the keys created before `before`; return how many were deleted."""
    result = await db.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return cast(CursorResult[Any], result).rowcount
