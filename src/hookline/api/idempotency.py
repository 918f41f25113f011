"""The `Idempotency-Key` header: the same key and body within 24 hours replays the first answer.

`once()` wraps a route's unit of work: it first claims the key (an insert that, on PostgreSQL,
waits for a concurrent request holding the same key to commit), so that of many requests with
one key exactly one does the work and the others replay its answer, never a misleading error.
The answer is stored in the same transaction as the work, so it is stored if and only if the
work is. Error answers are never stored: they roll back.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from hookline.errors import Conflict
from hookline.models import utcnow
from hookline.store import units
from hookline.store.prune import IDEMPOTENCY_KEY_TTL
from hookline.store.sql import js, sql
from hookline.store.units import Unit

T = TypeVar("T")

TTL = IDEMPOTENCY_KEY_TTL
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

# Claim the key: a new row, or an expired one taken over. Nothing comes back when a live
# answer holds it (or, on PostgreSQL, a concurrent request has committed one meanwhile).
_CLAIM = sql(
    "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at)"
    " VALUES (:scope, :key, :request_hash, 0, :response, :created_at)"
    " ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash,"
    " status_code = 0, response = excluded.response, created_at = excluded.created_at"
    " WHERE idempotency_keys.created_at < :cutoff"
    " RETURNING key"
)
_STORED = sql(
    "SELECT request_hash, status_code, response FROM idempotency_keys"
    " WHERE scope = :scope AND key = :key"
)
_ANSWER = sql(
    "UPDATE idempotency_keys SET status_code = :status_code, response = :response"
    " WHERE scope = :scope AND key = :key"
)


class Replay(Exception):
    """The first answer to a key: raised out of the unit (which wrote nothing), and sent by the
    app's handler as it was, with `Idempotent-Replayed: true`."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body, status_code=self.status_code, headers={REPLAYED_HEADER: "true"}
        )


def request_hash(request: BaseModel) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# Puts back into a stored answer what was left out of it (secrets), before it is replayed.
Restore = Callable[[dict[str, Any]], Unit[dict[str, Any]]]


def once(
    *,
    scope: str,
    key: str | None,
    request: BaseModel,
    work: Unit[T],
    status_code: int,
    remember: Callable[[T], dict[str, Any]],
    restore: Restore | None = None,
) -> Unit[T]:
    """Run `work` unless this key already has an answer; store the answer with the work.

    `remember` gives what is stored of the result: never a secret or a token. A replay raises
    `Replay`. Without a key it is `work` itself (no generator around each of its statements).
    """
    if key is None:
        return work
    return _once(scope, key, request, work, status_code, remember, restore)


def _once(
    scope: str,
    key: str,
    request: BaseModel,
    work: Unit[T],
    status_code: int,
    remember: Callable[[T], dict[str, Any]],
    restore: Restore | None,
) -> Unit[T]:
    where = {"scope": scope, "key": key}
    hashed = request_hash(request)
    now = utcnow()
    claimed = yield units.value(
        _CLAIM,
        {**where, "request_hash": hashed, "response": {}, "created_at": now, "cutoff": now - TTL},
    )
    if claimed is None:
        work.close()
        stored = yield units.one(_STORED, where)
        if stored is None or stored[1] == 0:  # pragma: no cover - only mid-prune
            raise Conflict(f"A request with Idempotency-Key '{key}' is being processed; retry")
        if stored[0] != hashed:
            raise Conflict(
                f"Idempotency-Key '{key}' was already used with a different request body"
            )
        body = js(stored[2])
        if restore is not None:
            body = yield from restore(body)
        raise Replay(int(stored[1]), body)
    result = yield from work
    yield units.execute(
        _ANSWER, {**where, "status_code": status_code, "response": remember(result)}
    )
    return result
