"""Browser tests: Debian's Chromium driven by Playwright, against a real `hookline serve`.

    def test_something(page: Page, hookline_server: Server, offline: Offline) -> None:
        page.goto("/docs")                    # relative to the server's base URL
        ...
        assert offline.blocked == []          # nothing was asked of another host
        assert offline.errors == []           # no uncaught error in the page's scripts

Fixtures, for every test under tests/browser/:
- `browser`: one headless Chromium for this folder's tests: /usr/bin/chromium (or
  HOOKLINE_TEST_CHROMIUM), never a browser that Playwright downloads. Without it the tests
  skip locally (`make chromium` installs Debian's) and fail under CI=true.
- `hookline_server`: one `hookline serve` for this folder's tests, on SQLite in a temporary
  data dir and a free port, with the admin token it generated at its first start.
- `page`: a new page in a context of its own (no cookies or storage of another test) whose
  relative URLs go to the server. It reaches only this machine: a request to any other host
  is aborted and its URL kept in `offline.blocked`; uncaught script errors go to
  `offline.errors`.

Playwright's sync API marks its event loop as running in this thread while it is started, so
asyncio.run() (and pytest-asyncio) cannot run beside it: the fixtures live for this folder
only (package scope), and anything async they do runs in a thread of its own (`run_async`).
"""

import asyncio
import os
import shutil
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

from tests.conftest import IN_CI
from tests.support.process import ServeProcess, clean_environ, free_port

T = TypeVar("T")

CHROMIUM = os.environ.get("HOOKLINE_TEST_CHROMIUM", "/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# A page that takes longer than this to show what a test waits for is broken, not slow.
TIMEOUT_MS = 15_000


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from a sync test or fixture, beside Playwright's loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True)
class Server:
    base_url: str
    admin_token: str
    data_dir: Path
    process: ServeProcess

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@dataclass
class Offline:
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _chromium() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        why = f"no Chromium at {CHROMIUM}: `make chromium` installs Debian's"
        if IN_CI:
            pytest.fail(f"{why}; CI must run the browser tests (.ci/run installs it)")
        pytest.skip(why)
    return found


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    _chromium()  # skip or fail before Playwright's driver starts
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=_chromium(), headless=True)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="package")
def hookline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("browser-serve")
    data_dir = workdir / "data"
    port = free_port()
    env = clean_environ(HOOKLINE_DATA_DIR=str(data_dir), HOOKLINE_PORT=str(port))
    with ServeProcess(workdir, env=env, port=port) as serve:
        run_async(serve.start())
        token = (data_dir / "admin-token").read_text().strip()
        yield Server(serve.base_url, token, data_dir, serve)
        code = run_async(serve.terminate(timeout=15))
        assert code == 0, f"hookline serve exited with {code}:\n{serve.log_text()}"


@pytest.fixture
def offline() -> Offline:
    return Offline()


@pytest.fixture
def page(browser: Browser, hookline_server: Server, offline: Offline) -> Iterator[Page]:
    context = browser.new_context(base_url=hookline_server.base_url)
    context.set_default_timeout(TIMEOUT_MS)

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            offline.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", local_only)
    opened = context.new_page()
    opened.on("pageerror", lambda error: offline.errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
