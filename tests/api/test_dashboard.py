"""The dashboard's rules (CONTRACT §11) through the app itself, on both databases: sessions,
CSRF tokens, and who sees what. The browser tests (tests/browser/test_dashboard.py) walk the
pages; these check each rule where it is decided."""

import base64
import html
import re
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import itsdangerous.timed
import pytest
from fastapi import FastAPI

from tests.support.app import RunningApp, running_app

CLOSED = "http://127.0.0.1:9"  # nothing listens there


@asynccontextmanager
async def browser(app: FastAPI, base_url: str = "http://testserver") -> AsyncIterator[Any]:
    """A client without a token that keeps cookies, as a browser does."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as c:
        yield c


def hidden(page: str, name: str = "csrf_token") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field in the page:\n{page[:2000]}"
    return html.unescape(found.group(1))


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/dashboard/sign-in")
    assert form.status_code == 200, form.text
    return await client.post(
        "/dashboard/sign-in",
        data={"csrf_token": hidden(form.text), "token": token, "next": "/dashboard"},
    )


async def csrf_of(client: httpx.AsyncClient, path: str = "/dashboard") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return hidden(page.text)


def admin_token(api: RunningApp) -> str:
    assert api.settings.admin_token is not None
    return api.settings.admin_token.get_secret_value()


@dataclass
class Users:
    alice: str
    bob: str


async def register(api: RunningApp, username: str) -> str:
    response = await api.client.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture
async def users(api: RunningApp) -> Users:
    return Users(alice=await register(api, "alice"), bob=await register(api, "bob"))


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            parts = [p.strip() for p in header.split(";")]
            found = {"value": parts[0].partition("=")[2]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                found[key.lower()] = value
            return found
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


# -- no session -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/dashboard", "/dashboard/endpoints", "/dashboard/events/evt_x", "/dashboard/nope"]
)
async def test_a_page_without_a_session_is_a_redirect_to_the_sign_in_page(api, path):
    async with browser(api.app) as client:
        response = await client.get(path)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/sign-in?next=")
    assert response.text == ""


async def test_a_bearer_token_opens_no_page(api):
    response = await api.client.get("/dashboard")  # the admin's Authorization header

    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/sign-in")


async def test_the_sign_in_page_and_the_static_files_need_no_session(api):
    async with browser(api.app) as client:
        page = await client.get("/dashboard/sign-in")
        css = await client.get("/dashboard/static/dashboard.css")
        missing = await client.get("/dashboard/static/nope.js")

    assert page.status_code == 200 and "<form" in page.text
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404


# -- signing in -----------------------------------------------------------------------------


async def test_signing_in_sets_a_strict_http_only_cookie_for_12_hours(api):
    async with browser(api.app) as client:
        response = await sign_in(client, admin_token(api))
        page = await client.get("/dashboard")

    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = cookie_attributes(response, "hookline_session")
    assert cookie["max-age"] == str(12 * 3600)
    assert cookie["path"] == "/dashboard"
    assert "httponly" in cookie and cookie["samesite"] == "Strict"
    assert "secure" not in cookie  # plain HTTP here
    assert page.status_code == 200 and "Queue health" in page.text


async def test_over_https_the_cookie_is_secure(api):
    async with browser(api.app, "https://testserver") as client:
        response = await sign_in(client, admin_token(api))

    assert "secure" in cookie_attributes(response, "hookline_session")


async def test_the_cookie_holds_the_tokens_hash_never_the_token(api, users):
    for token in (admin_token(api), users.alice):
        async with browser(api.app) as client:
            response = await sign_in(client, token)
            value = cookie_attributes(response, "hookline_session")["value"]
            page = await client.get("/dashboard")

        payload = value.split(".")[0]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        assert token not in decoded and token not in value
        assert token not in page.text


async def test_a_user_signs_in_with_its_token(api, users):
    async with browser(api.app) as client:
        await sign_in(client, users.alice)
        page = await client.get("/dashboard")

    assert page.status_code == 200
    assert 'data-testid="who">alice<' in page.text
    assert "Queue health" not in page.text  # the queue is everyone's: the admin's to see


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("hl_admin_wrong", id="an unknown admin token"),
        pytest.param("hl_user_wrong", id="an unknown user token"),
        pytest.param("", id="none"),
        pytest.param("x" * 5000, id="a very long one"),
    ],
)
async def test_a_wrong_token_is_refused_and_not_shown_again(api, token):
    async with browser(api.app) as client:
        response = await sign_in(client, token)

    assert response.status_code == 401
    assert "hookline_session=" not in str(response.headers.get_list("set-cookie"))
    assert not token or token not in response.text


async def test_a_hash_of_a_token_is_no_token(api, users):
    import hashlib

    async with browser(api.app) as client:
        response = await sign_in(client, hashlib.sha256(users.alice.encode()).hexdigest())

    assert response.status_code == 401


async def test_signing_in_needs_the_sign_in_forms_own_token(api):
    async with browser(api.app) as client:
        await client.get("/dashboard/sign-in")
        forged = await client.post(
            "/dashboard/sign-in", data={"token": admin_token(api), "csrf_token": "forged"}
        )
        without = await client.post("/dashboard/sign-in", data={"token": admin_token(api)})

    for response in (forged, without):
        assert response.status_code == 403
        assert "hookline_session=" not in str(response.headers.get_list("set-cookie"))


@pytest.mark.parametrize(
    "next_page",
    ["https://elsewhere.example/", "//elsewhere.example/x", "/users", "/dashboard/..//x"],
)
async def test_after_signing_in_the_next_page_is_a_dashboard_page(api, next_page):
    async with browser(api.app) as client:
        form = await client.get("/dashboard/sign-in", params={"next": next_page})
        response = await client.post(
            "/dashboard/sign-in",
            data={
                "csrf_token": hidden(form.text),
                "token": admin_token(api),
                "next": hidden(form.text, "next"),
            },
        )

    assert response.headers["location"] == "/dashboard"


async def test_a_tampered_cookie_is_no_session(api):
    async with browser(api.app) as client:
        await sign_in(client, admin_token(api))
        value = client.cookies["hookline_session"]
        client.cookies.set("hookline_session", value[:-2] + "AA", path="/dashboard")
        response = await client.get("/dashboard")

    assert response.status_code == 303


async def test_a_session_signed_with_another_secret_key_is_no_session(api, make_settings):
    async with browser(api.app) as client:
        await sign_in(client, admin_token(api))
        value = client.cookies["hookline_session"]
    other_dir = make_settings().data_dir.parent / "other-data"
    async with (
        running_app(make_settings(data_dir=other_dir)) as other,
        browser(other.app) as client,
    ):
        client.cookies.set("hookline_session", value, path="/dashboard")
        response = await client.get("/dashboard")

    assert response.status_code == 303


async def test_a_session_ends_after_12_hours(api, monkeypatch):
    import time

    twelve_hours_ago = time.time() - 12 * 3600 - 5
    async with browser(api.app) as client:
        monkeypatch.setattr(
            itsdangerous.timed, "time", types.SimpleNamespace(time=lambda: twelve_hours_ago)
        )
        await sign_in(client, admin_token(api))
        monkeypatch.undo()
        response = await client.get("/dashboard")

    assert response.status_code == 303


async def test_a_users_session_ends_when_its_token_is_replaced(api, users):
    async with browser(api.app) as client:
        await sign_in(client, users.alice)
        assert (await client.get("/dashboard")).status_code == 200
        replaced = await api.client.post("/users/alice/token")
        assert replaced.status_code == 200, replaced.text
        response = await client.get("/dashboard")

    assert response.status_code == 303


async def test_signing_out_needs_the_csrf_token_and_ends_the_session(api):
    async with browser(api.app) as client:
        await sign_in(client, admin_token(api))
        refused = await client.post("/dashboard/sign-out", data={})
        still = await client.get("/dashboard")
        signed_out = await client.post(
            "/dashboard/sign-out", data={"csrf_token": await csrf_of(client)}
        )
        after = await client.get("/dashboard")

    assert refused.status_code == 403 and still.status_code == 200
    assert signed_out.status_code == 303
    assert cookie_attributes(signed_out, "hookline_session")["max-age"] == "0"
    assert after.status_code == 303


async def test_pages_are_private_and_load_nothing_from_elsewhere(api):
    async with browser(api.app) as client:
        await sign_in(client, admin_token(api))
        page = await client.get("/dashboard")

    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert url.startswith("/"), url
