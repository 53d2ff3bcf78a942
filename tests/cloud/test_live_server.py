"""Against a real uvicorn process: the WebSocket live feed, batches surviving a restart of the service,
several workers on one port, and a port that is taken."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cloud.serving import balanced
from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.server import CloudServer


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    """One server for the WebSocket tests (they only add frames); the kill test has its own."""
    with CloudServer(tmp_path_factory.mktemp("live")) as server:
        yield server


async def post_batch(server: CloudServer, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        return await client.post("/api/v1/sync/batches", content=encode_obj(body),
                                 headers={**auth(server.edge_token), "Content-Type": "application/msgpack"})


async def test_live_frames_reach_websocket_subscribers_as_they_are_stored(live_server: CloudServer) -> None:
    assert (await post_batch(live_server, batch("edge-1", [(1, wire(0))]))).status_code == 200
    url = f"{live_server.ws_url}/api/v1/twin/ws/press-1"
    async with connect(url, additional_headers=auth(live_server.viewer_token), proxy=None) as ws:
        ack = await post_batch(live_server, batch("edge-1", [(2, wire(1)), (3, wire(2)),
                                                               (4, wire(3, device="other"))]))
        assert ack.json()["stored"] == 3
        async with asyncio.timeout(5):
            got = [json.loads(await ws.recv()), json.loads(await ws.recv())]
    assert [m["type"] for m in got] == ["frame", "frame"]
    assert [m["frame"]["sensors"]["temp"] for m in got] == [21.0, 22.0]
    assert all(m["frame"]["device_id"] == "press-1" for m in got)


@pytest.mark.parametrize(("token", "device", "status"), [
    (None, "press-1", 401), ("edge", "press-1", 403), ("viewer", "ghost", 404)])
async def test_websocket_refusals_are_plain_http_answers(live_server: CloudServer, token: str | None,
                                                         device: str, status: int) -> None:
    assert (await post_batch(live_server, batch("edge-1", [(1, wire(0))]))).status_code == 200
    tokens = {"edge": live_server.edge_token, "viewer": live_server.viewer_token}
    headers = auth(tokens[token]) if token else {}
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{live_server.ws_url}/api/v1/twin/ws/{device}", additional_headers=headers,
                           proxy=None):
            pass
    assert info.value.response.status_code == status


async def test_websocket_takes_the_token_as_a_query_parameter(live_server: CloudServer) -> None:
    assert (await post_batch(live_server, batch("edge-1", [(1, wire(500))]))).status_code == 200
    url = f"{live_server.ws_url}/api/v1/twin/ws/press-1?token={live_server.viewer_token}"
    async with connect(url, proxy=None) as ws:
        await post_batch(live_server, batch("edge-1", [(2, wire(501))]))
        async with asyncio.timeout(5):
            assert json.loads(await ws.recv())["frame"]["ts"] == wire(501)["ts"]


async def test_a_killed_service_loses_no_acked_frame_and_dedups_the_retry(cloud_server: CloudServer) -> None:
    body = batch("edge-1", [(i + 1, wire(i)) for i in range(500)])
    assert (await post_batch(cloud_server, body)).json()["acked_through"] == 500
    cloud_server.kill()
    cloud_server.start()
    retry = (await post_batch(cloud_server, body)).json()
    assert (retry["stored"], retry["duplicates"], retry["acked_through"]) == (0, 500, 500)
    async with httpx.AsyncClient(base_url=cloud_server.base_url) as client:
        edges = (await client.get("/api/v1/edges", headers=auth(cloud_server.viewer_token))).json()
    assert edges[0]["frames_stored"] == 500 and edges[0]["last_seq"] == 500


async def test_two_workers_share_one_database_and_the_live_feed_sees_both(tmp_path) -> None:
    with CloudServer(tmp_path / "two", server_options='workers = 2\nlive_poll = "100ms"') as server:
        assert (await post_batch(server, batch("edge-1", [(1, wire(0))]))).status_code == 200
        async with connect(f"{server.ws_url}/api/v1/twin/ws/press-1", additional_headers=auth(server.viewer_token),
                           proxy=None) as ws:
            for i in range(1, 21):  # a new connection each time: the kernel spreads them over both workers
                ack = await post_batch(server, batch("edge-1", [(i + 1, wire(i))]))
                assert ack.json()["stored"] == 1
            async with asyncio.timeout(10):
                got = [json.loads(await ws.recv())["frame"]["ts"] for _ in range(20)]
        assert sorted(got) == [wire(i)["ts"] for i in range(1, 21)]  # each once; order across workers may vary
        pids = {line.split("[")[1].split("]")[0] for line in server.log if "Started server process" in line}
        assert len(pids) == 2


def _listening_sockets(pid: int, port: int) -> set[int]:
    """The inodes of the TCP sockets process ``pid`` listens on at ``port`` (from /proc)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.add(int(cols[9]))
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                held.add(int(target[8:-1]))
    return held & listening


@pytest.mark.skipif(not balanced(), reason="SO_REUSEPORT spreads connections on Linux only")
def test_each_worker_listens_on_a_socket_of_its_own(tmp_path) -> None:
    """So the kernel spreads a burst of new connections over the workers, instead of the first to wake
    taking them all (see cloud/serving.py)."""
    with CloudServer(tmp_path / "two", server_options="workers = 2") as server:
        workers = [p for p in psutil.Process(server.pid).children() if _listening_sockets(p.pid, server.port)]
        sockets = [_listening_sockets(p.pid, server.port) for p in workers]
        assert len(workers) == 2 and all(len(s) == 1 for s in sockets) and sockets[0] != sockets[1], sockets
        assert not _listening_sockets(server.pid, server.port)  # the supervisor takes no connections


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_taken_port_says_so_and_exits_1(tmp_path, workers: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "cloud.toml").write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n', encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "cloud.cli", "--config", str(tmp_path / "cloud.toml"), "serve",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr


@pytest.mark.skipif(not balanced(), reason="SO_REUSEPORT spreads connections on Linux only")
def test_the_workers_of_a_replica_show_one_set_of_counters_whichever_answers(tmp_path) -> None:
    """Two workers, batches and scrapes on new connections each (so both workers take some): every scrape
    shows the replica's totals, under one replica name, and the shared files go when the service stops."""
    batches = 12
    with CloudServer(tmp_path / "two", server_options='workers = 2\nreplica = "cloud-7"') as server:
        workers = psutil.Process(server.pid).children()
        shared = {p.environ().get("PROMETHEUS_MULTIPROC_DIR") for p in workers}
        assert len(shared) == 1 and None not in shared
        for n in range(batches):
            body = encode_obj(batch("edge-1", [(n + 1, wire(n))]))
            resp = httpx.post(server.base_url + "/api/v1/sync/batches", content=body, timeout=30, headers={
                **auth(server.edge_token), "Content-Type": "application/msgpack"})
            assert resp.status_code == 200, resp.text
        totals = set()
        for _ in range(12):  # new connections: the kernel gives them to both workers (2 ** -11 that it does not)
            text = httpx.get(server.base_url + "/metrics", headers=auth(server.viewer_token), timeout=10).text
            totals.add(next(line for line in text.splitlines() if line.startswith("twincloud_sync_batches_total{")))
            assert 'twincloud_edge_frames_stored_total{edge="edge-1"} 12.0' in text
        assert totals == {f'twincloud_sync_batches_total{{outcome="stored",replica="cloud-7"}} {batches}.0'}
    assert not Path(next(iter(shared))).exists()


@pytest.mark.parametrize("how", ["sign-out", "revoke"])
async def test_a_live_feed_on_a_session_closes_once_the_session_ends(live_server: CloudServer, how: str) -> None:
    """A browser left open on a device page stops receiving frames once its person signs out elsewhere or an
    admin revokes the token: the feed is not a way around the end of a session."""
    assert (await post_batch(live_server, batch("edge-1", [(1, wire(0))]))).status_code == 200
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as client:
        name = f"ws-{how}"
        made = await client.post("/api/v1/users", json={"name": name, "role": "viewer"},
                                 headers=auth(live_server.admin_token))
        assert made.status_code == 201, made.text
        signed = await client.post("/login", json={"token": made.json()["token"]})
        csrf = signed.json()["csrf"]
        cookie = f"twincloud_session={client.cookies['twincloud_session']}"
        url = f"{live_server.ws_url}/api/v1/twin/ws/press-1"
        async with connect(url, additional_headers={"Cookie": cookie}, origin=live_server.base_url,
                           proxy=None) as ws:
            n = 700 if how == "sign-out" else 710  # a frame of its own: a repeated one is not stored again
            await post_batch(live_server, batch("edge-1", [(n, wire(n))]))
            async with asyncio.timeout(5):
                assert json.loads(await ws.recv())["frame"]["ts"] == wire(n)["ts"]
            if how == "sign-out":
                assert (await client.post("/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
            else:
                resp = await client.delete(f"/api/v1/users/{name}/token", headers=auth(live_server.admin_token))
                assert resp.status_code == 204
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(15):  # the feed checks again at most every few seconds
                    while True:
                        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
