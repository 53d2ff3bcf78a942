"""/docs works on a plant network without internet, and serves the API map only as server.api_docs says.

The app runs behind httpx.ASGITransport, so there is no network at all: the
page works here only if everything it loads is served by the cloud. Each URL
the page references (script, style sheet, icon, the OpenAPI document, and the
url() references inside the style sheet) is fetched through the app.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.cloud.apiclient import Api, auth, make_api

BASE = "http://cloud.test"
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


class _References(HTMLParser):
    """Every src/href/spec-url attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


def _references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    # the inline script fetches the OpenAPI document itself: fetch('/openapi.json', ...)
    return parser.urls + re.findall(r"""\bfetch\(\s*['"]([^'"]+)['"]""", page)


async def _fetch_local(api: Api, url: str, token: str | None) -> tuple[str, bytes]:
    absolute = urljoin(BASE + "/docs", url)
    assert urlsplit(absolute).netloc == urlsplit(BASE).netloc, f"{url} is loaded from another host"
    resp = await api.client.get(absolute, headers=auth(token) if token else {})
    assert resp.status_code == 200, (url, resp.status_code)
    suffix = re.search(r"\.[a-z]+$", urlsplit(absolute).path)
    assert suffix is not None and TYPES[suffix.group()] in resp.headers["content-type"], (url, resp.headers)
    return resp.headers["content-type"], resp.content


@pytest.mark.parametrize("mode", ["public", "token"])
async def test_the_api_page_loads_everything_from_the_service_itself(tmp_path: Path, mode: str) -> None:
    async with make_api(tmp_path, server={"api_docs": mode}) as api:
        token = api.viewer if mode == "token" else None  # what the page sends once a person typed it
        resp = await api.client.get("/docs")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        html = resp.text
        assert not re.findall(r"(?:https?:)?//[\w.-]+", html.replace("http://www.w3.org", "")), "absolute URL"
        urls = _references(html)
        assert {".js", ".css", ".png", ".json"} <= {urlsplit(u).path[urlsplit(u).path.rfind("."):] for u in urls}
        for url in urls:
            content_type, body = await _fetch_local(api, url, token)
            if "text/css" in content_type:  # what a style sheet pulls in: data: URIs or files of ours only
                for ref in re.findall(rb"url\(\s*['\"]?([^'\")]+)", body):
                    if not ref.startswith(b"data:"):
                        await _fetch_local(api, urljoin(urljoin(BASE + "/docs", url), ref.decode()), token)


async def test_swagger_ui_asks_no_online_validator_and_no_cdn_page_is_left(api: Api) -> None:
    html = (await api.client.get("/docs")).text
    assert '"validatorUrl": null' in html
    assert (await api.client.get("/redoc", headers=auth(api.viewer))).status_code == 404  # it loads a remote logo


async def test_by_default_the_api_map_needs_a_persons_token_and_the_page_asks_for_one(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200 and 'id="token-form"' in page.text and "sessionStorage" in page.text
    assert (await api.client.get("/docs/assets/swagger-ui.css")).status_code == 200
    refused = await api.client.get("/openapi.json")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert (await api.client.get("/openapi.json", headers=auth(api.edge))).status_code == 403
    spec = await api.client.get("/openapi.json", headers=auth(api.viewer))
    assert spec.status_code == 200 and "/api/v1/twin/history" in spec.json()["paths"]


async def test_public_docs_serve_the_map_to_anyone(tmp_path: Path) -> None:
    async with make_api(tmp_path, server={"api_docs": "public"}) as api:
        page = (await api.client.get("/docs")).text
        assert 'id="token-form"' not in page and "showApi(null)" in page
        assert "/api/v1/sync/batches" in (await api.client.get("/openapi.json")).json()["paths"]


async def test_docs_off_serve_neither_page_nor_map(tmp_path: Path) -> None:
    async with make_api(tmp_path, server={"api_docs": "off"}) as api:
        for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
            assert (await api.client.get(path)).status_code == 401, path  # like any route, without a token
            assert (await api.client.get(path, headers=auth(api.viewer))).status_code == 404, path
        assert "/api/v1/sync/batches" in api.app.openapi()["paths"]  # still generated for whoever builds it
