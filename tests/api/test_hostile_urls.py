"""Webhook URLs built to break the URL check: each is a 422 saying why, never a 500."""

import pytest

from tests.support.app import running_app


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost..:17080/",
        "http://127.0.0.1\\x:17080/",
        "http://xn--localhost-:17080/",
        "http://a..b/",
    ],
)
async def test_a_host_the_client_cannot_encode_is_422(api, url) -> None:
    response = await api.client.post("/webhook", json={"event": "user_registered", "url": url})

    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"Invalid webhook URL '{url}'")


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        ("http://[::ffff:0:169.254.169.254]/", "169.254.169.254"),
        ("http://[::ffff:0:a00:1]/", "10.0.0.1"),
    ],
)
async def test_an_ipv4_translated_address_is_judged_by_the_ipv4_inside(
    make_settings, url, inside
) -> None:
    async with running_app(make_settings(allow_private_networks=False)) as guarded:
        response = await guarded.client.post(
            "/webhook", json={"event": "user_registered", "url": url}
        )

    assert response.status_code == 422, response.text
    assert f"({inside})" in response.json()["detail"]
