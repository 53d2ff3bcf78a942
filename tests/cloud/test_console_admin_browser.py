"""The Models and Admin pages in a real browser: Debian's chromium (Playwright) against a real twincloud process.

Two versions of a model are uploaded and an edge reports a device's drift by
a real sync. An operator assigns version 2 to one edge (canary), then to the
fleet, and rolls the fleet back to version 1, all in the page; a viewer sees
the registry, cards and drift but no assign or token button, and the server
refuses a viewer's assignment and token rotation when the page is bypassed
(the same cookie and CSRF header the page would send). An admin rotates an
edge's token in the page: the new token is shown once and the old one gets 401
on a real sync. Every request any page makes goes to the cloud's host; the
tabs block every other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.browser import WAIT_MS, cloud_tab, needs_chromium, screenshot, sign_in, token_of
from tests.cloud.server import CloudServer
from tests.mlkit import make_package

pytestmark = needs_chromium


def _sync(cloud: CloudServer, edge: str, token: str, models: dict | None = None) -> httpx.Response:
    body = batch(edge, [(1, {**wire(0, device="press-1"), "ts": time.time()})])
    if models:
        body["health"]["models"] = models
    return httpx.post(cloud.base_url + "/api/v1/sync/batches", content=encode_obj(body), timeout=10,
                      headers={**auth(token), "Content-Type": "application/msgpack"})


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("models"), edges=["line-1", "line-2"]) as server:
        server.operator_token = server.add_person("olga", "operator")
        for _ in range(2):
            data, _package = make_package(name="bearing")
            up = httpx.post(server.base_url + "/api/v1/models", content=data, timeout=30,
                            headers={**auth(server.operator_token), "Content-Type": "application/zip"})
            assert up.status_code == 201, up.text
        drift = {"press-1": {"model": "bearing", "version": 1, "sha256": "ab" * 32, "state": "serving",
                             "last_score": 0.3, "last_scored_at": time.time(), "drift": "drift",
                             "psi": {"temp": 0.05, "vib": 0.31}, "rows": 1000}}
        assert _sync(server, "line-1", server.edge_tokens["line-1"], drift).status_code == 200
        yield server


@pytest.fixture
def tab(cloud: CloudServer, browser: Browser) -> Iterator[Page]:
    """A tab whose every request to another host is blocked (and recorded: there must be none)."""
    with cloud_tab(browser, cloud, {"width": 1400, "height": 1000}) as (page, _):
        yield page


def _bypass(page: Page, method: str, path: str, body: dict | None = None) -> int:
    """A request the page's own session sends from a script, with the CSRF header: what the server says."""
    return page.evaluate("""async ([method, path, body]) => {
        const {csrf} = await (await fetch("/api/v1/session")).json();
        const init = {method, headers: {"X-CSRF-Token": csrf, "Content-Type": "application/json"}};
        if (body) { init.body = JSON.stringify(body); }
        return (await fetch(path, init)).status;
    }""", [method, path, body])


def test_an_operator_rolls_a_model_out_to_one_edge_then_the_fleet_and_back(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, token_of(cloud, "operator"), "/models")
    card = tab.locator("article.card[data-model=bearing]")
    expect(card).to_have_attribute("data-version", "2", timeout=WAIT_MS)
    expect(card).to_contain_text("FP32")
    expect(card).to_contain_text("test.csv")
    expect(card.locator("table").nth(1)).to_contain_text("temp")
    expect(tab.locator("#drift-table tr[data-device=press-1]")).to_contain_text("vib 0.31")
    expect(tab.locator("#drift-table tr[data-device=press-1] .badge")).to_have_text("drift")
    tab.locator("#assign-model").select_option("bearing")
    tab.locator("#assign-version").select_option("2")
    tab.locator("#assign-edge").select_option("line-1")
    tab.get_by_role("button", name="Assign to this edge (canary)").click()
    expect(tab.locator("#rules-table tr[data-rule='edge:line-1']")).to_contain_text("bearing v2", timeout=WAIT_MS)
    tab.get_by_role("button", name="Assign to the fleet").click()
    fleet = tab.locator("#rules-table tr[data-rule='fleet:']")
    expect(fleet).to_contain_text("bearing v2", timeout=WAIT_MS)
    screenshot(tab, "console-models.png")
    fleet.get_by_role("button", name="Roll back to v1").click()
    expect(fleet).to_contain_text("bearing v1", timeout=WAIT_MS)
    rules = httpx.get(cloud.base_url + "/api/v1/model-assignments", headers=auth(cloud.viewer_token), timeout=10)
    assert {(r["scope"], r["target"], r["version"]) for r in rules.json()} == {("edge", "line-1", 2),
                                                                              ("fleet", None, 1)}


def test_a_viewer_sees_no_assign_or_token_button_and_the_server_refuses_them(cloud: CloudServer,
                                                                           tab: Page) -> None:
    sign_in(tab, cloud, cloud.viewer_token, "/models")
    expect(tab.locator("article.card[data-model=bearing]")).to_be_visible(timeout=WAIT_MS)
    expect(tab.locator("#rules-table")).to_be_visible()
    expect(tab.get_by_role("button")).to_have_count(1)  # sign out, nothing else
    expect(tab.get_by_role("link", name="Admin")).to_have_count(0)
    assert _bypass(tab, "PUT", "/api/v1/model-assignments",
                   {"scope": "fleet", "model": "bearing", "version": 2}) == 403
    assert _bypass(tab, "POST", "/api/v1/edges/line-2/token") == 403
    assert _bypass(tab, "PUT", "/api/v1/users/test-viewer/role", {"role": "admin"}) == 403
    tab.goto(cloud.base_url + "/admin")
    expect(tab.locator("main")).to_contain_text("The Admin page is for the admin role; you are signed in as viewer.")
    assert _sync(cloud, "line-2", cloud.edge_tokens["line-2"]).status_code == 200  # line-2's token still works


def test_an_admin_rotates_an_edge_token_and_the_old_one_is_refused(cloud: CloudServer, tab: Page) -> None:
    old = cloud.edge_tokens["line-2"]
    sign_in(tab, cloud, cloud.admin_token, "/admin")
    row = tab.locator("#edges-table tr[data-edge=line-2]")
    expect(row).to_contain_text("valid", timeout=WAIT_MS)
    tab.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="New token").click()
    shown = tab.locator("#token-value")
    expect(shown).to_contain_text("twe_", timeout=WAIT_MS)
    new = shown.text_content() or ""
    assert new != old
    screenshot(tab, "console-admin.png")
    refused = _sync(cloud, "line-2", old)
    assert refused.status_code == 401
    assert _sync(cloud, "line-2", new).status_code == 200
    cloud.edge_tokens["line-2"] = new
    tab.reload()
    expect(tab.locator("#token-value")).to_have_count(0)  # shown once: gone after a reload
    person = tab.locator("#people-table tr[data-person=olga]")
    person.get_by_label("role of olga").select_option("viewer")
    expect(tab.locator("#admin-status")).to_contain_text("olga is now viewer", timeout=WAIT_MS)
    users = httpx.get(cloud.base_url + "/api/v1/users", headers=auth(cloud.admin_token), timeout=10).json()
    assert {u["name"]: u["role"] for u in users}["olga"] == "viewer"
