"""/docs and /redoc load their scripts, styles and icon from hookline itself, never from a CDN,
so they work with no internet access (tests/browser renders them with everything else blocked).
"""

from html.parser import HTMLParser

import pytest


class _References(HTMLParser):
    """Every URL a page makes the browser load or link to: src, href, spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in ("src", "href", "spec-url") and value
        ]


@pytest.mark.parametrize(
    ("page", "content_types"),
    [
        ("/docs", {"text/css", "image/png", "text/javascript"}),
        ("/redoc", {"image/png", "text/javascript"}),
    ],
)
async def test_the_docs_load_everything_from_hookline(api, page, content_types):
    html = await api.client.get(page)
    references = _References()
    references.feed(html.text)

    assert html.status_code == 200
    assert "http://" not in html.text and "https://" not in html.text
    assert references.urls, "no script or style at all"
    served = set()
    for url in references.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        response = await api.client.get(url)
        assert response.status_code == 200, url
        served.add(response.headers["content-type"].split(";")[0])
    assert content_types <= served


async def test_the_static_files_are_only_the_packaged_ones(api):
    assert (await api.client.get("/static/redoc/LICENSE")).status_code == 200
    assert (await api.client.get("/static/../openapi.py")).status_code == 404
    assert (await api.client.get("/static/%2e%2e/openapi.py")).status_code == 404
    assert (await api.client.get("/static/")).status_code == 404
