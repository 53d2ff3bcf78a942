"""Against a real uvicorn process, with raw sockets for the clients no library would be: a body that
stalls, one too large to read, one without a token, a health report without bounds, malformed heads,
and who may read the API docs under each ``server.api_docs``."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.batch import MAX_DROP_REASONS
from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.rawhttp import closed_by_server, open_request, read_response, send_all
from tests.cloud.server import CloudServer

SYNC = "/api/v1/sync/batches"
EDGES = [f"edge-{i}" for i in range(1, 10)]
NO_RETENTION = "[retention]\nsamples_days = 0\nrollups_days = 0\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    """Bodies must arrive within 1 s; otherwise the defaults (8 MiB sync bodies, 1 MiB JSON bodies)."""
    with CloudServer(tmp_path_factory.mktemp("guard"), edges=EDGES, server_options='body_timeout = "1s"') as cloud:
        yield cloud


def sync_head(cloud: CloudServer, edge: str, length: int | None) -> dict[str, str]:
    head = {**auth(cloud.edge_tokens[edge]), "Content-Type": "application/msgpack"}
    if length is None:
        head["Transfer-Encoding"] = "chunked"
    else:
        head["Content-Length"] = str(length)
    return head


def stall(cloud: CloudServer, edge: str) -> socket.socket:
    """A sync request that announces 1,000 bytes and sends one, then holds the connection open."""
    return open_request(cloud.port, "POST", SYNC, sync_head(cloud, edge, 1000), b"\x85")


def post_batch(cloud: CloudServer, edge: str, seqs: range, device: str) -> httpx.Response:
    body = encode_obj(batch(edge, [(s, wire(s, device=device)) for s in seqs]))
    return httpx.post(cloud.base_url + SYNC, content=body, headers=sync_head(cloud, edge, len(body)), timeout=30)


def stored(cloud: CloudServer, device: str) -> list[float]:
    resp = httpx.get(f"{cloud.base_url}/api/v1/twin/history", params={"device": device},
                     headers=auth(cloud.viewer_token), timeout=10)
    return [p[0] for p in resp.json()["series"][0]["points"]] if resp.status_code == 200 else []


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def pending(sock: socket.socket) -> bool:
    """Whether the server has neither answered nor closed this connection yet."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer, or b"" for a closed connection
        return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


# --- point 2: a stalled body ---------------------------------------------------------------------------------


def test_a_newer_batch_of_a_stalled_edge_is_stored_at_once_and_the_stalled_one_dropped(
        server: CloudServer) -> None:
    stalled = stall(server, "edge-1")
    try:
        resp = post_batch(server, "edge-1", range(1, 4), "st-1")
        assert resp.status_code == 200 and resp.json()["stored"] == 3
        status, headers, body = read_response(stalled)
        assert status == 409 and "newer batch of edge edge-1" in body.decode()
        assert headers["connection"] == "close" and closed_by_server(stalled)
    finally:
        stalled.close()
    assert len(stored(server, "st-1")) == 3


def test_a_stalled_body_times_out_with_408_and_its_edge_syncs_again(server: CloudServer) -> None:
    stalled = stall(server, "edge-2")
    try:
        status, headers, body = read_response(stalled)  # after server.body_timeout (1 s here)
        assert status == 408 and "server.body_timeout" in body.decode() and closed_by_server(stalled)
    finally:
        stalled.close()
    resp = post_batch(server, "edge-2", range(1, 3), "st-2")
    assert resp.status_code == 200 and resp.json()["stored"] == 2


def test_eight_stalled_edges_keep_out_neither_a_ninth_nor_themselves(tmp_path: Path) -> None:
    """As many stalled edges as the process stores batches at once (sync.max_concurrent, 8): a ninth edge,
    and each stalled edge's own next batch, are stored while the stalled connections are still open."""
    with CloudServer(tmp_path, edges=EDGES, server_options='body_timeout = "60s"') as cloud:
        stalls = {edge: stall(cloud, edge) for edge in EDGES[:8]}
        try:
            other = post_batch(cloud, EDGES[8], range(1, 3), "free-9")
            assert other.status_code == 200 and other.json()["stored"] == 2
            assert all(pending(sock) for sock in stalls.values())  # answered while all eight still stall
            for n, (edge, sock) in enumerate(stalls.items()):
                resp = post_batch(cloud, edge, range(10, 12), f"again-{n}")
                assert resp.status_code == 200 and resp.json()["stored"] == 2
                assert read_response(sock)[0] == 409 and closed_by_server(sock)
        finally:
            for sock in stalls.values():
                sock.close()


# --- point 3: no work before authentication, no unbounded body ----------------------------------------------


@pytest.mark.parametrize(("path", "token", "expected"), [
    ("/api/v1/physics/assemblies", None, 401), ("/api/v1/edges", None, 401),
    ("/api/v1/physics/collision/check", None, 401),
    ("/api/v1/edges", "viewer", 403),  # an admin's route: the role is checked from the headers too
    ("/api/v1/edges", "admin", 413)])  # the right role, over the JSON routes' 1 MiB
def test_a_50_mb_body_is_refused_before_it_is_read(server: CloudServer, path: str, token: str | None,
                                                   expected: int) -> None:
    assert server.pid is not None
    before = rss_kib(server.pid)
    size = 50 * 1024**2
    head = {"Content-Type": "application/json", "Content-Length": str(size)}
    if token:
        head.update(auth(server.admin_token if token == "admin" else server.viewer_token))
    sock = open_request(server.port, "POST", path, head)
    try:
        status, headers, body = read_response(sock)  # answered on the head alone
        assert status == expected, body
        assert headers["connection"] == "close"
        sent = send_all(sock, b"x" * size)
        assert sent < size and closed_by_server(sock)
    finally:
        sock.close()
    assert rss_kib(server.pid) - before < 5 * 1024
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/devices"), ("PUT", "/api/v1/devices/press-1/edge"),
                                            ("POST", "/api/v1/users")])
def test_a_role_too_low_for_a_route_is_refused_before_its_body_arrives(server: CloudServer, method: str,
                                                                       path: str) -> None:
    """A viewer's request to an admin's route, its body never sent: 403 at once, not 408 after the body's time."""
    sock = open_request(server.port, method, path, {**auth(server.viewer_token), "Content-Type": "application/json",
                                                    "Content-Length": "1000"})
    try:
        status, headers, body = read_response(sock)  # not 408: the role is refused before the body's time is up
        assert status == 403 and "it needs admin" in body.decode(), body
        assert headers["connection"] == "close"
    finally:
        sock.close()


def test_a_chunked_body_without_a_length_is_cut_off_at_the_routes_limit(server: CloudServer) -> None:
    sock = open_request(server.port, "POST", "/api/v1/edges", {
        **auth(server.admin_token), "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    try:
        chunk = b"[" + b"1," * 32_000
        for _ in range(64):  # up to 4 MB, against the 1 MiB limit of the JSON routes
            if not send_all(sock, b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                break
        status, _, body = read_response(sock)
        assert status == 413 and "limit" in body.decode()
        assert closed_by_server(sock)
    finally:
        sock.close()


def test_a_chunked_sync_batch_is_stored_and_one_over_the_limit_refused(server: CloudServer) -> None:
    body = encode_obj(batch("edge-3", [(s, wire(s, device="chunked")) for s in range(1, 6)]))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:100], body[100:])) + b"0\r\n\r\n"
    sock = open_request(server.port, "POST", SYNC, sync_head(server, "edge-3", None), chunks)
    try:
        status, _, answer = read_response(sock)
        assert status == 200 and json.loads(answer)["stored"] == 5
    finally:
        sock.close()
    assert len(stored(server, "chunked")) == 5
    sock = open_request(server.port, "POST", SYNC, sync_head(server, "edge-3", None))
    try:
        big = b"\x00" * (1 << 20)
        for _ in range(12):  # 12 MiB, against the 8 MiB limit of sync bodies
            if not send_all(sock, b"%x\r\n%s\r\n" % (len(big), big)):
                break
        status, _, answer = read_response(sock)
        assert status == 413 and "8,388,608" in answer.decode() and closed_by_server(sock)
    finally:
        sock.close()


@pytest.mark.parametrize(("head", "expected"), [
    (b"POST /api/v1/sync/batches HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /api/v1/sync/batches HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/v1/sync/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"GET /api/v1/edges HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n", 401),
    (b"GET /api/v1/edges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"A" * 8000 + b"\r\n\r\n", 401),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 401),
])
def test_malformed_and_hostile_heads_get_a_4xx_and_the_service_goes_on(
        server: CloudServer, head: bytes, expected: int) -> None:
    sock = open_request(server.port, "", "", {}, raw_head=head)
    try:
        status, _, _ = read_response(sock)
        assert status == expected
    finally:
        sock.close()
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


def test_a_body_on_a_route_that_takes_none_is_413(server: CloudServer) -> None:
    viewer = auth(server.viewer_token)
    resp = httpx.request("GET", server.base_url + "/api/v1/edges", content=b"x" * 100, headers=viewer, timeout=10)
    assert resp.status_code == 413 and resp.json()["detail"][0]["message"] == "this route takes no body"


# --- point 3: the edge's health report is bounded ------------------------------------------------------------


def test_a_health_report_over_the_limits_is_kept_shortened_and_metrics_stay_small(server: CloudServer) -> None:
    body = batch("edge-5", [(1, wire(1, device="healthy"))])
    body["health"]["drops"] = {f"reason-{i:06d}": i for i in range(100_000)}
    body["health"]["sources"] = {f"plc-{i}-" + "x" * 200: "connected" for i in range(3000)}
    encoded = encode_obj(body)
    resp = httpx.post(server.base_url + SYNC, content=encoded, timeout=30,
                      headers=sync_head(server, "edge-5", len(encoded)))
    assert resp.status_code == 200 and resp.json()["stored"] == 1
    edges = {e["name"]: e for e in httpx.get(server.base_url + "/api/v1/edges", headers=auth(server.viewer_token),
                                             timeout=10).json()}
    drops = edges["edge-5"]["drops"]
    assert len(drops) == MAX_DROP_REASONS
    assert drops["reason-099999"] == 99_999  # the largest are kept
    assert sum(drops.values()) == sum(range(100_000))  # and the rest summed, not lost
    sources = edges["edge-5"]["sources"]
    assert all(len(name) <= 64 for name in sources) and "(more sources)" in sources
    metrics = httpx.get(server.base_url + "/metrics", headers=auth(server.viewer_token), timeout=10)
    assert len(metrics.content) < 200_000
    assert any("health report over the limits" in line for line in server.log)


# --- point 6: who may read the API docs ---------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "page", "map_without_token", "map_with_token"), [
    ("public", 200, 200, 200), ("token", 200, 401, 200), ("off", 401, 401, 404)])
def test_each_api_docs_setting(tmp_path: Path, mode: str, page: int, map_without_token: int,
                               map_with_token: int) -> None:
    with CloudServer(tmp_path, server_options=f'api_docs = "{mode}"') as cloud:
        viewer = auth(cloud.viewer_token)
        assert httpx.get(cloud.base_url + "/docs", timeout=10).status_code == page
        assert httpx.get(cloud.base_url + "/openapi.json", timeout=10).status_code == map_without_token
        assert httpx.get(cloud.base_url + "/openapi.json", headers=viewer, timeout=10).status_code == map_with_token
        assert httpx.get(cloud.base_url + "/redoc", headers=viewer, timeout=10).status_code == 404
        assert httpx.get(cloud.base_url + "/health", timeout=10).status_code == 200
