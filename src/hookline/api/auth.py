"""Bearer tokens: who is calling, and what they may do.

Tokens are random (32 bytes), prefixed `hl_admin_` or `hl_user_`, and stored only as SHA-256
hashes: a user's in `users.token_hash`, a generated admin token's in `admin_tokens`. A hash
lookup leaks nothing an attacker could use to guess a token, and the admin hash is compared
in constant time.
"""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from hookline import admin_token
from hookline.api.deps import runtime_of
from hookline.api.limits import AUTHENTICATED
from hookline.errors import Forbidden, Unauthorized
from hookline.store import units
from hookline.store.sql import sql
from hookline.store.units import Unit
from hookline.tokens import USER_PREFIX, token_hash


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: the admin, or a user."""

    username: str | None = None  # None for the admin
    user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.username is None

    @property
    def scope(self) -> str | None:
        """Whose endpoints the caller sees: its own (a user's id), or everyone's (None)."""
        return self.user_id

    def may_act_as(self, username: str) -> bool:
        return self.is_admin or self.username == username.strip().lower()


_BEARER_DESCRIPTION = "The admin token, or a user's token from `POST /users`."
_bearer = HTTPBearer(auto_error=False, description=_BEARER_DESCRIPTION)


MISSING = "Missing bearer token: send 'Authorization: Bearer <token>'"

_USER_BY_TOKEN = sql("SELECT id, username FROM users WHERE token_hash = :token_hash")


def _lookup(token_hash: str) -> Unit[Caller | None]:
    found = yield units.one(_USER_BY_TOKEN, {"token_hash": token_hash})
    return None if found is None else Caller(username=found[1], user_id=found[0])


async def _identify(request: Request, token: str) -> Caller | None:
    """The caller a token stands for, or None for an unknown one."""
    return await identify_hash(request, token_hash(token), user_token=token.startswith(USER_PREFIX))


async def identify_hash(request: Request, hashed: str, *, user_token: bool) -> Caller | None:
    """The caller a token's hash stands for, or None (the dashboard's sessions keep the hash,
    never the token); `user_token`: the token had the user prefix (else no lookup is made)."""
    runtime = runtime_of(request)
    admin_hash = runtime.admin_token_hash
    if admin_hash is None:  # not known at start (unmigrated database): look again
        admin_hash = runtime.admin_token_hash = await runtime.store.read(admin_token.stored_hash())
    if admin_hash is not None and hmac.compare_digest(hashed, admin_hash):
        return Caller()
    if user_token:
        # One indexed read per request (the unique index on token_hash).
        return await runtime.store.lookup(lambda: _lookup(hashed))
    return None


class _BearerCaller(HTTPBearer):
    """The caller, from the bearer token: the `HTTPBearer` scheme of the OpenAPI document (the
    same name and description as the plain one) and the lookup in one dependency, since FastAPI
    spends more on solving each dependency of a request than these do."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise Unauthorized(MISSING)
        caller = await _identify(request, credentials.credentials)
        if caller is None:
            raise Unauthorized("Invalid bearer token")
        # The rate limit counts this token as its own caller from now on (an unknown token
        # counts against its client address).
        request.scope[AUTHENTICATED] = hashlib.sha256(
            credentials.credentials.encode("latin-1")
        ).hexdigest()
        return caller


_caller = _BearerCaller(auto_error=False, description=_BEARER_DESCRIPTION, scheme_name="HTTPBearer")


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
