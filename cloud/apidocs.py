"""``/docs`` (Swagger UI) served with every asset from the service itself, public, behind a token, or not at all.

Plant networks are often offline, and FastAPI's default pages load their
JavaScript and CSS from a CDN: they stay blank there. The assets come from
the ``fastapi-offline`` package (the Swagger UI bundle) and are served under
``/docs/assets``; nothing on the page points to another host, and Swagger UI's
online validator badge is switched off. ReDoc is not served: its bundle
fetches a logo from the internet (the package ships it, so only the files the
page uses are served from it).

``server.api_docs`` says who may read the API map (``/openapi.json``):

- ``"token"`` (the default): a person's token (viewer or above). The page and
  its assets stay public, as they hold nothing of this API: the page asks for
  a token, keeps it in the browser tab (``sessionStorage``) and sends it as an
  ``Authorization`` header to load the map and with "Try it out" requests.
  A refused token is said so on the page, with the service's reason; the page
  then shows no operation (none of an earlier token either) and does not keep
  it.
- ``"public"``: anyone who reaches the service; the page loads the map at once.
- ``"off"``: neither the page nor the map is served.

The page fetches the map itself and hands it to Swagger UI, so that a refusal
becomes a sentence for a person rather than Swagger UI's "Failed to load API
definition". Who may fetch what is checked by ``cloud.guard``
(``public_paths``).
"""

from __future__ import annotations

import json
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

__all__ = ["ASSETS", "add_api_docs"]

ASSETS = "/docs/assets"
_USED = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon.png"})
# validatorUrl: Swagger UI would otherwise show a badge fetched from validator.swagger.io.
_SWAGGER_PARAMETERS = {"dom_id": "#swagger-ui", "layout": "BaseLayout", "deepLinking": True, "validatorUrl": None}

_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="shortcut icon" href="{assets}/favicon.png">
<title>{title}</title>
<style>#token-form {{font-family: sans-serif; margin: 1em 2em;}} #token-form input {{width: 30em;}}</style>
</head>
<body>
{form}
<p id="api-message" role="alert"></p>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
const parameters = {parameters};
function say(text) {{ document.getElementById("api-message").textContent = text; }}
async function refusal(response) {{
    let reasons = "";
    try {{ reasons = (await response.json()).detail.map((d) => d.message).join("; "); }} catch (error) {{}}
    const why = reasons ? ": " + reasons : "";
    if (response.status === 401) {{ return "The service refused this token (401" + why + ")."; }}
    if (response.status === 403) {{ return "This token may not read the API map (403" + why + ")."; }}
    return "The API map could not be loaded (HTTP " + response.status + why + ").";
}}
async function showApi(token) {{
    const headers = token ? {{Authorization: "Bearer " + token}} : {{}};
    const ui = document.createElement("div");
    document.getElementById("swagger-ui").replaceChildren(ui);
    say("");
    let response;
    try {{
        response = await fetch('{openapi}', {{headers, cache: "no-store"}});
    }} catch (error) {{
        say("The service did not answer (" + error.message + ").");
        return false;
    }}
    if (!response.ok) {{
        say(await refusal(response));
        return false;
    }}
    SwaggerUIBundle({{
        ...parameters,
        spec: await response.json(),
        domNode: ui,
        requestInterceptor: (request) => {{
            if (token && !request.headers.Authorization) {{ request.headers.Authorization = "Bearer " + token; }}
            return request;
        }},
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    }});
    return true;
}}
{start}
</script>
</body>
</html>
"""

_TOKEN_FORM = """<form id="token-form">
<label>The API map needs a token (a viewer's or above):
<input id="token" type="password" autocomplete="off" required></label>
<button type="submit">Show the API</button>
</form>"""

# A refused token is not kept: a reload then asks again instead of repeating the refusal.
_TOKEN_START = """async function tryToken(token) {
    if (await showApi(token)) { sessionStorage.setItem(KEY, token); } else { sessionStorage.removeItem(KEY); }
}
const KEY = "twincloud-token";
document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    tryToken(document.getElementById("token").value.trim());
});
const kept = sessionStorage.getItem(KEY);
if (kept) { tryToken(kept); }"""


class _DocsAssets(StaticFiles):
    """The package's files that the page uses, and no other."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in _USED:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def docs_page(title: str, root: str, openapi_url: str, mode: Literal["public", "token"]) -> str:
    """The Swagger UI page; in ``token`` mode it asks for a token before it loads the API map."""
    return _PAGE.format(
        assets=root + ASSETS, title=title, openapi=root + openapi_url,
        parameters=json.dumps(_SWAGGER_PARAMETERS),
        form=_TOKEN_FORM if mode == "token" else "",
        start=_TOKEN_START if mode == "token" else "showApi(null);")


def add_api_docs(app: FastAPI, mode: Literal["public", "token", "off"]) -> None:
    """Serve ``/docs`` from local assets unless ``mode`` is off; the app must be made with
    ``docs_url=None, redoc_url=None`` (and ``openapi_url=None`` when off)."""
    assert app.docs_url is None and app.redoc_url is None, "FastAPI's CDN pages would be served as well"
    if mode == "off":
        assert app.openapi_url is None, "the API map would be served without its page"
        return
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, _DocsAssets(packages=[("fastapi_offline", "static")]), name="api-docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path") or ""  # behind a proxy that serves the API under a prefix
        return HTMLResponse(docs_page(f"{app.title} API", root, openapi_url, mode))
