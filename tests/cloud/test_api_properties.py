"""Property-based: schemathesis generates requests from the OpenAPI spec; no route may answer 5xx.

Runs against a real uvicorn process with data in it, so the generated
parameters hit real devices and fields as well as unknown ones. The physics
routes are included; their numeric suites live in tests/cloud/physics.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.documents import document, program, program_doc, tool
from tests.cloud.server import CloudServer

EXAMPLES = 60
# Model uploads are a package's bytes (application/zip): generated as raw bytes, like octet-stream.
schemathesis.serializer.alias("application/zip", "application/octet-stream")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudServer, OpenApiSchema]]:
    with CloudServer(tmp_path_factory.mktemp("fuzz"), edges=["edge-1"]) as server:
        body = batch("edge-1", [(i + 1, wire(i)) for i in range(200)])
        model = {"uuid": "press-1-uuid", "name": "press", "device_id": "press-1", "items": [
            {"id": "ex", "key": "temp", "category": "EVENT", "type": "EXECUTION"},
            {"id": "pg", "key": "rpm", "category": "EVENT", "type": "PROGRAM", "units": None}]}
        body["documents"] = [program_doc(1, program("p/O1.nc", number="O1", tools=[tool(1, "DRILL", 5.0, "drill")],
                                                    offsets=["G54"]), device="press-1"),
                             document(2, "mtconnect_device", "press-1-uuid", model)]
        resp = httpx.post(f"{server.base_url}/api/v1/sync/batches", content=encode_obj(body),
                          headers={**auth(server.edge_token), "Content-Type": "application/msgpack"})
        assert resp.status_code == 200
        yield server, schemathesis.openapi.from_url(f"{server.base_url}/openapi.json",
                                                           headers=auth(server.viewer_token))


def operations() -> list[tuple[str, str]]:
    from cloud.app import create_app
    from cloud.config import CloudConfig

    spec = create_app(CloudConfig()).openapi()
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item]


@pytest.mark.parametrize(("method", "path"), operations(), ids=lambda v: v)
def test_no_generated_request_gets_a_server_error(served: tuple[CloudServer, OpenApiSchema], method: str,
                                                  path: str) -> None:
    server, schema = served
    operation = schema[path][method]
    token = server.edge_token if path.startswith("/api/v1/sync") else server.admin_token
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.base_url, headers=auth(token), timeout=30)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} query={case.query} -> "
                            f"{response.status_code} {response.text[:300]}")
        assert response.status_code < 500, failures[-1]

    check()
    assert not failures
