"""/docs (Swagger UI) and /redoc (ReDoc) render hookline's API in a real browser that can reach
nothing but this machine: their scripts, styles and icon come from hookline, not a CDN."""

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Offline

pytestmark = pytest.mark.e2e


def test_swagger_ui_shows_the_operations_offline(page: Page, offline: Offline) -> None:
    page.goto("/docs")

    expect(page.locator(".information-container .title")).to_contain_text("hookline")
    register = page.locator(".opblock.opblock-post").filter(
        has=page.locator('.opblock-summary-path[data-path="/users"]')
    )
    expect(register).to_be_visible()
    register.locator(".opblock-summary-control").click()  # opens it: its parameters and body
    expect(register.get_by_text("Request body")).to_be_visible()
    # The event types' webhooks, from the same schema.
    expect(page.locator(".opblock-summary-path", has_text="user_registered")).to_be_visible()
    assert offline.blocked == []
    assert offline.errors == []
    _assert_the_icon_comes_from_hookline(page)


def test_redoc_shows_the_api_offline(page: Page, offline: Offline) -> None:
    page.goto("/redoc")

    expect(page.get_by_role("heading", name="hookline (0.1.0)")).to_be_visible()
    operation = page.locator("h2", has_text="Register User")
    expect(operation).to_be_visible()
    expect(
        page.locator('[data-section-id="tag/users/operation/register_user_users_post"]')
    ).to_be_attached()
    assert offline.blocked == []
    assert offline.errors == []
    _assert_the_icon_comes_from_hookline(page)


def _assert_the_icon_comes_from_hookline(page: Page) -> None:
    icon = page.locator('link[rel="shortcut icon"]').get_attribute("href")
    assert icon is not None and icon.startswith("/static/"), icon
    response = page.request.get(icon)
    assert (response.status, response.headers["content-type"]) == (200, "image/png")
