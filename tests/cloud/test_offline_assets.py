"""Nothing the service serves makes a browser reach another host: every console page, `/login`, `/docs`, and
every file under the console's assets (the vendored libraries included) and the API docs' assets, as served by a
real twincloud.

The browser tests block other hosts and fail when a page asked for one; this reads what is served instead, so a
reference that only some path would follow (a source map, a font in a stylesheet, an `@import`, a module
imported from a CDN, a file served but not yet used) is found too. A URL in a comment, a warning's text or a link
a person may click is not loaded by the browser and is not counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from cloud.console import ASSETS, KIOSK, PAGES
from cloud.console.pages import STATIC
from tests.cloud.apiclient import auth
from tests.cloud.server import CloudServer

DOCS_ASSETS = "/docs/assets"
_ELSEWHERE = r"""(?:(?:https?|wss?|ftp):)?//"""
_QUOTE = r"""["'`]"""
# What makes a browser send a request by itself, each with the (absolute) URL it would ask for.
LOADED = [
    ("an element's src", re.compile(rf"""<(?:script|img|iframe|frame|source|track|video|audio|embed|input|image)"""
                                   rf"""\b[^>]*?\s(?:src|poster|data)\s*=\s*["']?"""
                                   rf"""(?P<url>{_ELSEWHERE}[^"'\s>]+)""", re.I)),
    ("a <link>", re.compile(rf"""<link\b[^>]*?\shref\s*=\s*["']?(?P<url>{_ELSEWHERE}[^"'\s>]+)""", re.I)),
    ("a srcset", re.compile(rf"""\ssrcset\s*=\s*["']?[^"'>]*?(?P<url>{_ELSEWHERE}[^"'\s>,]+)""", re.I)),
    ("a CSS url()", re.compile(rf"""url\(\s*["']?(?P<url>{_ELSEWHERE}[^"')\s]+)""", re.I)),
    ("an @import", re.compile(rf"""@import\s+(?:url\()?\s*["'](?P<url>{_ELSEWHERE}[^"']+)""", re.I)),
    ("a module import", re.compile(rf"""\b(?:import|export)\b[^;"'`()]*?\bfrom\s*{_QUOTE}(?P<url>{_ELSEWHERE}"""
                                   rf"""[^"'`]+)""")),
    ("a bare or dynamic import", re.compile(rf"""(?<![@\w.])import\s*\(?\s*{_QUOTE}(?P<url>{_ELSEWHERE}[^"'`]+)""")),
    ("a source map", re.compile(r"""[#@]\s*sourceMappingURL\s*=\s*(?P<url>[^\s*]+)""")),
    ("a worker or script", re.compile(rf"""\b(?:importScripts|Worker|SharedWorker|EventSource|WebSocket|fetch)"""
                                      rf"""\s*\(\s*{_QUOTE}(?P<url>{_ELSEWHERE}[^"'`]+)""")),
    ("a src in a script's element", re.compile(rf"""\bsrc\s*:\s*{_QUOTE}(?P<url>{_ELSEWHERE}[^"'`]+)""")),
    ("a src set by script", re.compile(rf"""\.(?:src|href)\s*=\s*{_QUOTE}(?P<url>{_ELSEWHERE}[^"'`]+)""")),
    ("an import map entry", re.compile(rf"""<script\b[^>]*type\s*=\s*["']?importmap[^>]*>[^<]*?"""
                                       rf""""(?P<url>{_ELSEWHERE}[^"]+)"[^<]*</script>""", re.I)),
]
TEXT = (".html", ".js", ".mjs", ".css", ".json", ".map", ".svg")


def requests_elsewhere(text: str, base: str) -> list[str]:
    """Each reference in ``text`` that makes a browser ask another host than ``base``'s, as 'what: URL'."""
    host = urlsplit(base).netloc
    found = []
    for what, pattern in LOADED:
        for match in pattern.finditer(text):
            url = match.group("url")
            if not url.startswith("data:") and urlsplit(urljoin(base, url)).netloc != host:
                found.append(f"{what}: {url[:120]}")
    return found


def test_the_scanner_finds_what_a_browser_would_load_and_not_what_it_would_not() -> None:
    base = "http://127.0.0.1:8080/console/assets/x.js"
    loaded = ['<script src="https://cdn.example.com/x.js"></script>', '<link rel="stylesheet" href="//cdn.example/a">',
              "@font-face { src: url('https://fonts.gstatic.com/s/a.woff2') }", '@import "https://cdn.example/a.css";',
              'import * as THREE from "https://unpkg.com/three";', 'const m = await import("https://esm.sh/x");',
              "/*# sourceMappingURL=https://cdn.example/a.css.map */",
              'new Worker("https://cdn.example/w.js")', 'img.src = "https://example.com/a.png"',
              'createElement("img", {alt: "logo", src: "https://cdn.example/logo.svg"})',
              '<script type="importmap">{"imports": {"three": "https://cdn.example/three.js"}}</script>']
    kept = ['// see https://threejs.org/docs/#api for why', 'console.warn("THREE: see https://example.com/x")',
            '<a href="https://example.com/licence">licence</a>', 'import {x} from "./x.js";',
            '<script src="/console/assets/app.js"></script>', "url(data:image/svg+xml;base64,AAAA)",
            '<script type="importmap">{"imports": {"three": "/console/assets/vendor/three/three.js"}}</script>',
            'const schema = {"$schema": "https://json-schema.org/draft/2020-12/schema"};',
            "//# sourceMappingURL=data:application/json;base64,e30=", "/*# sourceMappingURL=a.css.map*/"]
    assert [len(requests_elsewhere(text, base)) for text in loaded] == [1] * len(loaded)
    assert [requests_elsewhere(text, base) for text in kept] == [[]] * len(kept)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudServer, httpx.Client]]:
    with CloudServer(tmp_path_factory.mktemp("offline")) as server, \
            httpx.Client(base_url=server.base_url, timeout=10) as client:
        signed = client.post("/login", json={"token": server.admin_token})
        assert signed.status_code == 200, signed.text
        yield server, client


def docs_asset_files() -> list[str]:
    import fastapi_offline
    return sorted(p.name for p in (Path(fastapi_offline.__file__).parent / "static").iterdir() if p.is_file())


def test_no_page_and_no_served_file_makes_the_browser_reach_another_host(
        served: tuple[CloudServer, httpx.Client]) -> None:
    server, client = served
    pages = [*PAGES, KIOSK, "/login", "/docs"]
    assets = [f"{ASSETS}/{p.relative_to(STATIC).as_posix()}" for p in sorted(STATIC.rglob("*")) if p.is_file()]
    assert any("/vendor/three/" in a for a in assets) and any("/vendor/uplot/" in a for a in assets), (
        "the console's libraries are not installed (python -m cloud.console.vendor)")
    assets += [f"{DOCS_ASSETS}/{name}" for name in docs_asset_files()]
    to_read = [*pages, *assets]
    read: set[str] = set()
    problems: list[str] = []
    while to_read:
        path = to_read.pop()
        if path in read:
            continue
        read.add(path)
        answer = client.get(path, headers=auth(server.admin_token) if path.startswith("/api/") else {})
        if answer.status_code == 404 and path.startswith(DOCS_ASSETS):
            continue  # a file of the docs package that is not served
        assert answer.status_code == 200, f"{path}: {answer.status_code}"
        if not path.endswith(TEXT) and "text" not in answer.headers.get("content-type", "") \
                and "javascript" not in answer.headers.get("content-type", ""):
            continue
        url = server.base_url + path
        problems += [f"{path}: {p}" for p in requests_elsewhere(answer.text, url)]
        # What the page refers to on this host is read too (a file outside the asset folders included).
        for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"'#?]+)""", answer.text) if path in pages else []:
            target = urlsplit(urljoin(url, ref))
            if target.netloc == urlsplit(server.base_url).netloc and target.path.startswith(
                    (ASSETS, DOCS_ASSETS)):
                to_read.append(target.path)
    assert problems == [], '\n'.join(problems)
    assert len(read) >= len(pages) + len(assets)


def test_only_the_files_the_docs_page_uses_are_served(served: tuple[CloudServer, httpx.Client]) -> None:
    """The docs package ships ReDoc too, whose bundle fetches a logo from the internet; it is not served."""
    _, client = served
    page = client.get("/docs").text
    for name in docs_asset_files():
        status = client.get(f"{DOCS_ASSETS}/{name}").status_code
        assert status == (200 if f"{DOCS_ASSETS}/{name}" in page else 404), name
