"""Stock Mosquitto command-line clients against the embedded broker, over TCP and TLS with passwords."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from edge.broker.auth import set_password
from edge.broker.config import AclRule, BrokerConfig, ListenerConfig
from edge.broker.embedded import EmbeddedBroker
from tests.edge.broker.certs import make_tls_files
from tests.edge.broker.conftest import running
from tests.support import CollectingSink, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="mosquitto_pub not installed (apt-get install mosquitto-clients)"
)

TS = 1_780_000_000.0


async def mosquitto_pub(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.fixture
async def secured(tmp_path: Path) -> tuple[EmbeddedBroker, CollectingSink, int, int, Path]:
    ca, cert, key = make_tls_files(tmp_path)
    passwd = tmp_path / "passwd"
    set_password(passwd, "press-3", "s3cret-pass")
    tcp, tls = free_port(), free_port()
    config = BrokerConfig(
        listeners=[
            ListenerConfig(name="tls", port=tls, tls=True, certfile=cert, keyfile=key),
            ListenerConfig(name="tcp", port=tcp),
        ],
        password_file=passwd,
        acl=[AclRule(username="*", publish=["twin/%u/telemetry"])],
    )
    sink = CollectingSink()
    return EmbeddedBroker(config, sink, edge_id="edge-1"), sink, tcp, tls, ca


def frame_json(n: int) -> str:
    return json.dumps({"ts": TS + n, "sensors": {"temp_c": 40.5 + n}})


async def test_mosquitto_pub_over_tcp_and_tls_with_password_reaches_the_sink(secured: tuple) -> None:
    broker, sink, tcp, tls, ca = secured
    common = ["-h", "127.0.0.1", "-u", "press-3", "-P", "s3cret-pass", "-q", "1", "-t", "twin/press-3/telemetry"]
    async with running(broker):
        rc, out = await mosquitto_pub(*common, "-p", str(tcp), "-m", frame_json(0))
        assert rc == 0, out
        rc, out = await mosquitto_pub(*common, "-p", str(tls), "--cafile", str(ca), "-m", frame_json(1))
        assert rc == 0, out
        await sink.wait_for(2)
    assert [(f.device_id, f.sensors["temp_c"]) for f in sink.frames] == [("press-3", 40.5), ("press-3", 41.5)]


async def test_mosquitto_pub_with_a_wrong_password_is_refused(secured: tuple) -> None:
    broker, sink, tcp, tls, ca = secured
    async with running(broker):
        for port, extra in ((tcp, []), (tls, ["--cafile", str(ca)])):
            rc, out = await mosquitto_pub(
                "-h", "127.0.0.1", "-p", str(port), *extra, "-u", "press-3", "-P", "guess",
                "-q", "1", "-t", "twin/press-3/telemetry", "-m", frame_json(0),
            )
            assert rc != 0
            assert "not authori" in out.lower()
        assert broker.snapshot()["refused_connections"] == 2
    assert sink.frames == []


async def test_plain_tcp_client_cannot_talk_to_the_tls_listener(secured: tuple) -> None:
    broker, sink, tcp, tls, ca = secured
    async with running(broker):
        rc, _ = await mosquitto_pub(
            "-h", "127.0.0.1", "-p", str(tls), "-u", "press-3", "-P", "s3cret-pass", "-t", "twin/press-3/telemetry",
            "-m", frame_json(0),
        )
        assert rc != 0
    assert sink.frames == []


async def test_mosquitto_pub_outside_its_acl_is_dropped(secured: tuple) -> None:
    broker, sink, tcp, tls, ca = secured
    common = ["-h", "127.0.0.1", "-p", str(tcp), "-u", "press-3", "-P", "s3cret-pass", "-q", "1"]
    async with running(broker):
        rc, out = await mosquitto_pub(*common, "-t", "twin/press-4/telemetry", "-m", frame_json(0))
        assert rc == 0, out  # MQTT 3.1.1 has no refusal for a PUBLISH; the broker drops it
        rc, out = await mosquitto_pub(*common, "-t", "twin/press-3/telemetry", "-m", frame_json(1))
        assert rc == 0, out
        await sink.wait_for(1)
        assert broker.snapshot()["refused_publishes"] == 1
    assert [f.ts for f in sink.frames] == [TS + 1]
