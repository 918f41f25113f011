"""Keyset pagination: the original list routes' `limit`/`after` with a `Link` header, and the
newer routes' `limit`/`cursor` with `{"data", "next_cursor"}`."""

from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=1000, description="How many items, at most.")]
After = Annotated[
    str | None,
    Query(max_length=64, description="The id of the last item of the previous page."),
]


def set_next_link(request: Request, response: Response, last_id: str) -> None:
    """Point the client at the page after `last_id` (RFC 8288 `Link: <…>; rel="next"`).

    Relative (a path and query): built from the request's Host header, an absolute link would
    send clients wherever a forged Host says."""
    url = request.url.include_query_params(after=last_id)
    target = url.path + (f"?{url.query}" if url.query else "")
    response.headers["Link"] = f'<{target}>; rel="next"'


# The newer list routes: newest first, `{"data": [...], "next_cursor": ...}`.
PageLimit = Annotated[int, Query(ge=1, le=250, description="How many items, at most.")]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="`next_cursor` of the previous page."),
]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def page(items: list[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """A page from up to `limit + 1` items fetched: the extra one tells that there is more."""
    if len(items) > limit:
        items = items[:limit]
        return Page(data=items, next_cursor=cursor_of(items[-1]))
    return Page(data=items, next_cursor=None)
