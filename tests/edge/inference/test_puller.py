"""The model downloader: against the real cloud (registry, assignments, package download), and against a small
HTTP server of our own for what a real cloud does not send (a truncated, oversized or wrong body).

The engine is a recorder at our own seam (``set_assignments``): these tests are about which files it is given.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import UplinkConfig
from edge.inference.engine import LocalAssignment
from edge.inference.puller import ModelPuller
from edge.uplink.sender import cloud_client
from tests.cloud.server import CloudServer
from tests.mlkit import make_package, make_schema

EDGE = "edge-1"


class Recorder:
    """The engine's side of the seam: remembers every list it is handed."""

    def __init__(self) -> None:
        self.calls: list[list[LocalAssignment]] = []

    async def set_assignments(self, assignments: Sequence[LocalAssignment]) -> None:
        self.calls.append(list(assignments))

    def served(self) -> list[tuple[str, int, bytes]]:
        return [(a.assignment.model, a.assignment.version, a.path.read_bytes()) for a in self.calls[-1]]


def uplink(url: str, token: str) -> UplinkConfig:
    return UplinkConfig.model_validate({"url": url, "token": token, "timeout": "5s"})


def puller(tmp_path: Path, url: str, token: str, engine: Recorder) -> ModelPuller:
    return ModelPuller(uplink(url, token), engine, edge_id=EDGE, models_dir=tmp_path / "models", poll_interval=60)


async def poll(p: ModelPuller) -> None:
    async with cloud_client(p.uplink) as client:
        await p.poll_once(client)


def package_files(p: ModelPuller) -> set[str]:
    return {f.name for f in p.models_dir.iterdir() if f.name.endswith(".twinmodel")}


# --- against the real cloud ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("cloud"), edges=[EDGE, "edge-2"]) as server:
        yield server


def upload(cloud: CloudServer, name: str, threshold: float) -> tuple[int, bytes]:
    data = make_package(make_schema(threshold=threshold), name=name)[0]
    resp = httpx.post(f"{cloud.base_url}/api/v1/models", content=data, timeout=60,
                      headers={"Authorization": f"Bearer {cloud.admin_token}", "Content-Type": "application/zip"})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["version"]), data


def assign(cloud: CloudServer, **rule: Any) -> None:
    resp = httpx.put(f"{cloud.base_url}/api/v1/model-assignments", json=rule, timeout=10,
                     headers={"Authorization": f"Bearer {cloud.admin_token}"})
    assert resp.status_code == 200, resp.text


def unassign(cloud: CloudServer, **rule: str) -> None:
    resp = httpx.delete(f"{cloud.base_url}/api/v1/model-assignments", params=rule, timeout=10,
                        headers={"Authorization": f"Bearer {cloud.admin_token}"})
    assert resp.status_code == 204, resp.text


async def test_an_assigned_package_is_downloaded_verified_and_handed_to_the_engine(
        cloud: CloudServer, tmp_path: Path) -> None:
    v1, data = upload(cloud, "spindle", threshold=1.0)
    assign(cloud, scope="edge", target=EDGE, model="spindle", version=v1)
    engine = Recorder()
    p = puller(tmp_path, cloud.base_url, cloud.edge_tokens[EDGE], engine)
    await poll(p)
    assert engine.served() == [("spindle", v1, data)]
    [given] = engine.calls[-1]
    assert given.path == tmp_path / "models" / f"{hashlib.sha256(data).hexdigest()}.twinmodel"
    await poll(p)  # nothing changed: the engine is not bothered again, nothing is downloaded again
    assert len(engine.calls) == 1
    kept = json.loads((tmp_path / "models" / "assignments.json").read_text())
    assert [a["model"] for a in kept["assignments"]] == ["spindle"]
    unassign(cloud, scope="edge", target=EDGE)
    await poll(p)  # unassigned in the cloud: the engine serves nothing from the cloud, the file stays for a rollback
    assert engine.calls[-1] == [] and given.path.is_file()


async def test_a_restart_without_the_cloud_serves_the_kept_models_and_old_versions_are_pruned(
        cloud: CloudServer, tmp_path: Path) -> None:
    versions = [upload(cloud, "press", threshold=t) for t in (1.0, 2.0, 3.0)]
    engine = Recorder()
    p = puller(tmp_path, cloud.base_url, cloud.edge_tokens["edge-2"], engine)
    p.edge_id = "edge-2"
    for version, _ in versions:
        assign(cloud, scope="edge", target="edge-2", model="press", version=version)
        await poll(p)
    sha = [hashlib.sha256(data).hexdigest() for _, data in versions]
    assert package_files(p) == {f"{sha[1]}.twinmodel", f"{sha[2]}.twinmodel"}  # the one before stays: rollback
    assert [c[0].assignment.version for c in engine.calls] == [v for v, _ in versions]

    restarted = Recorder()
    offline = ModelPuller(uplink("http://127.0.0.1:9", "x"), restarted, edge_id="edge-2",
                          models_dir=tmp_path / "models", poll_interval=60)
    await offline.restore()
    await poll(offline)  # the cloud cannot be reached: nothing changes
    assert restarted.served() == [("press", versions[2][0], versions[2][1])] and len(restarted.calls) == 1
    assert offline.last_error is not None and "cannot reach the cloud" in offline.last_error


async def test_an_edge_token_of_another_edge_gets_no_list_and_nothing_changes(
        cloud: CloudServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.inference.puller")
    engine = Recorder()
    p = puller(tmp_path, cloud.base_url, cloud.edge_tokens["edge-2"], engine)  # asks for edge-1's list
    await poll(p)
    await poll(p)
    assert engine.calls == [] and p.last_error is not None and "HTTP 403" in p.last_error
    assert len([r for r in caplog.records if "model list" in r.getMessage()]) == 1  # once, not every poll


# --- against a small server of our own -------------------------------------------------------------------------

class FakeCloud(http.server.ThreadingHTTPServer):
    """Serves the two routes the downloader reads, each answer scripted by the test."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.assignments: list[dict[str, Any]] = []
        self.packages: dict[str, tuple[str, bytes]] = {}  # path -> (how, body)
        self.requests: list[str] = []
        self.raw_list: bytes | None = None  # sent as the model list instead of the assignments when set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def offer(self, model: str, version: int, data: bytes, how: str = "ok", *, sha256: str | None = None,
              size: int | None = None) -> None:
        self.assignments = [{"scope": "edge", "target": EDGE, "model": model, "version": version,
                             "sha256": sha256 or hashlib.sha256(data).hexdigest(), "size": size or len(data)}]
        self.packages[f"/api/v1/models/{model}/versions/{version}/package"] = (how, data)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeCloud

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        self.server.requests.append(self.path)
        if self.path == f"/api/v1/edges/{EDGE}/models":
            body = self.server.raw_list or json.dumps({"assignments": self.server.assignments}).encode()
            self._send(200, body)
            return
        how, body = self.server.packages.get(self.path, ("404", b""))
        if how == "404":
            self._send(404, b'{"detail": [{"path": "version", "message": "model m has no version 9"}]}')
        elif how == "cut":  # announces the whole body, sends half, closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif how == "short":  # no length: the body simply ends early
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake() -> Iterator[FakeCloud]:
    server = FakeCloud()
    thread = threading.Thread(target=server.serve_forever, name="fake-cloud", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


PACKAGE = b"PK" + bytes(range(256)) * 200  # the downloader checks size and hash; the engine reads the package


@pytest.mark.parametrize(("how", "sha256", "size", "reason"), [
    ("cut", None, None, "broke off"),
    ("short", None, None, f"truncated: {len(PACKAGE) // 2:,} of {len(PACKAGE):,} bytes arrived"),
    ("ok", "0" * 64, None, f"not {'0' * 64} as assigned"),
    ("ok", None, len(PACKAGE) - 100, f"more than the {len(PACKAGE) - 100:,} bytes the assignment names"),
    ("404", None, None, "HTTP 404: model m has no version 9"),
])
async def test_a_bad_download_is_refused_the_model_in_use_keeps_serving_and_it_is_tried_again(
        fake: FakeCloud, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        how: str, sha256: str | None, size: int | None, reason: str) -> None:
    caplog.set_level(logging.INFO, logger="edge.inference.puller")
    engine = Recorder()
    p = puller(tmp_path, fake.url, "edge-token", engine)
    fake.offer("m", 1, PACKAGE)
    await poll(p)
    assert engine.served() == [("m", 1, PACKAGE)]
    newer = PACKAGE[::-1]
    fake.offer("m", 9, newer, how, sha256=sha256, size=size)
    await poll(p)
    assert len(engine.calls) == 1  # the engine was not told: version 1 keeps serving
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(reason in w and "model m version 9 for edge edge-1" in w for w in warnings), warnings
    assert package_files(p) == {f"{hashlib.sha256(PACKAGE).hexdigest()}.twinmodel"}  # nothing half-written
    assert not [f for f in p.models_dir.iterdir() if f.name.endswith(".part")]
    fake.offer("m", 9, newer)  # the cloud sends it whole now
    await poll(p)
    assert engine.served() == [("m", 9, newer)]


async def test_a_package_over_64_mib_is_not_even_asked_for(fake: FakeCloud, tmp_path: Path) -> None:
    engine = Recorder()
    p = puller(tmp_path, fake.url, "edge-token", engine)
    fake.offer("huge", 1, PACKAGE)
    fake.assignments[0]["size"] = 64 * 1024 * 1024 + 1
    await poll(p)
    assert engine.calls == [] and not any("/package" in r for r in fake.requests)
    assert p.last_error is not None and "assignments.0.size: Input should be less than" in p.last_error


async def test_a_list_that_is_not_an_assignment_list_changes_nothing(fake: FakeCloud, tmp_path: Path) -> None:
    engine = Recorder()
    p = puller(tmp_path, fake.url, "edge-token", engine)
    fake.offer("m", 1, PACKAGE)
    await poll(p)
    fake.assignments = [{"scope": "galaxy", "model": "../../etc/passwd", "version": -1}]
    await poll(p)
    assert len(engine.calls) == 1 and p.last_error is not None and "unreadable" in p.last_error


async def test_kept_assignments_that_are_damaged_are_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "assignments.json").write_text('{"assignments": [{"scope": "x"}]}')
    engine = Recorder()
    p = puller(tmp_path, "http://127.0.0.1:9", "x", engine)
    await p.restore()
    assert engine.calls == [] and "cannot read the kept model assignments" in caplog.text


async def test_an_answer_that_is_not_json_changes_nothing(fake: FakeCloud, tmp_path: Path) -> None:
    engine = Recorder()
    p = puller(tmp_path, fake.url, "edge-token", engine)
    fake.offer("m", 1, PACKAGE)
    await poll(p)
    assert len(engine.calls) == 1
    fake.raw_list = b"<html>gateway timeout</html>"
    await poll(p)
    assert len(engine.calls) == 1 and p.last_error is not None and "not JSON" in p.last_error
