"""The dashboard's rules through the app itself, on both databases: sessions,
CSRF tokens, and who sees what. The browser tests (tests/browser/test_dashboard.py) walk the
pages; these check each rule where it is decided."""

import base64
import html
import json
import re
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import itsdangerous.timed
import pytest
from fastapi import FastAPI
from sqlalchemy import inspect, text, update

from hookline.dashboard.queries import deliveries_per_minute, recent_by_status
from hookline.models import Delivery, utcnow
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


# -- endpoints ------------------------------------------------------------------------------


async def database_rows(api: RunningApp) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to tell that a refused form changed nothing."""
    engine = api.app.state.test_db.engine
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        found = {}
        for name in names:
            rows = await conn.execute(text(f'SELECT * FROM "{name}"'))
            found[name] = sorted((tuple(row) for row in rows), key=repr)
    return found


async def endpoint_of(api: RunningApp, token: str | None, url: str, **fields: Any) -> str:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = await api.client.post(
        "/endpoints",
        json={"url": url, "events": ["user_registered"], **fields},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["id"]
    return endpoint_id


@asynccontextmanager
async def signed_in(api: RunningApp, token: str) -> AsyncIterator[Any]:
    async with browser(api.app) as client:
        response = await sign_in(client, token)
        assert response.status_code == 303, response.text
        yield client


async def post_form(
    client: httpx.AsyncClient, path: str, fields: dict[str, Any] | None = None
) -> httpx.Response:
    """Post a form of the page the action belongs to, with its CSRF token."""
    csrf = await csrf_of(client)
    return await client.post(path, data={"csrf_token": csrf, **(fields or {})})


async def test_the_admin_creates_an_endpoint_with_its_options(api):
    async with signed_in(api, admin_token(api)) as client:
        response = await post_form(
            client,
            "/dashboard/endpoints",
            {
                "url": f"{CLOSED}/created",
                "events": ["user_registered", "user_send_message"],
                "description": "made in the dashboard",
                "headers": "X-Team: payments\n\nX-Env: test",
                "filter": '{"data.username": {"$ne": "bot"}}',
                "rate_limit": "2.5",
                "ordered": "true",
            },
        )
        assert response.status_code == 303, response.text
        page = await client.get(response.headers["location"])

    endpoint_id = response.headers["location"].split("/")[-1].split("?")[0]
    stored = (await api.client.get(f"/endpoints/{endpoint_id}")).json()
    assert stored["url"] == f"{CLOSED}/created"
    assert stored["events"] == ["user_registered", "user_send_message"]
    assert stored["description"] == "made in the dashboard"
    assert stored["headers"] == {"X-Team": "payments", "X-Env": "test"}
    assert stored["filter"] == {"data.username": {"$ne": "bot"}}
    assert (stored["rate_limit"], stored["ordered"], stored["owner"]) == (2.5, True, None)
    assert page.status_code == 200 and "Endpoint created." in page.text
    assert "whsec_" not in page.text  # the secret is shown only when asked for


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        pytest.param({"events": ["user_registered"]}, "url", id="no URL"),
        pytest.param({"url": f"{CLOSED}/x"}, "events", id="no event"),
        pytest.param(
            {"url": f"{CLOSED}/x", "events": ["*"], "filter": "{nope"}, "filter", id="bad JSON"
        ),
        pytest.param(
            {"url": f"{CLOSED}/x", "events": ["*"], "headers": "no colon"}, "headers", id="header"
        ),
        pytest.param(
            {"url": f"{CLOSED}/x", "events": ["*"], "rate_limit": "fast"}, "rate_limit", id="rate"
        ),
        pytest.param({"url": "ftp://x", "events": ["*"]}, "URL", id="not http"),
    ],
)
async def test_a_wrong_endpoint_form_says_why_keeps_what_was_typed_and_creates_nothing(
    api, fields, says
):
    async with signed_in(api, admin_token(api)) as client:
        before = await database_rows(api)
        response = await post_form(
            client, "/dashboard/endpoints", {"description": "kept", **fields}
        )

    assert response.status_code in (400, 422), response.text
    assert says.lower() in response.text.lower()
    assert 'value="kept"' in response.text
    assert await database_rows(api) == before


async def test_a_user_creates_its_own_endpoint_and_sees_only_its_own(api, users):
    admins = await endpoint_of(api, None, f"{CLOSED}/admins")
    bobs = await endpoint_of(api, users.bob, f"{CLOSED}/bobs")
    async with signed_in(api, users.alice) as client:
        created = await post_form(
            client,
            "/dashboard/endpoints",
            {"url": f"{CLOSED}/alices", "events": ["user_registered"], "owner": "bob"},
        )
        listed = await client.get("/dashboard/endpoints")
        others = [await client.get(f"/dashboard/endpoints/{e}") for e in (admins, bobs)]

    assert created.status_code == 303, created.text
    alices = created.headers["location"].split("/")[-1].split("?")[0]
    assert (await api.client.get(f"/endpoints/{alices}")).json()["owner"] == "alice"
    assert f"{CLOSED}/alices" in listed.text
    assert f"{CLOSED}/admins" not in listed.text and f"{CLOSED}/bobs" not in listed.text
    assert [page.status_code for page in others] == [404, 404]
    assert all(f"{CLOSED}/admins" not in p.text and f"{CLOSED}/bobs" not in p.text for p in others)


async def test_the_endpoint_list_searches_and_pages_by_cursor(api):
    for n in range(30):
        await endpoint_of(api, None, f"{CLOSED}/many/{n:02d}")
    await endpoint_of(api, None, "http://127.0.0.1:9/other")
    async with signed_in(api, admin_token(api)) as client:
        first = await client.get("/dashboard/endpoints", params={"q": "MANY"})
        older = re.search(r'href="(/dashboard/endpoints\?[^"]*cursor=[^"]+)">Older', first.text)
        assert older is not None, first.text
        second = await client.get(html.unescape(older.group(1)))

    shown = re.findall(r"/many/(\d\d)<", first.text + second.text)
    assert shown == [f"{n:02d}" for n in range(29, -1, -1)]
    assert "/other" not in first.text + second.text
    assert ">Older<" not in second.text


async def test_the_endpoint_page_changes_its_settings(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/settings", headers={"X-Old": "1"})
    async with signed_in(api, admin_token(api)) as client:
        response = await post_form(
            client,
            f"/dashboard/endpoints/{endpoint_id}/settings",
            {
                "url": f"{CLOSED}/settings",
                "events": ["user_send_message"],
                "description": "",
                "headers": "X-New: 2",
                "filter": "",
                "rate_limit": "",
                "ordered": "true",
            },
        )

    assert response.status_code == 303, response.text
    stored = (await api.client.get(f"/endpoints/{endpoint_id}")).json()
    assert stored["events"] == ["user_send_message"]
    assert stored["headers"] == {"X-New": "2"}
    assert (stored["filter"], stored["rate_limit"], stored["ordered"]) == (None, None, True)


async def stored_header_values(api: RunningApp, endpoint_id: str) -> dict[str, str]:
    query = text("SELECT headers FROM endpoints WHERE id = :id")
    async with api.app.state.test_db.engine.connect() as conn:
        raw = (await conn.execute(query, {"id": endpoint_id})).scalar_one()
    found: dict[str, str] = json.loads(raw) if isinstance(raw, str) else raw
    return found


async def test_the_forms_seal_the_header_values_and_the_page_shows_them_opened(api):
    token, replaced = "Bearer dash-credential-0a1b2c3d", "Bearer dash-replaced-4e5f6a7b"
    async with signed_in(api, admin_token(api)) as client:
        created = await post_form(
            client,
            "/dashboard/endpoints",
            {"url": f"{CLOSED}/sealed", "events": ["*"], "headers": f"Authorization: {token}"},
        )
        assert created.status_code == 303, created.text
        endpoint_id = created.headers["location"].split("/")[-1].split("?")[0]
        at_creation = await stored_header_values(api, endpoint_id)
        page = await client.get(f"/dashboard/endpoints/{endpoint_id}")
        changed = await post_form(
            client,
            f"/dashboard/endpoints/{endpoint_id}/settings",
            {"url": f"{CLOSED}/sealed", "events": ["*"], "headers": f"Authorization: {replaced}"},
        )
        assert changed.status_code == 303, changed.text
        after_change = await stored_header_values(api, endpoint_id)
        listed = await client.get("/dashboard/endpoints")

    assert list(at_creation) == ["Authorization"] and list(after_change) == ["Authorization"]
    assert at_creation["Authorization"].startswith("fernet:")
    assert after_change["Authorization"].startswith("fernet:")
    assert token not in json.dumps(at_creation) and replaced not in json.dumps(after_change)
    assert f"Authorization: {token}</textarea>" in html.unescape(page.text)
    assert listed.status_code == 200
    shown = (await api.client.get(f"/endpoints/{endpoint_id}")).json()
    assert shown["headers"] == {"Authorization": replaced}


async def test_a_wrong_setting_says_why_and_changes_nothing(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/unchanged")
    async with signed_in(api, admin_token(api)) as client:
        before = await database_rows(api)
        response = await post_form(
            client,
            f"/dashboard/endpoints/{endpoint_id}/settings",
            {"url": f"{CLOSED}/unchanged", "events": ["*"], "filter": '{"$where": 1}'},
        )

    assert response.status_code == 422, response.text
    assert "$where" in response.text
    assert await database_rows(api) == before


async def test_disabling_and_enabling(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/toggled")
    async with signed_in(api, admin_token(api)) as client:
        path = f"/dashboard/endpoints/{endpoint_id}/enabled"
        disabled = await post_form(client, path, {"enabled": "false"})
        state_off = (await api.client.get(f"/endpoints/{endpoint_id}")).json()
        enabled = await post_form(client, path, {"enabled": "true"})
        state_on = (await api.client.get(f"/endpoints/{endpoint_id}")).json()

    assert disabled.status_code == enabled.status_code == 303
    assert (state_off["enabled"], state_off["disabled_reason"]) == (False, "disabled by request")
    assert state_on["enabled"] is True


async def test_the_secret_is_revealed_and_rotated_in_the_answer_only(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/secret")
    secret = (await api.client.get(f"/endpoints/{endpoint_id}/secret")).json()["secret"]
    async with signed_in(api, admin_token(api)) as client:
        revealed = await post_form(client, f"/dashboard/endpoints/{endpoint_id}/secret")
        rotated = await post_form(client, f"/dashboard/endpoints/{endpoint_id}/secret/rotate")
        again = await post_form(client, f"/dashboard/endpoints/{endpoint_id}/secret/rotate")
        page = await client.get(f"/dashboard/endpoints/{endpoint_id}")

    new_secret = (await api.client.get(f"/endpoints/{endpoint_id}/secret")).json()["secret"]
    assert revealed.status_code == 200 and secret in revealed.text
    assert revealed.headers["cache-control"] == "no-store"
    assert rotated.status_code == 200 and new_secret in rotated.text and new_secret != secret
    assert "previous one still signs" in rotated.text
    assert again.status_code == 409 and "24 hours" in again.text  # the API's own rule
    assert secret not in page.text and new_secret not in page.text


async def test_recovering_a_window_sends_its_failed_deliveries_again(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/recovered")
    await register(api, "carol")
    await register(api, "dave")
    async with api.app.state.test_db.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.endpoint_id == endpoint_id)
            .values(status="failed", next_attempt_at=None, finished_at=utcnow())
        )
    async with signed_in(api, admin_token(api)) as client:
        since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        response = await post_form(
            client, f"/dashboard/endpoints/{endpoint_id}/recover", {"since": since}
        )
        page = await client.get(response.headers["location"])
        wrong = await post_form(
            client,
            f"/dashboard/endpoints/{endpoint_id}/recover",
            {"since": since, "until": "2000-01-01T00:00"},
        )

    statuses = (await api.client.get(f"/endpoints/{endpoint_id}")).json()["stats"]
    assert response.status_code == 303 and statuses["pending"] == 2
    assert "Deliveries of that window due again now: 2." in page.text
    assert wrong.status_code == 422 and "later than" in wrong.text


ACTIONS = [
    ("/dashboard/endpoints", {"url": f"{CLOSED}/forged", "events": ["*"]}),
    ("/dashboard/endpoints/{id}/settings", {"url": f"{CLOSED}/forged", "events": ["*"]}),
    ("/dashboard/endpoints/{id}/enabled", {"enabled": "false"}),
    ("/dashboard/endpoints/{id}/secret", {}),
    ("/dashboard/endpoints/{id}/secret/rotate", {}),
    ("/dashboard/endpoints/{id}/ping", {}),
    ("/dashboard/endpoints/{id}/recover", {"since": "2000-01-01T00:00"}),
    ("/dashboard/sign-out", {}),
]


@pytest.mark.parametrize(
    "csrf",
    [
        pytest.param(None, id="without a CSRF token"),
        pytest.param("forged", id="with a forged one"),
        pytest.param("other", id="with another session's"),
    ],
)
async def test_every_form_without_the_sessions_csrf_token_is_refused(api, csrf):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/kept")
    async with signed_in(api, admin_token(api)) as other:
        others = await csrf_of(other)
    async with signed_in(api, admin_token(api)) as client:
        before = await database_rows(api)
        for path, fields in ACTIONS:
            data = dict(fields)
            if csrf is not None:
                data["csrf_token"] = others if csrf == "other" else csrf
            response = await client.post(path.format(id=endpoint_id), data=data)

            assert response.status_code == 403, (path, response.text)
            assert "whsec_" not in response.text
        assert (await client.get("/dashboard")).status_code == 200  # still signed in

    assert await database_rows(api) == before


async def test_a_form_sent_as_json_is_refused(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/json")
    async with signed_in(api, admin_token(api)) as client:
        csrf = await csrf_of(client)
        response = await client.post(
            f"/dashboard/endpoints/{endpoint_id}/enabled",
            json={"csrf_token": csrf, "enabled": "false"},
        )

    assert response.status_code == 403
    assert (await api.client.get(f"/endpoints/{endpoint_id}")).json()["enabled"] is True


async def test_a_user_can_do_nothing_to_another_users_endpoint(api, users):
    bobs = await endpoint_of(api, users.bob, f"{CLOSED}/bobs-own")
    async with signed_in(api, users.alice) as client:
        before = await database_rows(api)
        for path, fields in ACTIONS[1:-1]:
            response = await post_form(client, path.format(id=bobs), fields)

            assert response.status_code == 404, (path, response.text)
            assert "whsec_" not in response.text and "bobs-own" not in response.text

    assert await database_rows(api) == before


# -- events and deliveries ------------------------------------------------------------------


async def delivery_of(api: RunningApp, endpoint_id: str) -> dict[str, Any]:
    found = (await api.client.get(f"/endpoints/{endpoint_id}/deliveries")).json()["data"]
    assert found, "no delivery"
    delivery: dict[str, Any] = found[0]
    return delivery


async def test_the_event_log_is_the_admins_and_filters_by_type(api, users):
    await api.client.post("/event-types", json={"name": "order.paid"})
    sent = await api.client.post("/events", json={"event": "order.paid", "data": {"n": 7}})
    assert sent.status_code == 201, sent.text
    async with signed_in(api, admin_token(api)) as client:
        every = await client.get("/dashboard/events")
        paid = await client.get("/dashboard/events", params={"event": "order.paid"})
        unknown = await client.get("/dashboard/events", params={"event": "nope"})
    async with signed_in(api, users.alice) as client:
        refused = await client.get("/dashboard/events")

    assert every.status_code == 200
    assert every.text.count('href="/dashboard/events/evt_') == 3  # two users and the order
    assert paid.text.count('href="/dashboard/events/evt_') == 1 and "{&#34;n&#34;:7}" in paid.text
    assert unknown.status_code == 404
    assert refused.status_code == 403 and "evt_" not in refused.text


async def test_a_user_sees_an_event_through_its_own_deliveries_only(api, users):
    alices = await endpoint_of(api, users.alice, f"{CLOSED}/alice", events=["*"])
    bobs = await endpoint_of(api, users.bob, f"{CLOSED}/bob", events=["*"])
    await api.client.post("/event-types", json={"name": "order.paid"})
    sent = await api.client.post(
        "/events", json={"event": "order.paid", "data": {"for": "alice"}, "user": "alice"}
    )
    event_id = sent.json()["id"]
    async with signed_in(api, users.alice) as client:
        own = await client.get(f"/dashboard/events/{event_id}")
    async with signed_in(api, users.bob) as client:
        other = await client.get(f"/dashboard/events/{event_id}")
        delivery = await client.get(
            f"/dashboard/deliveries/{(await delivery_of(api, alices))['id']}"
        )

    assert own.status_code == 200 and alices in own.text and bobs not in own.text
    assert "&#34;for&#34;: &#34;alice&#34;" in own.text
    assert other.status_code == 404 and "alice" not in other.text.replace("sign", "")
    assert delivery.status_code == 404


async def test_a_ping_opens_its_delivery_with_the_attempt(api, receiver):
    receiver.script("/pinged", [200], {"X-Receiver": "here"}, body="pong from the receiver")
    endpoint_id = await endpoint_of(
        api, None, receiver.url("/pinged"), headers={"X-Team": "payments"}
    )
    async with signed_in(api, admin_token(api)) as client:
        pinged = await post_form(client, f"/dashboard/endpoints/{endpoint_id}/ping")
        page = await client.get(pinged.headers["location"])

    assert pinged.status_code == 303 and "/dashboard/deliveries/dlv_" in pinged.headers["location"]
    assert page.status_code == 200
    assert "Ping sent: its attempt is below." in page.text
    assert "pong from the receiver" in page.text
    assert 'data-testid="response-status">200<' in page.text
    assert "by hand" in page.text  # its trigger
    sent = receiver.at("/pinged")[0].headers
    for name in ("webhook-id", "webhook-signature"):  # the request's headers, as recorded
        assert f'<th>{name}</th><td class="mono">{html.escape(sent[name])}</td>' in page.text
    # The custom header's value (often a credential, sealed at rest) is recorded redacted.
    assert '<th>x-team</th><td class="mono">(redacted)</td>' in page.text
    assert "payments" not in page.text
    assert '<th>x-receiver</th><td class="mono">here</td>' in page.text  # the answer's


async def test_a_retry_makes_the_delivery_due_again(api, users):
    endpoint_id = await endpoint_of(api, users.alice, f"{CLOSED}/retried", events=["*"])
    await api.client.post("/event-types", json={"name": "order.paid"})
    sent = await api.client.post(
        "/events", json={"event": "order.paid", "data": {}, "user": "alice"}
    )
    assert sent.status_code == 201, sent.text
    delivery = await delivery_of(api, endpoint_id)
    async with api.app.state.test_db.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery["id"])
            .values(status="failed", next_attempt_at=None, finished_at=utcnow())
        )
    async with signed_in(api, users.bob) as client:
        before = await database_rows(api)
        others = await post_form(client, f"/dashboard/deliveries/{delivery['id']}/retry")
        assert others.status_code == 404
        assert await database_rows(api) == before
    async with signed_in(api, users.alice) as client:
        forged = await client.post(f"/dashboard/deliveries/{delivery['id']}/retry", data={})
        assert forged.status_code == 403
        assert await database_rows(api) == before
        retried = await post_form(client, f"/dashboard/deliveries/{delivery['id']}/retry")
        page = await client.get(retried.headers["location"])

    assert retried.status_code == 303
    assert (await api.client.get(f"/deliveries/{delivery['id']}")).json()["status"] == "pending"
    assert "The delivery is due again" in page.text
    assert 'hx-trigger="every 2s"' in page.text  # pending: the page follows its attempts


async def test_a_retry_to_a_disabled_endpoint_says_to_enable_it(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/off")
    await register(api, "carol")
    delivery = await delivery_of(api, endpoint_id)
    await api.client.patch(f"/endpoints/{endpoint_id}", json={"enabled": False})
    async with signed_in(api, admin_token(api)) as client:
        response = await post_form(client, f"/dashboard/deliveries/{delivery['id']}/retry")

    assert response.status_code == 409 and "disabled" in response.text


async def test_a_deleted_endpoints_delivery_stays_readable(api, receiver):
    endpoint_id = await endpoint_of(api, None, receiver.url("/gone"))
    async with signed_in(api, admin_token(api)) as client:
        pinged = await post_form(client, f"/dashboard/endpoints/{endpoint_id}/ping")
        assert (await api.client.delete(f"/endpoints/{endpoint_id}")).status_code == 204
        page = await client.get(pinged.headers["location"])
        endpoint_page = await client.get(f"/dashboard/endpoints/{endpoint_id}")

    assert page.status_code == 200 and "(deleted)" in page.text
    assert endpoint_page.status_code == 404


# -- event types ----------------------------------------------------------------------------


async def test_the_admin_creates_an_event_type_with_a_schema(api):
    schema = {"type": "object", "properties": {"amount": {"type": "integer"}}}
    async with signed_in(api, admin_token(api)) as client:
        created = await post_form(
            client,
            "/dashboard/event-types",
            {"name": "invoice.paid", "description": "Paid.", "schema": json.dumps(schema)},
        )
        page = await client.get(created.headers["location"])
        catalog = await client.get("/dashboard/event-types")

    assert created.status_code == 303, created.text
    assert created.headers["location"].startswith("/dashboard/event-types/invoice.paid")
    assert (await api.client.get("/event-types/invoice.paid")).json()["schema"] == schema
    assert page.status_code == 200 and "&#34;amount&#34;" in page.text
    assert "invoice.paid" in catalog.text and "user_registered" in catalog.text


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        pytest.param({"name": "Bad Name"}, "name", id="a bad name"),
        pytest.param({"name": "user_registered"}, "already exists", id="a built-in name"),
        pytest.param({"name": "x.y", "schema": "{"}, "schema: not JSON", id="not JSON"),
        pytest.param({"name": "x.y", "schema": '{"type": 5}'}, "Invalid JSON Schema", id="schema"),
    ],
)
async def test_a_wrong_event_type_says_why_and_creates_nothing(api, fields, says):
    async with signed_in(api, admin_token(api)) as client:
        before = await database_rows(api)
        response = await post_form(client, "/dashboard/event-types", fields)

    assert response.status_code in (409, 422), response.text
    assert says in html.unescape(response.text)
    assert await database_rows(api) == before


async def test_a_user_reads_the_catalog_but_defines_no_type(api, users):
    async with signed_in(api, users.alice) as client:
        catalog = await client.get("/dashboard/event-types")
        one = await client.get("/dashboard/event-types/user_registered")
        before = await database_rows(api)
        refused = await post_form(client, "/dashboard/event-types", {"name": "mine"})

    assert catalog.status_code == 200 and "Create an event type" not in catalog.text
    assert one.status_code == 200 and "registered_at" in one.text
    assert refused.status_code == 403
    assert await database_rows(api) == before


# -- the overview's chart -------------------------------------------------------------------


def chart_of(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page)
    assert found is not None, page[:2000]
    chart: dict[str, Any] = json.loads(found.group(1))
    return chart


async def test_the_overview_charts_the_last_24_hours_deliveries_per_minute_by_status(api, users):
    await endpoint_of(api, None, f"{CLOSED}/admins", events=["*"])
    alices = await endpoint_of(api, users.alice, f"{CLOSED}/alices", events=["*"])
    await api.client.post("/event-types", json={"name": "order.paid"})
    for _ in range(3):
        sent = await api.client.post(
            "/events", json={"event": "order.paid", "data": {}, "user": "alice"}
        )
        assert sent.status_code == 201, sent.text
    async with api.app.state.test_db.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.endpoint_id == alices)
            .values(status="failed", next_attempt_at=None, finished_at=utcnow())
        )
    async with signed_in(api, admin_token(api)) as client:
        admins_page = await client.get("/dashboard")
        queue_only = await client.get("/dashboard", params={"part": "queue"})
    async with signed_in(api, users.alice) as client:
        alices_page = await client.get("/dashboard")

    everyone, alices_own = chart_of(admins_page.text), chart_of(alices_page.text)
    assert len(everyone["labels"]) == 24 * 60
    totals = {series["status"]: sum(series["counts"]) for series in everyone["series"]}
    # Each endpoint got the three orders (the users registered before there was an endpoint).
    assert totals == {"succeeded": 0, "failed": 3, "pending": 3, "cancelled": 0}
    own = {series["status"]: sum(series["counts"]) for series in alices_own["series"]}
    assert own == {"succeeded": 0, "failed": 3, "pending": 0, "cancelled": 0}
    failed = next(series["counts"] for series in everyone["series"] if series["status"] == "failed")
    assert sum(failed[-2:]) == 3  # made in the last minute or the one before
    assert "By hour, as a table" in admins_page.text
    assert "Queue health" in queue_only.text and "chart-data" not in queue_only.text


async def test_the_chart_leaves_out_what_is_older_than_24_hours(api, store):
    await endpoint_of(api, None, f"{CLOSED}/admins", events=["*"])
    await register(api, "carol")

    today = await store.read(deliveries_per_minute(scope=None))
    in_two_days = await store.read(
        deliveries_per_minute(scope=None, now=utcnow() + timedelta(days=2))
    )

    assert today.total == 1
    assert in_two_days.total == 0


async def test_an_endpoints_page_counts_its_last_24_hours_and_pages_its_deliveries(api, store):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/busy", events=["*"])
    for n in range(30):
        await register(api, f"customer{n}")
    async with signed_in(api, admin_token(api)) as client:
        first = await client.get(f"/dashboard/endpoints/{endpoint_id}")
        older = re.search(r'href="([^"]*cursor=[^"]+)">Older', first.text)
        assert older is not None
        second = await client.get(html.unescape(older.group(1)))

    shown = re.findall(r'href="/dashboard/deliveries/(dlv_\w+)"', first.text + second.text)
    listed = (await api.client.get(f"/endpoints/{endpoint_id}/deliveries?limit=100")).json()
    assert shown == [d["id"] for d in listed["data"]]  # newest first, each once
    assert 'data-testid="stat-pending">30<' in first.text
    # A window, not the whole history: in two days these are no longer counted.
    later = await store.read(
        recent_by_status(endpoint_id=endpoint_id, now=utcnow() + timedelta(days=2))
    )
    assert later == {"succeeded": 0, "failed": 0, "pending": 0, "cancelled": 0}


async def test_recovering_cancelled_deliveries_when_asked_for(api):
    endpoint_id = await endpoint_of(api, None, f"{CLOSED}/cancelled")
    await register(api, "carol")
    async with api.app.state.test_db.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.endpoint_id == endpoint_id)
            .values(status="cancelled", next_attempt_at=None, finished_at=utcnow())
        )
    since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    async with signed_in(api, admin_token(api)) as client:
        path = f"/dashboard/endpoints/{endpoint_id}/recover"
        failed_only = await post_form(client, path, {"since": since})
        cancelled = await post_form(client, path, {"since": since, "statuses": ["cancelled"]})

    assert failed_only.headers["location"].endswith("count=0")
    assert cancelled.headers["location"].endswith("count=1")
    stats = (await api.client.get(f"/endpoints/{endpoint_id}")).json()["stats"]
    assert stats["pending"] == 1
