"""The console in a real browser: Debian's chromium, driven by Playwright, against a real twincloud process.

The cloud is fed by a real sync (two edges, three machines, one open alert).
A person signs in with a viewer's, operator's or admin's token and sees the
fleet; a wrong token gets a sentence; the session cookie is HttpOnly and
SameSite=Strict; a page of another site that posts to the API with the
cookie is refused by the server; signing out ends the session on the server.
Every request any page makes goes to the cloud's own host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from cloud.console import PAGES
from cloud.sessions import SESSION_COOKIE
from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.browser import WAIT_MS, cloud_tab, intercepting, needs_chromium, screenshot, sign_in, token_of
from tests.cloud.server import CloudServer
from tests.support import free_port

pytestmark = needs_chromium


def sync(cloud: CloudServer, edge: str, devices: list[str], alerts: list[dict] | None = None) -> None:
    now = time.time()
    frames = [(i + 1, {**wire(0, device=d), "ts": now - 5 + i}) for i, d in enumerate(devices)]
    body = batch(edge, frames, queue_depth=12)
    body["alerts"] = alerts or []
    resp = httpx.post(cloud.base_url + "/api/v1/sync/batches", content=encode_obj(body), timeout=10,
                      headers={**auth(cloud.edge_tokens[edge]), "Content-Type": "application/msgpack"})
    assert resp.status_code == 200 and resp.json()["stored"] == len(devices), resp.text


def online(cloud: CloudServer) -> None:
    """Both edges synced a moment ago: the kiosk greens a machine only while its edge is online (synced within
    the last minute), and the module's earlier tests may have taken longer than that on a loaded machine."""
    sync(cloud, "line-1", ["press-1", "press-2"])
    sync(cloud, "line-2", ["mixer-1"])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("console"), edges=["line-1", "line-2"]) as server:
        server.operator_token = server.add_person("olga", "operator")
        alert = {"seq": 1, "alert": {"alert_id": "a-1", "event": "raised", "device_id": "press-2", "ts": time.time(),
                                     "model": "bearing", "version": 1, "score": 0.9, "threshold": 0.5,
                                     "message": "bearing vibration unusual"}}
        sync(server, "line-1", ["press-1", "press-2"], [alert])
        sync(server, "line-2", ["mixer-1"])
        yield server


@pytest.fixture
def asked(cloud: CloudServer, browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A tab in a fresh profile, and every URL it asked for elsewhere than the cloud's host: none may be."""
    with cloud_tab(browser, cloud, {"width": 1280, "height": 800}) as tab:
        yield tab


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_each_role_signs_in_and_sees_the_fleet_of_a_synced_cloud(cloud: CloudServer, asked, role: str) -> None:
    page, _ = asked
    sign_in(page, cloud, token_of(cloud, role))
    expect(page).to_have_url(cloud.base_url + "/")
    names = {"viewer": "test-viewer", "operator": "olga", "admin": "test-admin"}
    expect(page.locator(".who")).to_have_text(f"{names[role]} ({role})")
    line1 = page.locator("tr.edge[data-edge=line-1]")
    expect(line1).to_contain_text("online", timeout=WAIT_MS)
    expect(line1).to_contain_text("alert")
    expect(line1.locator("td.num").first).to_have_text("12")  # the queue depth the edge reported
    expect(page.locator("tr.edge[data-edge=line-2]")).to_contain_text("online")
    expect(page.locator("tr.device")).to_have_count(3)
    expect(page.locator("tr.device[data-device=press-2]")).to_contain_text("1 alert")
    expect(page.locator("#fleet-status")).to_contain_text("2 of 2 edges online")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["secure"] is False
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    if role == "admin":
        screenshot(page, "console-fleet.png")


def test_search_and_sort_the_fleet(cloud: CloudServer, asked) -> None:
    page, _ = asked
    sign_in(page, cloud, cloud.viewer_token)
    expect(page.locator("tr.device")).to_have_count(3, timeout=WAIT_MS)
    page.get_by_label("Search").fill("mixer")
    expect(page.locator("tr.edge")).to_have_count(1)
    expect(page.locator("tr.device")).to_have_count(1)
    expect(page.locator("tr.device td.device-name")).to_have_text("mixer-1")
    expect(page.locator("tr.edge[data-edge=line-2]")).to_be_visible()
    page.get_by_label("Search").fill("nothing-like-this")
    expect(page.locator("td.empty")).to_have_text("No edge or device matches the search.")
    page.get_by_label("Search").fill("")
    page.get_by_label("Sort by").select_option("name")
    expect(page.locator("tr.edge")).to_have_count(2)
    assert page.locator("tr.edge").evaluate_all("rows => rows.map(r => r.dataset.edge)") == ["line-1", "line-2"]


def test_a_wrong_token_is_refused_with_a_plain_message(cloud: CloudServer, asked) -> None:
    page, _ = asked
    sign_in(page, cloud, "twu_this-is-not-a-token")
    expect(page.get_by_role("alert")).to_have_text(
        "That token was not accepted: it is unknown, or it has been rotated or revoked.")
    assert [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE] == []
    page.get_by_label("Your token").fill(cloud.edge_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("An edge's token cannot sign in to the console")


def test_sign_out_ends_the_session_on_the_server(cloud: CloudServer, asked) -> None:
    page, _ = asked
    sign_in(page, cloud, cloud.operator_token)  # type: ignore[attr-defined]
    expect(page.locator("tr.edge")).to_have_count(2, timeout=WAIT_MS)
    kept = next(c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(cloud.base_url + "/login")
    replay = httpx.get(cloud.base_url + "/api/v1/edges", cookies={SESSION_COOKIE: kept}, timeout=10)
    assert replay.status_code == 401 and "your console session has ended" in replay.text
    page.goto(cloud.base_url + "/")
    expect(page).to_have_url(f"{cloud.base_url}/login?next=/")


class _Elsewhere(BaseHTTPRequestHandler):
    """Another site's page (another port of the same host: same site for the browser, so the cookie goes along)
    that posts a form to the cloud's API as soon as it loads."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        page = (f'<!DOCTYPE html><form id="f" method="post" action="{self.target}/api/v1/devices">'
                '<input name="name" value="planted"><input name="edge" value="line-1"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_site_post_without_the_csrf_header_is_refused_by_the_server(cloud: CloudServer,
                                                                            browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, cloud, cloud.admin_token)
    expect(page.locator("tr.edge")).to_have_count(2, timeout=WAIT_MS)
    _Elsewhere.target = cloud.base_url
    other = ThreadingHTTPServer(("127.0.0.1", free_port()), _Elsewhere)
    threading.Thread(target=other.serve_forever, name="other-site", daemon=True).start()
    try:
        with page.expect_response(lambda r: r.url.endswith("/api/v1/devices")) as answer:
            page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        sent = answer.value.request.all_headers()
        assert SESSION_COOKIE in sent.get("cookie", "")  # the browser sent the cookie: the server refused
        assert answer.value.status == 403
    finally:
        other.shutdown()
        other.server_close()
        context.close()
    devices = httpx.get(cloud.base_url + "/api/v1/devices", headers=auth(cloud.admin_token), timeout=10).json()
    assert "planted" not in [d["name"] for d in devices]


def test_the_pages_not_built_yet_say_so_and_the_kiosk_shows_a_red_tile(cloud: CloudServer, asked) -> None:
    page, _ = asked
    online(cloud)
    sign_in(page, cloud, cloud.viewer_token)
    expect(page.locator("tr.edge")).to_have_count(2, timeout=WAIT_MS)
    for name in [title for title, built in PAGES.values() if not built]:
        page.get_by_role("link", name=name).click()
        expect(page.locator("main")).to_contain_text(f"The {name} page is not built yet.")
    page.goto(cloud.base_url + "/kiosk")
    red = page.locator(".tile[data-device=press-2]")
    expect(red).to_contain_text("bearing vibration unusual", timeout=WAIT_MS)
    assert red.evaluate("t => getComputedStyle(t).backgroundColor") == "rgb(198, 40, 40)"
    green = page.locator(".tile[data-device=mixer-1]")
    assert green.evaluate("t => getComputedStyle(t).backgroundColor") == "rgb(27, 127, 59)"
    screenshot(page, "console-kiosk.png")


def test_a_kiosk_that_cannot_refresh_says_so_and_shows_no_stale_green(cloud: CloudServer, asked) -> None:
    """The service stops answering the kiosk (a network cut, a restart): its tiles must not go on showing a
    machine as running from data that is no longer refreshed."""
    page, _ = asked
    online(cloud)
    sign_in(page, cloud, cloud.viewer_token, "/kiosk")
    green = page.locator(".tile[data-device=mixer-1]")
    expect(green).to_have_class("tile ok", timeout=WAIT_MS)
    with intercepting(page, lambda url: urlsplit(url).path == "/api/v1/edges", lambda route: route.fulfill(
            status=503, json={"detail": [{"path": "database", "message": "the database does not answer"}]})):
        expect(page.locator(".kiosk-stale")).to_contain_text("the service does not answer", timeout=WAIT_MS)
        expect(page.locator(".kiosk-stale")).to_contain_text("the database does not answer")
        assert green.evaluate("t => getComputedStyle(t).backgroundColor") == "rgb(74, 85, 99)"  # grey, not green
        red = page.locator(".tile[data-device=press-2]")
        assert red.evaluate("t => getComputedStyle(t).backgroundColor") == "rgb(198, 40, 40)"  # an alert stays red
    expect(page.locator(".kiosk-stale")).to_have_count(0, timeout=WAIT_MS)
    assert green.evaluate("t => getComputedStyle(t).backgroundColor") == "rgb(27, 127, 59)"
