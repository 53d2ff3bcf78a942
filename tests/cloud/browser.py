"""Debian's chromium for the browser tests, driven by Playwright: the launch, a tab that reaches nothing but the
cloud, signing in to the console, and the screenshots of docs/console.md.

The browser is the system's, never a downloaded one. A test module marks itself with ``pytestmark =
needs_chromium`` (skipped where chromium is not installed) and takes the ``browser`` fixture of
tests/cloud/conftest.py, which launches it once per module.

WebGL in headless chromium: with ``--disable-gpu`` alone there is no WebGL
context at all. Debian's chromium draws WebGL in software with SwiftShader
through ANGLE: ``--use-angle=swiftshader`` and ``--enable-unsafe-swiftshader``
(without the second switch recent chromium refuses SwiftShader for WebGL); pages
with a 3D view launch with ``WEBGL_ARGS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import expect as async_expect
from playwright.sync_api import Browser, Page, Route, ViewportSize, expect, sync_playwright

from tests.cloud.server import CloudServer

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "SHOTS", "WAIT_MS", "WEBGL_ARGS", "chromium", "cloud_tab",
           "intercepting", "needs_chromium", "screenshot", "sign_in", "token_of"]

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches chromium calls home at start, which a closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WEBGL_ARGS = [a for a in CHROMIUM_ARGS if a != "--disable-gpu"] + ["--use-angle=swiftshader",
                                                                   "--enable-unsafe-swiftshader"]
needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing); "
                                                     "deploy/scripts/system-deps.sh installs it"),
]
WAIT_MS = 20_000
# Every assertion on a page waits as long as the ones that say so: a loaded machine takes more than Playwright's
# default 5 s to render a page after a navigation, and an assertion that holds at once does not wait.
expect.set_options(timeout=WAIT_MS)
async_expect.set_options(timeout=WAIT_MS)
# Where the screenshots of docs/console.md are written: TWINEDGE_SCREENSHOTS=docs/images pytest the console tests.
SHOTS = Path(os.environ["TWINEDGE_SCREENSHOTS"]) if os.environ.get("TWINEDGE_SCREENSHOTS") else None


@contextmanager
def chromium(args: Sequence[str] = CHROMIUM_ARGS) -> Iterator[Browser]:
    """Debian's chromium, launched with ``args``."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(args))
        yield launched
        launched.close()


@contextmanager
def cloud_tab(browser: Browser, cloud: CloudServer, viewport: ViewportSize) -> Iterator[tuple[Page, list[str]]]:
    """A tab in a fresh profile in which every request for another host than the cloud's is blocked, and the
    URLs it asked for elsewhere; at the end, none may have been asked for."""
    context = browser.new_context(viewport=viewport)
    host = urlsplit(cloud.base_url).netloc
    elsewhere: list[str] = []

    def only_the_cloud(route: Route) -> None:
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("blockedbyclient")
    context.route("**/*", only_the_cloud)
    page = context.new_page()
    page.on("request", lambda r: elsewhere.append(r.url) if urlsplit(r.url).netloc != host else None)
    yield page, elsewhere
    context.close()
    assert elsewhere == []


@contextmanager
def intercepting(page: Page, wanted: Callable[[str], bool], handler: Callable[[Route], None]) -> Iterator[None]:
    """Inside the block ``handler`` answers the tab's requests whose URL is ``wanted``; every other request, and
    every one after the block, goes on to the tab's other handlers.

    The route stays on the page and only stops matching: ``Page.unroute`` of a page's last route hands each request
    then in flight at the page to the next handler while this one may be answering it too, and one of the two
    fails with "Route is already handled!"."""
    active = True
    page.route(lambda url: active and wanted(url), handler)
    try:
        yield
    finally:
        active = False


def token_of(cloud: CloudServer, role: str) -> str:
    """The token of the cloud's viewer, operator or admin (the operator is made by the test module's cloud)."""
    return {"viewer": cloud.viewer_token, "operator": cloud.operator_token,  # type: ignore[attr-defined]
            "admin": cloud.admin_token}[role]


def sign_in(page: Page, cloud: CloudServer, token: str, path: str = "/") -> None:
    """Open ``path`` signed out, which leads to the sign-in form, and sign in there with ``token``."""
    page.goto(cloud.base_url + path)
    expect(page).to_have_url(f"{cloud.base_url}/login?next={quote(path, safe='/')}")
    page.get_by_label("Your token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def screenshot(page: Page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / name))
