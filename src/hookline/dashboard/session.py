"""The dashboard's sessions: a signed cookie that names a caller, and CSRF tokens.

Signing in with a token (the admin's, or a user's) sets `hookline_session`: HttpOnly,
SameSite=Strict, Secure when the request came over HTTPS, valid 12 hours. It holds the token's
SHA-256 hash (what the database keeps of it, never the token), whether it was a user's token,
and the session's CSRF token; it is signed (itsdangerous, HMAC-SHA256) with a key derived from
the secret key (HOOKLINE_SECRET_KEY or `<data dir>/secret-key`) by HKDF, so every process that
opens the stored secrets checks the same sessions, and changing keys ("<new>,<old>") keeps
them valid.

Every request looks its caller up again, as bearer tokens are (api/auth.py): a user whose token
was replaced is signed out at its next click. Every form that changes something carries the
CSRF token in a hidden field; a POST whose field does not match the session's is refused with
403 before anything is read or written. The sign-in form has one of its own, from a short-lived
cookie (`hookline_sign_in`), so that no other site can sign a browser in.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from hookline.api.auth import Caller, identify_hash
from hookline.api.deps import runtime_of
from hookline.api.limits import AUTHENTICATED
from hookline.secretbox import SecretBox
from hookline.tokens import USER_PREFIX, token_hash

PREFIX = "/dashboard"
SIGN_IN_PATH = f"{PREFIX}/sign-in"
COOKIE = "hookline_session"
SIGN_IN_COOKIE = "hookline_sign_in"
MAX_AGE = 12 * 60 * 60  # seconds: a session lasts 12 hours from its sign-in
SIGN_IN_MAX_AGE = 60 * 60  # the sign-in form's own token
CSRF_FIELD = "csrf_token"
_PURPOSE = b"hookline dashboard session v1"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: who it is, and the token its forms must carry."""

    caller: Caller
    csrf: str
    token_hash: str

    @property
    def scope(self) -> str | None:
        return self.caller.scope

    @property
    def is_admin(self) -> bool:
        return self.caller.is_admin

    @property
    def who(self) -> str:
        return "admin" if self.caller.username is None else self.caller.username


class SignInRequired(Exception):
    """Raised without a valid session: answered with a 303 to the sign-in page (HX-Redirect
    for htmx), the cookie cleared; a page read asks to come back to it after signing in."""

    def __init__(self, request: Request) -> None:
        super().__init__("Sign in first")
        self.location = SIGN_IN_PATH
        target = request.url.path
        if request.method == "GET" and (target == PREFIX or target.startswith(f"{PREFIX}/")):
            if request.url.query:
                target += f"?{request.url.query}"
            self.location += f"?next={quote(target, safe='')}"
        self.secure = _over_https(request)

    def response(self) -> Response:
        response = Response(status_code=303)
        response.headers["Location"] = self.location
        response.headers["HX-Redirect"] = self.location
        response.headers["Cache-Control"] = "no-store"
        response.headers.append("Set-Cookie", _expired(COOKIE, secure=self.secure))
        return response


@lru_cache(maxsize=8)
def _serializer(box: SecretBox, salt: str) -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and verifies with any: the box's first is the newest.
    keys = list(reversed(box.derived_keys(_PURPOSE)))
    return URLSafeTimedSerializer(keys, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})


def _signer(request: Request, salt: str) -> URLSafeTimedSerializer:
    return _serializer(runtime_of(request).box, salt)


def _over_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _cookie(name: str, value: str, *, max_age: int, secure: bool) -> str:
    parts = [f"{name}={value}", f"Path={PREFIX}", f"Max-Age={max_age}", "HttpOnly"]
    parts.append("SameSite=Strict")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _expired(name: str, *, secure: bool) -> str:
    return _cookie(name, "", max_age=0, secure=secure)


def _read(request: Request, name: str, salt: str, max_age: int) -> dict[str, Any] | None:
    raw = request.cookies.get(name)
    if not raw or len(raw) > 1024:
        return None
    try:
        found = _signer(request, salt).loads(raw, max_age=max_age)
    except BadSignature:  # tampered, or signed with another key, or expired
        return None
    return found if isinstance(found, dict) else None


async def current(request: Request) -> Session | None:
    """The request's session, its caller looked up again; None without a valid one."""
    found = _read(request, COOKIE, "session", MAX_AGE)
    if found is None:
        return None
    hashed, user_token, csrf = found.get("h"), found.get("u"), found.get("c")
    if not (isinstance(hashed, str) and isinstance(user_token, bool) and isinstance(csrf, str)):
        return None
    caller = await identify_hash(request, hashed, user_token=user_token)
    if caller is None:  # the token was replaced, or the user is gone
        return None
    # The rate limit counts this browser against its token, as it counts the token's requests.
    request.scope[AUTHENTICATED] = hashed
    return Session(caller=caller, csrf=csrf, token_hash=hashed)


async def _required(request: Request) -> Session:
    found = await current(request)
    if found is None:
        raise SignInRequired(request)
    request.state.dashboard_session = found  # for the error pages' header
    return found


SessionDep = Annotated[Session, Depends(_required)]


async def sign_in(request: Request, response: Response, token: str) -> Caller | None:
    """Set the session cookie on `response` if `token` is the admin's or a user's."""
    token = token.strip()
    if not token or len(token) > 256:
        return None
    hashed = token_hash(token)
    user_token = token.startswith(USER_PREFIX)
    caller = await identify_hash(request, hashed, user_token=user_token)
    if caller is None:
        return None
    value = _signer(request, "session").dumps(
        {"h": hashed, "u": user_token, "c": secrets.token_urlsafe(32)}
    )
    secure = _over_https(request)
    response.headers.append("Set-Cookie", _cookie(COOKIE, value, max_age=MAX_AGE, secure=secure))
    response.headers.append("Set-Cookie", _expired(SIGN_IN_COOKIE, secure=secure))
    return caller


def sign_out(request: Request, response: Response) -> None:
    response.headers.append("Set-Cookie", _expired(COOKIE, secure=_over_https(request)))


def sign_in_token(request: Request) -> tuple[str, str | None]:
    """The sign-in form's CSRF token: its cookie's, or a new one with the Set-Cookie value
    that keeps it."""
    found = _read(request, SIGN_IN_COOKIE, "sign-in", SIGN_IN_MAX_AGE)
    if found is not None and isinstance(found.get("c"), str):
        return str(found["c"]), None
    token = secrets.token_urlsafe(32)
    value = _signer(request, "sign-in").dumps({"c": token})
    cookie = _cookie(SIGN_IN_COOKIE, value, max_age=SIGN_IN_MAX_AGE, secure=_over_https(request))
    return token, cookie


def sign_in_form_is_genuine(request: Request, given: str | None) -> bool:
    found = _read(request, SIGN_IN_COOKIE, "sign-in", SIGN_IN_MAX_AGE)
    expected = None if found is None else found.get("c")
    return isinstance(expected, str) and _same(given, expected)


def csrf_is_valid(session: Session, given: str | None) -> bool:
    return _same(given, session.csrf)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
