"""Bearer tokens (CONTRACT §3): who is calling, and what they may do.

Tokens are random (32 bytes), prefixed `hl_admin_` or `hl_user_`, and stored only as SHA-256
hashes: a user's in `users.token_hash`, a generated admin token's in `admin_tokens`. A hash
lookup leaks nothing an attacker could use to guess a token, and the admin hash is compared
in constant time.
"""

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hookline.api.deps import runtime_of
from hookline.config import Settings
from hookline.errors import Forbidden, Unauthorized
from hookline.models import utcnow
from hookline.store import Store, units
from hookline.store.sql import Statement, sql
from hookline.store.units import Unit
from hookline.tokens import ADMIN_PREFIX, USER_PREFIX, new_token, token_hash

ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: the admin, or a user."""

    username: str | None = None  # None for the admin

    @property
    def is_admin(self) -> bool:
        return self.username is None

    def may_act_as(self, username: str) -> bool:
        return self.is_admin or self.username == username.strip().lower()


_bearer = HTTPBearer(
    auto_error=False,
    description="The admin token, or a user's token from `POST /users`.",
)


MISSING = "Missing bearer token: send 'Authorization: Bearer <token>'"

_USER_BY_TOKEN = sql("SELECT username FROM users WHERE token_hash = :token_hash")
_ADMIN_HASH = sql("SELECT token_hash FROM admin_tokens WHERE id = 1")
_ADD_ADMIN_HASH = sql(
    "INSERT INTO admin_tokens (id, token_hash, created_at) VALUES (1, :token_hash, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING token_hash"
)


def _lookup(statement: Statement, params: dict[str, str] | None = None) -> Unit[str | None]:
    found = yield units.value(statement, params)
    return None if found is None else str(found)


async def _identify(request: Request, token: str) -> Caller | None:
    """The caller a token stands for, or None for an unknown one."""
    runtime = runtime_of(request)
    hashed = token_hash(token)
    admin_hash = runtime.admin_token_hash
    if admin_hash is None:  # not known at start (unmigrated database): look again
        admin_hash = runtime.admin_token_hash = await runtime.store.read(_lookup(_ADMIN_HASH))
    if admin_hash is not None and hmac.compare_digest(hashed, admin_hash):
        return Caller()
    if token.startswith(USER_PREFIX):
        # One indexed read per request (the unique index on token_hash).
        username = await runtime.store.read(_lookup(_USER_BY_TOKEN, {"token_hash": hashed}))
        if username is not None:
            return Caller(username=username)
    return None


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise Unauthorized(MISSING)
    caller = await _identify(request, credentials.credentials)
    if caller is None:
        raise Unauthorized("Invalid bearer token")
    return caller


async def refuse_anonymous(request: Request) -> Unauthorized | None:
    """For a request refused before its dependencies ran (a body that is not JSON): the 401
    it should get instead when its route takes a token and it has no valid one, else None."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not _takes_token(route.dependant):
        return None
    credentials = await _bearer(request)
    if credentials is None:
        return Unauthorized(MISSING)
    caller = await _identify(request, credentials.credentials)
    return Unauthorized("Invalid bearer token") if caller is None else None


def _takes_token(dependant: Dependant) -> bool:
    return dependant.call is _caller or any(_takes_token(d) for d in dependant.dependencies)


async def _admin(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("This needs the admin token")
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[Caller, Depends(_admin)]
# For routers whose every route is the admin's: `APIRouter(dependencies=[ADMIN_ONLY])`.
ADMIN_ONLY = Depends(_admin)


def require_self(caller: Caller, username: str, what: str) -> None:
    """Forbidden unless the caller is the admin or the user named."""
    if not caller.may_act_as(username):
        raise Forbidden(f"A user may only {what}")


async def admin_token_hash(
    store: Store, settings: Settings, *, migrated: bool
) -> tuple[str | None, str | None]:
    """The admin token's hash, and the token itself when it was generated just now.

    A configured HOOKLINE_ADMIN_TOKEN wins. Otherwise the first process to start generates
    one, stores its hash, and writes the token to `<data dir>/admin-token` (mode 0600).
    The hash is None while the database is not migrated.
    """
    if settings.admin_token is not None:
        return token_hash(settings.admin_token.get_secret_value()), None
    if not migrated:
        return None, None
    stored = await store.read(_lookup(_ADMIN_HASH))
    if stored is not None:
        return stored, None
    token = new_token(ADMIN_PREFIX)
    added = await store.write(_add_admin_hash(token_hash(token)))
    if added is None:  # another process generated it first
        return await store.read(_lookup(_ADMIN_HASH)), None
    write_admin_token(settings.data_dir, token)
    return added, token


def _add_admin_hash(hashed: str) -> Unit[str | None]:
    found = yield units.value(_ADD_ADMIN_HASH, {"token_hash": hashed, "created_at": utcnow()})
    return None if found is None else str(found)


def write_admin_token(data_dir: Path, token: str) -> Path:
    """Write the token to `<data dir>/admin-token`, readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ADMIN_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that was already there
    return path
