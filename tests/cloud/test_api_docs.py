"""/docs works on a plant network without internet: every asset comes from the service itself.

The app runs behind httpx.ASGITransport, so there is no network at all: the
page works here only if everything it loads is served by the cloud. Each URL
the page references (script, style sheet, icon, the OpenAPI document, and the
url() references inside the style sheet) is fetched through the app.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from tests.cloud.apiclient import Api

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
    # Swagger UI takes the OpenAPI document's URL in its inline script: url: '/openapi.json'
    return parser.urls + re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", page)


async def _fetch_local(api: Api, url: str) -> tuple[str, bytes]:
    absolute = urljoin(BASE + "/docs", url)
    assert urlsplit(absolute).netloc == urlsplit(BASE).netloc, f"{url} is loaded from another host"
    resp = await api.client.get(absolute)
    assert resp.status_code == 200, (url, resp.status_code)
    suffix = re.search(r"\.[a-z]+$", urlsplit(absolute).path)
    assert suffix is not None and TYPES[suffix.group()] in resp.headers["content-type"], (url, resp.headers)
    return resp.headers["content-type"], resp.content


async def test_the_api_page_loads_everything_from_the_service_itself(api: Api) -> None:
    resp = await api.client.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert not re.findall(r"(?:https?:)?//[\w.-]+", html.replace("http://www.w3.org", "")), "absolute URL in page"
    urls = _references(html)
    assert {".js", ".css", ".png", ".json"} <= {urlsplit(u).path[urlsplit(u).path.rfind("."):] for u in urls}, urls
    for url in urls:
        content_type, body = await _fetch_local(api, url)
        if "text/css" in content_type:  # what a style sheet pulls in: data: URIs or files of ours only
            for ref in re.findall(rb"url\(\s*['\"]?([^'\")]+)", body):
                if not ref.startswith(b"data:"):
                    await _fetch_local(api, urljoin(urljoin(BASE + "/docs", url), ref.decode()))


async def test_swagger_ui_asks_no_online_validator_and_no_cdn_page_is_left(api: Api) -> None:
    html = (await api.client.get("/docs")).text
    assert '"validatorUrl": null' in html
    assert (await api.client.get("/redoc")).status_code == 404  # its bundle loads a logo from the internet
