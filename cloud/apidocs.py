"""``/docs`` (Swagger UI) served with every asset from the service itself.

Plant networks are often offline, and FastAPI's default pages load their
JavaScript and CSS from a CDN: they stay blank there. The assets come from
the ``fastapi-offline`` package (the Swagger UI bundle) and are served under
``/docs/assets``; nothing on the page points to another host, and Swagger UI's
online validator badge is switched off. ReDoc is not served: its bundle
fetches a logo from the internet.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "add_api_docs"]

ASSETS = "/docs/assets"
# validatorUrl: Swagger UI would otherwise show a badge fetched from validator.swagger.io.
_SWAGGER_PARAMETERS = {"validatorUrl": None}


def add_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` from local assets; the app must be made with ``docs_url=None, redoc_url=None``."""
    assert app.docs_url is None and app.redoc_url is None, "FastAPI's CDN pages would be served as well"
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="api-docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path") or ""  # behind a proxy that serves the API under a prefix
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters=_SWAGGER_PARAMETERS)
