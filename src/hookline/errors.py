"""Errors that carry their HTTP status, turned into `{"detail": ...}` by one handler.

AppError (500)
 ├── Forbidden (403)
 ├── NotFound (404)
 ├── Conflict (409)
 └── Unprocessable (422)
"""


class AppError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Unprocessable(AppError):
    status_code = 422
