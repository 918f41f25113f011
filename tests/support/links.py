"""Read the `Link: <…>; rel="next"` header of the original list routes."""

import re

import httpx

LINK_NEXT = re.compile(r'^<(?P<url>[^>]+)>;\s*rel="next"$')


def next_link(response: httpx.Response) -> str | None:
    """The URL of the page after this one, or None on the last page."""
    header = response.headers.get("link")
    if header is None:
        return None
    match = LINK_NEXT.match(header)
    assert match, f"not an RFC 8288 next link: {header!r}"
    return match["url"]
