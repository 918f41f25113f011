"""Error answers every route may give, documented once for the OpenAPI schema."""

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """`{"detail": "..."}`, or FastAPI's list of field errors for a 422."""

    detail: str | list[dict[str, Any]]


Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# What any route may answer, whoever calls it.
COMMON: Responses = {
    400: _error("The body is not JSON, or the path or query holds a NUL"),
    413: _error("The body is larger than 1 MiB"),
    422: _error("Invalid input: a reason, or a list of field errors"),
    429: _error("Too many requests from this caller; see Retry-After"),
    503: _error("The database is unavailable; nothing was done, try again (see Retry-After)"),
}
# What routes that take a bearer token may answer besides.
AUTH: Responses = {
    401: _error("No bearer token, or an unknown one (WWW-Authenticate: Bearer)"),
    403: _error("The token may not do this"),
}
