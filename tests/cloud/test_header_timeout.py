"""The deadline for a request's head, against a real uvicorn process: a client that sends its request line
and headers a byte at a time, or nothing at all, loses its connection after ``server.header_timeout``;
requests being handled, keep-alive connections between answers and WebSockets are never cut."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.rawhttp import closed_by_server, open_request, read_response
from tests.cloud.server import CloudServer

HEAD_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    options = f'header_timeout = "{HEAD_TIMEOUT:g}s"\nbody_timeout = "5s"'
    with CloudServer(tmp_path_factory.mktemp("head"), server_options=options) as cloud:
        yield cloud


def health(cloud: CloudServer) -> int:
    return httpx.get(cloud.base_url + "/health", timeout=10).status_code


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` one byte every 0.2 s (a slowloris client) until it is all sent, the connection breaks or
    ``stop`` is set."""
    for byte in data:
        if stop.wait(0.2):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def test_a_connection_that_sends_nothing_is_closed(server: CloudServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with sock:
        assert closed_by_server(sock, timeout=10 * HEAD_TIMEOUT)
    assert health(server) == 200


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 200,  # headers that never end
    b"GET /" + b"a" * 200,  # a request line that never ends
])
def test_a_head_sent_a_byte_at_a_time_is_cut(server: CloudServer, head: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(sock, head, stop), daemon=True)
    with sock:
        sender.start()
        try:
            assert closed_by_server(sock, timeout=10 * HEAD_TIMEOUT)  # long before the 40 s the head would take
        finally:
            stop.set()
            sender.join()
    assert health(server) == 200


def test_a_keep_alive_connection_serves_a_request_after_each_answer(server: CloudServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(HEAD_TIMEOUT / 2)


def test_a_request_whose_body_takes_longer_than_the_head_timeout_is_answered(server: CloudServer) -> None:
    body = json.dumps({"name": "slow-body", "edge": "edge-1"}).encode()
    head = {**auth(server.admin_token), "Content-Type": "application/json", "Content-Length": str(len(body))}
    sock = open_request(server.port, "POST", "/api/v1/devices", head, body[:5])
    with sock:
        time.sleep(2 * HEAD_TIMEOUT)  # the head is in: only server.body_timeout (5 s) applies now
        sock.sendall(body[5:])
        status, _, answer = read_response(sock)
    assert status == 201, answer
    assert json.loads(answer)["edge"] == "edge-1"


async def test_a_websocket_stays_open_past_the_head_timeout(server: CloudServer) -> None:
    async def sync(seq: int) -> None:
        body = encode_obj(batch("edge-1", [(seq, wire(seq))]))
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(server.base_url + "/api/v1/sync/batches", content=body, headers={
                **auth(server.edge_token), "Content-Type": "application/msgpack"})
        assert resp.status_code == 200, resp.text

    await sync(1)
    url = f"{server.ws_url}/api/v1/twin/ws/press-1"
    async with connect(url, additional_headers=auth(server.viewer_token), proxy=None) as ws:
        await asyncio.sleep(2 * HEAD_TIMEOUT)
        await sync(2)
        async with asyncio.timeout(5):
            message = json.loads(await ws.recv())
    assert message["type"] == "frame"
    assert message["frame"]["sensors"]["temp"] == wire(2)["sensors"]["temp"]


def test_the_service_raises_its_limit_of_open_files(tmp_path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(65_536, hard)
    if wanted <= 256:
        pytest.skip(f"the hard limit of open files here is {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the child starts with a low soft limit
    try:
        cloud = CloudServer(tmp_path)
        cloud.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = Path(f"/proc/{cloud.pid}/limits").read_text(encoding="utf-8")
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert int(line.split()[3]) == wanted, line
    finally:
        cloud.stop()
