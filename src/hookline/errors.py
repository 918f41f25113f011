"""Errors that carry their HTTP status, turned into `{"detail": ...}` by one handler.

AppError (500)
 ├── Unauthorized (401, with WWW-Authenticate: Bearer)
 ├── Forbidden (403)
 ├── NotFound (404)
 ├── Conflict (409)
 └── Unprocessable (422)
"""

from collections.abc import Mapping
from typing import Any, ClassVar

# A sentence, or (for 422s that name fields) FastAPI's list of {"type", "loc", "msg"}.
Detail = str | list[dict[str, Any]]


class AppError(Exception):
    status_code = 500
    headers: ClassVar[Mapping[str, str] | None] = None

    def __init__(self, detail: Detail) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(AppError):
    status_code = 401
    headers: ClassVar[Mapping[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Unprocessable(AppError):
    status_code = 422
