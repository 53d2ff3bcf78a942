"""One error policy: every refusal is a 4xx (or 503 when busy) with the same path/message list.

The project's errors are mapped to statuses in one place (cloud/errors.py);
these tests hold the answers a client sees, from the real app over
httpx.ASGITransport.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sqlite3
from collections.abc import AsyncIterator

import pytest

import cloud
from cloud.errors import status_of
from shared.errors import InputError, TwinedgeError
from tests.cloud.apiclient import Api, auth, make_api

UPLOAD = "/api/v1/physics/assemblies"


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_input_error_of_the_cloud_is_a_4xx_and_every_other_error_has_a_status() -> None:
    for info in pkgutil.walk_packages(cloud.__path__, "cloud."):
        importlib.import_module(info.name)
    errors = [c for c in _subclasses(TwinedgeError) if c.__module__.startswith(("cloud.", "shared."))]
    assert len(errors) > 20
    for cls in errors:
        status = status_of(cls.__new__(cls))
        if issubclass(cls, InputError):
            assert 400 <= status < 500, (cls, status)
    unmapped = [c.__name__ for c in errors if status_of(c.__new__(c)) == 500]
    # Config errors end the process before it serves; the rest must have an answer.
    assert unmapped == ["ConfigFileError"], unmapped


class _EndlessBody:
    """A request body whose bytes never come: a route that waits for them never answers."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""


@pytest.mark.parametrize("who", ["nobody", "viewer", "edge"])
async def test_an_upload_is_refused_from_its_headers_before_the_body_is_read(api: Api, who: str) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "50000000",
               **({} if who == "nobody" else auth(api.viewer if who == "viewer" else api.edge))}
    async with asyncio.timeout(5):
        resp = await api.client.post(UPLOAD, content=_EndlessBody(), headers=headers)
    assert resp.status_code == (401 if who == "nobody" else 403)
    assert resp.json()["detail"][0]["path"] == "Authorization"


async def test_anonymous_malformed_json_is_401_not_a_parse_error(api: Api) -> None:
    resp = await api.client.post(UPLOAD, content=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"


async def test_malformed_json_says_so_in_plain_words(api: Api) -> None:
    resp = await api.client.post("/api/v1/edges", content=b'{"name": "x",}',
                                 headers={**auth(api.admin), "Content-Type": "application/json"})
    assert resp.status_code == 422
    [problem] = resp.json()["detail"]
    assert problem["path"] == "" and problem["message"].startswith("not valid JSON: ")


async def test_an_upload_reports_paths_without_pydantic_union_labels(api: Api) -> None:
    body = {"parts": [{"name": "a", "mesh": {"format": "dwg", "data_base64": ""}, "material": "pa6",
                       "colour": "red"}]}
    resp = await api.client.post(UPLOAD, json=body, headers=auth(api.operator))
    assert resp.status_code == 422
    problems = {p["path"]: p["message"] for p in resp.json()["detail"]}
    assert problems == {"parts[0].colour": "unknown key"}, problems
    del body["parts"][0]["colour"]  # the shape is right now: the format is judged when the mesh is read
    resp = await api.client.post(UPLOAD, json=body, headers=auth(api.operator))
    assert resp.status_code == 415
    [problem] = resp.json()["detail"]
    assert problem["path"] == "parts[0].mesh.format" and "dwg" in problem["message"], problem


async def test_unknown_routes_answer_in_the_same_shape(api: Api) -> None:
    resp = await api.client.get("/api/v1/nothing-here", headers=auth(api.viewer))
    assert resp.status_code == 404
    assert resp.json() == {"detail": [{"path": "", "message": "Not Found"}]}
    wrong = await api.client.delete("/health")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"
    assert wrong.json()["detail"][0]["message"] == "Method Not Allowed"


async def test_a_busy_database_is_503_for_people_too_not_a_name_conflict(tmp_path) -> None:
    async with make_api(tmp_path, database={"busy_timeout": "100ms"}, sync={"retry_after": "3s"}) as api:
        blocker = sqlite3.connect(tmp_path / "api.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            resp = await api.client.post("/api/v1/edges", json={"name": "line-9"}, headers=auth(api.admin))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "3"
        assert "database" in resp.json()["detail"][0]["message"]
        created = await api.client.post("/api/v1/edges", json={"name": "line-9"}, headers=auth(api.admin))
        assert created.status_code == 201
        again = await api.client.post("/api/v1/edges", json={"name": "line-9"}, headers=auth(api.admin))
        assert again.status_code == 409
        assert again.json()["detail"] == [{"path": "name", "message": "edge 'line-9' exists already"}]


async def test_every_route_behind_a_token_documents_401_and_403(api: Api) -> None:
    spec = (await api.client.get("/openapi.json", headers=auth(api.viewer))).json()
    for path, item in spec["paths"].items():
        if path == "/health":
            continue
        for method, operation in item.items():
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


async def test_an_unexpected_error_is_a_500_in_the_usual_shape_and_logged(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    import httpx

    async with make_api(tmp_path) as api:
        @api.app.get("/boom")
        def boom() -> None:
            raise RuntimeError("a bug")

        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud.test") as client:
            resp = await client.get("/boom", headers=auth(api.viewer))
    assert resp.status_code == 500
    assert resp.json() == {"detail": [{"path": "", "message": "internal error; the service log has the details"}]}
    assert any("GET /boom failed" in r.getMessage() and r.exc_info for r in caplog.records)
