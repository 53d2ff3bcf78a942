"""The console's HTML: the sign-in page and the shell every page shares, and the static assets under it.

A page is rendered here with the navigation and the person signed in, and
loads ``app.js``, which loads the page's own module (``pages/<name>.js``).
A request without a live session is sent to ``/login?next=<page>``. Every
page and asset is answered with a Content-Security-Policy that allows
nothing but this host, so a page cannot load or send anything elsewhere even
by mistake.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from cloud.auth import NotAllowed, NotAuthenticated, authenticate, check_role
from cloud.console import ASSETS, KIOSK, PAGE_ROLES, PAGES
from cloud.storage.base import Principal

__all__ = ["CSP", "import_map", "login_page", "page_headers", "mount_assets", "router", "safe_next"]

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

_LOGIN = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · twinedge console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}{assets}/console.css">
</head>
<body class="signin">
<main>
<h1>twinedge console</h1>
<form method="post" action="{root}/login">
<label for="token">Your token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form>
<p id="signin-message" role="alert">{message}</p>
<p class="hint">Your token is the one an admin gave you (<code>twincloud user add NAME --role viewer</code>).
It is sent once; the browser keeps only a session cookie.</p>
</main>
</body>
</html>
"""

_SHELL = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · twinedge console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}{assets}/console.css">
<script type="importmap">{importmap}</script>
<script type="module" src="{root}{assets}/app.js"></script>
</head>
<body data-page="{page}" data-root="{root}" data-role="{role}" class="{body_class}">
{nav}
<main id="page" aria-live="polite">{placeholder}</main>
</body>
</html>
"""

_NAV = """<header class="bar">
<span class="brand">twinedge</span>
<nav aria-label="Console">{links}</nav>
<span class="who">{name} ({role})</span>
<button id="sign-out" type="button">Sign out</button>
</header>"""


def import_map(root: str) -> str:
    """The import map that lets three.js's add-ons (OrbitControls) import ``three`` by name. It is the one
    inline script of a page: the page's CSP allows it by its SHA-256 (``page_headers``)."""
    vendor = f"{root}{ASSETS}/vendor/three/"
    text = json.dumps({"imports": {"three": vendor + "three.module.js", "three/addons/": vendor + "addons/"}})
    return text.replace("<", "\\u003c")  # a root path can never close the script element


@functools.lru_cache(maxsize=8)
def page_headers(root: str) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(import_map(root).encode()).digest()).decode()
    return {**_HEADERS, "Content-Security-Policy": CSP.replace("script-src 'self'",
                                                               f"script-src 'self' 'sha256-{digest}'")}


def _root(request: Request) -> str:
    return str(request.scope.get("root_path") or "")


NEXT_MAX = 1000  # characters of a page's address kept through the sign-in; a longer one keeps only its page


def safe_next(value: str) -> str:
    """Where to go after sign-in: a page of this console, never another site (``//host`` or a scheme), with its
    query (the page's filters) unless the address is longer than ``NEXT_MAX``."""
    value = value.strip()
    path = value.split("?", 1)[0]
    if not value.startswith("/") or value.startswith("//") or "\\" in value or (path not in PAGES and path != KIOSK):
        return "/"
    return value if len(value) <= NEXT_MAX else path


def login_page(request: Request, message: str, next_page: str) -> str:
    return _LOGIN.format(root=html.escape(_root(request)), assets=ASSETS, next=html.escape(next_page),
                         message=html.escape(message))


def _may_open(principal: Principal, path: str) -> bool:
    try:
        check_role(principal, PAGE_ROLES.get(path, "viewer"))
    except NotAllowed:
        return False
    return True


def _page(request: Request, path: str, principal: Principal) -> str:
    title, built = PAGES.get(path, ("Kiosk", True))
    root = html.escape(_root(request))
    links = "".join(
        f'<a href="{root}{href}"{" aria-current=page" if href == path else ""}>{html.escape(name)}</a>'
        for href, (name, _) in PAGES.items() if _may_open(principal, href))
    kiosk = path == KIOSK
    nav = "" if kiosk else _NAV.format(links=links, name=html.escape(principal.name), role=principal.role)
    placeholder = ("" if built else
                   f'<h1>{html.escape(title)}</h1><p class="not-built">The {html.escape(title)} page is not built '
                   "yet. The same data is in the API (see /docs).</p>")
    if not _may_open(principal, path):
        built = False
        placeholder = (f'<h1>{html.escape(title)}</h1><p class="not-built">The {html.escape(title)} page is for '
                       f"the {PAGE_ROLES[path]} role; you are signed in as {principal.role}.</p>")
    name = "kiosk" if kiosk else ("fleet" if path == "/" else path.strip("/"))
    return _SHELL.format(title=html.escape(title), root=root, assets=ASSETS, page=name if built else "",
                         importmap=import_map(_root(request)),
                         role=principal.role, nav=nav, placeholder=placeholder,
                         body_class="kiosk" if kiosk else "")


async def _signed_in(request: Request) -> Principal | None:
    try:
        principal = await authenticate(request)
        check_role(principal, "viewer")
    except (NotAuthenticated, NotAllowed):
        return None
    return principal


async def _serve(request: Request, path: str) -> Response:
    principal = await _signed_in(request)
    if principal is None:
        # The page's query (a device, filters) goes along, so the person lands where the link pointed.
        wanted = quote(f"{path}?{request.url.query}" if request.url.query else path, safe="/")
        return RedirectResponse(f"{_root(request)}/login?next={wanted}", status_code=303,
                                headers={"Cache-Control": "no-store"})
    return HTMLResponse(_page(request, path, principal), headers=page_headers(_root(request)),
                        status_code=200 if _may_open(principal, path) else 403)


@router.get("/login")
async def sign_in_page(request: Request,
                       next: Annotated[str, Query(max_length=8000)] = "/") -> HTMLResponse:  # noqa: A002
    return HTMLResponse(login_page(request, "", safe_next(next)), headers=_HEADERS)


def _add_page(path: str) -> None:
    async def page(request: Request) -> Response:
        return await _serve(request, path)

    page.__name__ = "console_" + (path.strip("/") or "fleet")
    router.add_api_route(path, page, methods=["GET"])


for _path in [*PAGES, KIOSK]:
    _add_page(_path)


class _Assets(StaticFiles):
    """The static files, with the same security headers as the pages."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({k: v for k, v in _HEADERS.items() if k != "Cache-Control"})
        response.headers["Cache-Control"] = "no-cache"  # revalidate (ETag): an upgrade is seen at once
        return response


def mount_assets(app: FastAPI) -> None:
    app.mount(ASSETS, _Assets(directory=STATIC, follow_symlink=False), name="console-assets")
