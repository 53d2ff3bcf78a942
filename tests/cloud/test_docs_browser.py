"""/docs in a real browser: Debian's chromium, driven by Playwright, against a real twincloud process.

What a person sees: with ``server.api_docs = "token"`` the page asks for a
token and lists no operation until a person's token is typed, then every
operation of the API map, still after a reload; a wrong token gets a message
saying so and no operation; "Try it out" sends the token. ``"public"`` shows
the operations at once, ``"off"`` serves no page. The browser is the
system's (never a downloaded one) and reaches nothing but the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Response, expect

from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.browser import needs_chromium
from tests.cloud.server import CloudServer

pytestmark = needs_chromium

OPERATION = ".opblock"  # Swagger UI draws one block per operation
OPENAPI = "/openapi.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
WAIT_MS = 20_000  # on a loaded machine (the suite runs in parallel) Swagger UI may take a while to draw the map


def operations(spec: dict) -> int:
    """How many operations an OpenAPI document has: what the page must list."""
    return sum(method in METHODS for item in spec["paths"].values() for method in item)


def the_map(server: CloudServer, token: str | None) -> dict:
    resp = httpx.get(server.base_url + OPENAPI, headers=auth(token) if token else {}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    """The default config (api_docs = "token"), with one device stored."""
    with CloudServer(tmp_path_factory.mktemp("docs")) as cloud:
        body = encode_obj(batch("edge-1", [(1, wire(0, device="press-1"))]))
        stored = httpx.post(cloud.base_url + "/api/v1/sync/batches", content=body, timeout=10,
                            headers={**auth(cloud.edge_token), "Content-Type": "application/msgpack"})
        assert stored.status_code == 200 and stored.json()["stored"] == 1
        yield cloud


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab in a fresh profile: nothing kept from another test."""
    context = browser.new_context()
    yield context.new_page()
    context.close()


def watch(page: Page) -> tuple[list[str], list[Response]]:
    """Every URL the page asks for, and the answers it got for the API map."""
    asked: list[str] = []
    maps: list[Response] = []
    page.on("request", lambda request: asked.append(request.url))
    page.on("response", lambda response: maps.append(response) if response.url.endswith(OPENAPI) else None)
    return asked, maps


def give_token(page: Page, token: str) -> None:
    page.get_by_label("The API map needs a token").fill(token)
    page.get_by_role("button", name="Show the API").click()


def elsewhere(asked: list[str], server: CloudServer) -> list[str]:
    return [url for url in asked if urlsplit(url).netloc != urlsplit(server.base_url).netloc]


def test_the_operations_appear_only_after_a_persons_token_and_stay_after_a_reload(
        server: CloudServer, page: Page) -> None:
    expected = operations(the_map(server, server.viewer_token))
    assert expected > 20  # the map the service serves: sync, twin, admin and physics routes
    asked, maps = watch(page)
    page.goto(server.base_url + "/docs", wait_until="networkidle")
    expect(page.get_by_label("The API map needs a token")).to_be_visible()
    expect(page.locator(OPERATION)).to_have_count(0)
    assert maps == []  # the page does not ask for the map without a token
    refused = page.context.new_page().goto(server.base_url + OPENAPI)  # the map's address typed in another tab
    assert refused is not None and refused.status == 401
    assert refused.json()["detail"][0]["message"] == "send 'Authorization: Bearer <token>'"

    give_token(page, server.viewer_token)
    expect(page.locator(OPERATION)).to_have_count(expected, timeout=WAIT_MS)
    expect(page.locator('.opblock-summary-path[data-path="/api/v1/twin/history"]')).to_be_visible()
    assert [r.status for r in maps] == [200]

    page.reload(wait_until="networkidle")
    expect(page.locator(OPERATION)).to_have_count(expected, timeout=WAIT_MS)
    assert [r.status for r in maps] == [200, 200]
    assert page.get_by_label("The API map needs a token").input_value() == ""  # kept, not shown

    other_tab = page.context.new_page()  # the token is kept in this tab only
    other_tab.goto(server.base_url + "/docs", wait_until="networkidle")
    expect(other_tab.get_by_label("The API map needs a token")).to_be_visible()
    expect(other_tab.locator(OPERATION)).to_have_count(0)
    assert elsewhere(asked, server) == []


def test_try_it_out_sends_the_typed_token(server: CloudServer, page: Page) -> None:
    page.goto(server.base_url + "/docs")
    give_token(page, server.viewer_token)
    operation = page.locator(OPERATION, has=page.locator('[data-path="/api/v1/twin/devices"]'))
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/twin/devices") as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.request.headers["authorization"] == f"Bearer {server.viewer_token}"
    assert answer.value.status == 200 and answer.value.json() == ["press-1"]
    shown = operation.locator(".live-responses-table tbody")  # what the person reads under "Server response"
    expect(shown.locator(".response-col_status")).to_have_text("200")
    expect(shown).to_contain_text("press-1")


@pytest.mark.parametrize(("who", "message"), [
    pytest.param("unknown", "The service refused this token (401: unknown or revoked token).", id="unknown"),
    pytest.param("edge", "This token may not read the API map (403: an edge token cannot be used here; "
                         "this needs a person's token).", id="edge"),
])
def test_a_refused_token_gets_a_message_and_no_operations(server: CloudServer, page: Page, who: str,
                                                          message: str) -> None:
    token = {"unknown": "not-a-token", "edge": server.edge_token}[who]
    page.goto(server.base_url + "/docs")
    give_token(page, server.viewer_token)  # a map shown already: a refused token takes it away
    expect(page.locator(OPERATION).first).to_be_visible(timeout=WAIT_MS)

    give_token(page, token)
    expect(page.get_by_role("alert")).to_have_text(message)
    expect(page.locator(OPERATION)).to_have_count(0)

    _, maps = watch(page)
    page.reload(wait_until="networkidle")  # a refused token is not kept: the page asks again
    expect(page.get_by_label("The API map needs a token")).to_be_visible()
    expect(page.locator(OPERATION)).to_have_count(0)
    assert maps == []


def test_public_docs_show_the_operations_without_a_token(tmp_path: Path, page: Page) -> None:
    with CloudServer(tmp_path, server_options='api_docs = "public"') as server:
        expected = operations(the_map(server, None))
        asked, _ = watch(page)
        page.goto(server.base_url + "/docs")
        expect(page.locator(OPERATION)).to_have_count(expected, timeout=WAIT_MS)
        expect(page.get_by_label("The API map needs a token")).to_have_count(0)
        assert elsewhere(asked, server) == []


def test_docs_off_serve_no_page(tmp_path: Path, browser: Browser) -> None:
    with CloudServer(tmp_path, server_options='api_docs = "off"') as server:
        for headers, status in (({}, 401), (auth(server.viewer_token), 404)):  # 401 without a token, like any path
            context = browser.new_context(extra_http_headers=headers)
            try:
                tab = context.new_page()
                answer = tab.goto(server.base_url + "/docs")
                assert answer is not None and answer.status == status
                expect(tab.locator("#swagger-ui")).to_have_count(0)
                expect(tab.get_by_label("The API map needs a token")).to_have_count(0)
            finally:
                context.close()
