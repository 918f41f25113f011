"""Keyset pagination for the original list routes: `limit` and `after`, a `Link` header."""

from typing import Annotated

from fastapi import Query, Request, Response

Limit = Annotated[int, Query(ge=1, le=1000, description="How many items, at most.")]
After = Annotated[
    str | None,
    Query(max_length=64, description="The id of the last item of the previous page."),
]


def set_next_link(request: Request, response: Response, last_id: str) -> None:
    """Point the client at the page after `last_id` (RFC 8288 `Link: <…>; rel="next"`)."""
    url = request.url.include_query_params(after=last_id)
    response.headers["Link"] = f'<{url}>; rel="next"'
