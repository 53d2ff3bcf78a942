"""The web console: sign-in, the page shell and its assets, served by the cloud service itself.

Every page is one HTML shell rendered here (navigation, the person signed
in) that loads the page's small ES module from ``/console/assets``; the
modules read the same public API that scripts use, with the session cookie
instead of a token. The third-party libraries (uPlot, three.js) are fetched
at install time into ``static/vendor`` (``cloud.console.vendor``); nothing
is loaded from another host. Sign-in, sign-out and the session's own route
are in ``cloud.console.signin``; pages in ``cloud.console.pages``.
"""

from __future__ import annotations

from fastapi import FastAPI

__all__ = ["ASSETS", "LOGIN_LIMIT", "PAGES", "PAGE_ROLES", "add_console", "console_public"]

ASSETS = "/console/assets"
LOGIN_LIMIT = 4096  # bytes of a sign-in body: a token and where to go next
# The console's pages: path -> (title, built). A page not built yet says so plainly.
PAGES: dict[str, tuple[str, bool]] = {
    "/": ("Fleet", True),
    "/devices": ("Devices", True),
    "/alerts": ("Alerts", True),
    "/events": ("Events", True),
    "/programs": ("Programs", True),
    "/assemblies": ("Assemblies", True),
    "/models": ("Models", True),
    "/admin": ("Admin", True),
}
# Pages only some roles may open (the API refuses the others' requests all the same); others: viewers up.
PAGE_ROLES: dict[str, str] = {"/admin": "admin"}
KIOSK = "/kiosk"


def console_public(path: str) -> bool:
    """Whether ``path`` is served without a token: the sign-in, the pages (which send a person without a
    session to the sign-in and hold no data) and the static assets."""
    return path == "/login" or path in PAGES or path == KIOSK or path.startswith(ASSETS + "/")


def add_console(app: FastAPI) -> None:
    from cloud.console import pages, signin

    app.include_router(signin.router)
    app.include_router(pages.router)
    pages.mount_assets(app)
