"""The dashboard in Debian's Chromium against a real `hookline serve`, which
delivers to a real receiver on this machine: sign in, endpoints, deliveries and their attempts,
retry, secrets, disabling, recovery, a user's own view, CSRF, JavaScript off.

The server here is this module's own (the folder's one cannot deliver to 127.0.0.1); the
browser, the pages and their offline guard are the folder's (conftest.py).
"""

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.conftest import LOCAL_HOSTS, TIMEOUT_MS, Offline, Server, run_async
from tests.support.process import ServeProcess, clean_environ, free_port
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

T = TypeVar("T")


class BackgroundReceiver:
    """tests/support/receiver.py's Receiver, on an event loop of its own in a thread (the
    tests' thread belongs to Playwright's sync API)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.receiver = Receiver()

    def __enter__(self) -> "BackgroundReceiver":
        self._thread.start()
        self._run(self.receiver.__aenter__())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._run(self.receiver.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    def url(self, path: str) -> str:
        return self.receiver.url(path)

    def script(self, path: str, statuses: list[int]) -> None:
        self._loop.call_soon_threadsafe(self.receiver.script, path, statuses)

    def wait_for(self, count: int, *, path: str) -> None:
        self._run(self.receiver.wait_for(count, path=path, timeout=10))


@pytest.fixture(scope="module")
def receiver() -> Iterator[BackgroundReceiver]:
    with BackgroundReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def hookline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's `hookline serve`: deliveries to 127.0.0.1 allowed, one quick retry."""
    workdir = tmp_path_factory.mktemp("dashboard-serve")
    data_dir = workdir / "data"
    port = free_port()
    token = "hl_admin_" + secrets.token_urlsafe(32)  # given: a generated one is printed once
    env = clean_environ(
        HOOKLINE_ADMIN_TOKEN=token,
        HOOKLINE_DATA_DIR=str(data_dir),
        HOOKLINE_PORT=str(port),
        HOOKLINE_ALLOW_PRIVATE_NETWORKS="true",
        HOOKLINE_RETRY_SCHEDULE="0.3",
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_POLL_INTERVAL="0.2",
        HOOKLINE_PING_ON_CREATE="false",
    )
    with ServeProcess(workdir, env=env, port=port) as serve:
        run_async(serve.start())
        yield Server(serve.base_url, token, data_dir, serve)
        code = run_async(serve.terminate(timeout=15))
        assert code == 0, f"hookline serve exited with {code}:\n{serve.log_text()}"
        log = serve.log_text()
        assert token not in log, "the admin token is in the server's log"
        assert "hl_user_" not in log, "a user's token is in the server's log"


@pytest.fixture(scope="module")
def api(hookline_server: Server) -> Iterator[httpx.Client]:
    """The API as the admin, to arrange what the pages then show."""
    with httpx.Client(
        base_url=hookline_server.base_url, headers=hookline_server.admin_headers, timeout=10
    ) as client:
        yield client


def new_context(browser: Browser, server: Server, offline: Offline, **options: Any) -> Page:
    """A page in a context of its own, reaching this machine only (as conftest's `page`)."""
    context: BrowserContext = browser.new_context(base_url=server.base_url, **options)
    context.set_default_timeout(TIMEOUT_MS)

    def local_only(route: Route) -> None:
        if (route.request.url.split("/")[2].split(":")[0]) in LOCAL_HOSTS:
            route.continue_()
        else:
            offline.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", local_only)
    opened = context.new_page()
    opened.on("pageerror", lambda error: offline.errors.append(str(error)))
    return opened


def sign_in(page: Page, token: str, *, start: str = "/dashboard") -> None:
    page.goto(start)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("who")).to_be_visible()


def register_user(api: httpx.Client, username: str) -> str:
    response = api.post("/users", json={"username": username})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


# -- signing in -----------------------------------------------------------------------------


def test_without_a_session_every_page_is_the_sign_in_page(page: Page, offline: Offline) -> None:
    for path in ["/dashboard", "/dashboard/endpoints", "/dashboard/events", "/dashboard/nope"]:
        page.goto(path)

        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(page.get_by_role("navigation")).to_have_count(0)
        assert page.url.split("?")[0].endswith("/dashboard/sign-in"), page.url
    assert offline.blocked == []
    assert offline.errors == []


def test_the_admin_signs_in_and_out(page: Page, hookline_server: Server, offline: Offline) -> None:
    sign_in(page, hookline_server.admin_token, start="/dashboard/endpoints")

    assert page.url.endswith("/dashboard/endpoints"), "back to the page first asked for"
    expect(page.get_by_test_id("who")).to_have_text("admin")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["hookline_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict", session
    assert 11.9 * 3600 < session["expires"] - datetime.now(UTC).timestamp() <= 12 * 3600
    assert hookline_server.admin_token not in str(page.context.cookies())
    assert hookline_server.admin_token not in page.content()

    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Signed out.")).to_be_visible()
    page.goto("/dashboard")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert offline.blocked == []
    assert offline.errors == []


def test_a_wrong_token_is_refused(page: Page) -> None:
    page.goto("/dashboard")
    page.get_by_label("Token").fill("hl_admin_not-the-token")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("not the admin's token")
    expect(page.get_by_label("Token")).to_have_value("")
    assert "hookline_session" not in {c["name"] for c in page.context.cookies()}


def test_the_overview_shows_queue_health_and_draws_the_chart(
    page: Page, hookline_server: Server, offline: Offline
) -> None:
    sign_in(page, hookline_server.admin_token)

    expect(page.get_by_role("heading", name="Queue health")).to_be_visible()
    for tile in ("due", "in-flight", "oldest-due"):
        expect(page.get_by_test_id(tile)).to_be_visible()
    expect(page.get_by_role("heading", name="Deliveries per minute, last 24 hours")).to_be_visible()
    chart = page.locator("canvas#chart")
    expect(chart).to_have_attribute("data-drawn", "true")  # Chart.js, served by hookline
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["height"] > 100
    assert offline.blocked == []
    assert offline.errors == []


# -- endpoints ------------------------------------------------------------------------------


def create_endpoint(page: Page, url: str, events: list[str]) -> str:
    """Create an endpoint with the endpoints page's form; its id (from the page it opens)."""
    page.goto("/dashboard/endpoints")
    page.get_by_text("Create an endpoint").click()
    page.get_by_label("URL", exact=True).fill(url)
    for name in events:
        page.get_by_role("checkbox", name=name, exact=True).check()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Endpoint created.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(url)
    return page.url.split("/")[-1].split("?")[0]


def test_the_admin_creates_an_endpoint_sees_a_delivery_and_manages_the_endpoint(
    page: Page,
    hookline_server: Server,
    offline: Offline,
    receiver: BackgroundReceiver,
    api: httpx.Client,
) -> None:
    sign_in(page, hookline_server.admin_token)
    url = receiver.url("/managed")
    endpoint_id = create_endpoint(page, url, ["user_registered"])

    register_user(api, "first-customer")  # a user_registered event: a delivery to the endpoint
    receiver.wait_for(1, path="/managed")

    deliveries = page.locator("#deliveries tbody tr")
    expect(deliveries.first).to_contain_text("succeeded")  # htmx shows it without a reload
    expect(deliveries).to_have_count(1)

    # The secret: revealed, then rotated (the receiver's new one signs from now on).
    page.get_by_role("button", name="Reveal secret").click()
    first_secret = page.get_by_test_id("secret").inner_text()
    assert first_secret.startswith("whsec_")
    assert api.get(f"/endpoints/{endpoint_id}/secret").json()["secret"] == first_secret
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_test_id("rotated")).to_be_visible()
    second_secret = page.get_by_test_id("secret").inner_text()
    assert second_secret.startswith("whsec_") and second_secret != first_secret
    assert api.get(f"/endpoints/{endpoint_id}/secret").json()["secret"] == second_secret

    # Disabled, then enabled again.
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("Endpoint disabled")).to_be_visible()
    expect(page.get_by_test_id("state")).to_have_text("disabled")
    assert api.get(f"/endpoints/{endpoint_id}").json()["enabled"] is False
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_test_id("state")).to_have_text("enabled")
    assert api.get(f"/endpoints/{endpoint_id}").json()["enabled"] is True

    # Its settings: a header, a rate limit.
    page.get_by_label("Headers").fill("X-Team: payments")
    page.get_by_label("Rate limit").fill("5")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    stored = api.get(f"/endpoints/{endpoint_id}").json()
    assert (stored["headers"], stored["rate_limit"]) == ({"X-Team": "payments"}, 5.0)

    # Found by a search of the list.
    page.goto("/dashboard/endpoints")
    page.get_by_label("URL contains").fill("/managed")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("endpoints").locator("tbody tr")).to_have_count(1)
    assert offline.blocked == []
    assert offline.errors == []


def endpoint_via_api(api: httpx.Client, url: str, token: str | None = None, **fields: Any) -> str:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body = {"url": url, "events": ["user_registered"], **fields}
    response = api.post("/endpoints", json=body, headers=headers)
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["id"]
    return endpoint_id


def wait_for_status(api: httpx.Client, endpoint_id: str, status: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = api.get(f"/endpoints/{endpoint_id}").json()["stats"]
        if stats[status] >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {count} {status} deliveries within 10 s: {stats}")


# -- deliveries -----------------------------------------------------------------------------


def test_a_failed_delivery_its_attempts_a_retry_and_a_recovered_window(
    page: Page,
    hookline_server: Server,
    offline: Offline,
    receiver: BackgroundReceiver,
    api: httpx.Client,
) -> None:
    receiver.script("/flaky", [500])  # until told otherwise
    endpoint_id = endpoint_via_api(api, receiver.url("/flaky"))
    register_user(api, "second-customer")
    wait_for_status(api, endpoint_id, "failed")  # two attempts: the first and one retry
    sign_in(page, hookline_server.admin_token, start=f"/dashboard/endpoints/{endpoint_id}")

    page.locator("#deliveries tbody tr a").first.click()

    expect(page.get_by_test_id("status")).to_have_text("failed")
    attempts = page.get_by_test_id("attempt")
    expect(attempts).to_have_count(2)
    expect(attempts.first.get_by_test_id("response-status")).to_have_text("500")
    expect(attempts.first.get_by_test_id("response-body")).to_have_text("nope")
    attempts.first.get_by_text("Request headers").click()
    expect(attempts.first.get_by_text("webhook-id")).to_be_visible()

    receiver.script("/flaky", [200])
    page.get_by_role("button", name="Retry").click()

    expect(page.get_by_text("The delivery is due again")).to_be_visible()
    expect(attempts).to_have_count(3)  # htmx follows the pending delivery
    expect(page.get_by_test_id("status")).to_have_text("succeeded")
    expect(attempts.nth(2).get_by_test_id("response-status")).to_have_text("200")

    # A window of failed deliveries, sent again.
    receiver.script("/flaky", [500])
    register_user(api, "third-customer")
    wait_for_status(api, endpoint_id, "failed")
    receiver.script("/flaky", [200])
    page.goto(f"/dashboard/endpoints/{endpoint_id}")
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_label("Since (UTC)").fill(since)
    page.get_by_role("button", name="Recover").click()

    expect(page.get_by_text("Deliveries of that window due again now: 1.")).to_be_visible()
    wait_for_status(api, endpoint_id, "succeeded", count=2)
    expect(page.locator("#deliveries tbody tr").first).to_contain_text("succeeded")
    assert offline.blocked == []
    assert offline.errors == []


# -- who sees what, and refusals -------------------------------------------------------------


def test_a_user_signs_in_and_sees_only_its_own(
    page: Page, offline: Offline, api: httpx.Client
) -> None:
    token = register_user(api, "portal-user")
    admins = endpoint_via_api(api, "http://127.0.0.1:9/admins-only")
    endpoint_via_api(api, "http://127.0.0.1:9/portal-users-own", token)

    sign_in(page, token)

    expect(page.get_by_test_id("who")).to_have_text("portal-user")
    expect(page.get_by_role("heading", name="Queue health")).to_have_count(0)
    expect(page.get_by_role("link", name="Events", exact=True)).to_have_count(0)
    page.get_by_role("link", name="Endpoints").click()
    rows = page.get_by_test_id("endpoints").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("/portal-users-own")
    page.goto(f"/dashboard/endpoints/{admins}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text("admins-only")).to_have_count(0)
    page.goto("/dashboard/events")
    expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    assert token not in page.content()
    assert offline.errors == []


def test_a_form_posted_without_the_csrf_token_is_refused(
    page: Page, hookline_server: Server, api: httpx.Client
) -> None:
    endpoint_id = endpoint_via_api(api, "http://127.0.0.1:9/csrf")
    sign_in(page, hookline_server.admin_token, start=f"/dashboard/endpoints/{endpoint_id}")
    form = page.locator('form[action$="/enabled"]')
    form.locator('input[name="csrf_token"]').evaluate("field => field.remove()")

    form.get_by_role("button", name="Disable").click()

    expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    expect(page.get_by_text("did not carry this session's CSRF token")).to_be_visible()
    assert api.get(f"/endpoints/{endpoint_id}").json()["enabled"] is True


def test_reading_works_with_javascript_off(
    browser: Browser, hookline_server: Server, offline: Offline, api: httpx.Client
) -> None:
    endpoint_id = endpoint_via_api(api, "http://127.0.0.1:9/no-script")
    register_user(api, "no-script-customer")
    delivery = api.get(f"/endpoints/{endpoint_id}/deliveries").json()["data"][0]
    page = new_context(browser, hookline_server, offline, java_script_enabled=False)
    try:
        sign_in(page, hookline_server.admin_token)  # a plain form post
        expect(page.get_by_role("heading", name="Queue health")).to_be_visible()
        expect(page.locator("canvas#chart")).to_be_hidden()  # no script: the table instead
        page.get_by_text("By hour, as a table").click()
        expect(page.get_by_test_id("chart-table").locator("tbody tr")).to_have_count(24)

        page.get_by_role("navigation", name="Pages").get_by_role("link", name="Endpoints").click()
        page.get_by_label("URL contains").fill("no-script")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="http://127.0.0.1:9/no-script").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("http://127.0.0.1:9/no-script")
        expect(page.locator("#deliveries tbody tr")).to_have_count(1)

        page.locator("#deliveries tbody tr a").first.click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(delivery["id"])

        page.get_by_role("link", name="user_registered").first.click()
        expect(page.get_by_test_id("data")).to_contain_text("no-script-customer")

        page.get_by_role("navigation", name="Pages").get_by_role("link", name="Events").click()
        page.get_by_label("Type").select_option("user_registered")
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_test_id("events").locator("tbody tr").first).to_contain_text(
            "user_registered"
        )

        page.get_by_role("navigation", name="Pages").get_by_role("link", name="Event types").click()
        page.get_by_role("link", name="user_send_message").click()
        expect(page.get_by_test_id("schema")).to_contain_text("recipient")
    finally:
        page.context.close()
    assert offline.blocked == []


# -- event types ----------------------------------------------------------------------------


def test_the_admin_defines_an_event_type_and_reads_its_schema(
    page: Page, hookline_server: Server, offline: Offline
) -> None:
    sign_in(page, hookline_server.admin_token, start="/dashboard/event-types")
    page.get_by_text("Create an event type").click()
    page.get_by_label("Name").fill("invoice.paid")
    page.get_by_label("Schema").fill('{"type": "object", "required": ["amount"]}')
    page.get_by_role("button", name="Create type").click()

    expect(page.get_by_text("Event type created.")).to_be_visible()
    expect(page.get_by_test_id("schema")).to_contain_text('"required": [')
    page.get_by_role("link", name="Event types").first.click()
    expect(page.get_by_role("link", name="invoice.paid")).to_be_visible()
    page.get_by_role("link", name="user_registered").click()
    expect(page.get_by_test_id("schema")).to_contain_text("registered_at")
    assert offline.errors == []
