"""The gateway as a whole, in-process: readiness, status, tail, supervision, systemd notify."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edge.app import Gateway
from edge.config import GatewayConfig
from edge.control.client import request, stream
from edge.sources import Source, SourceHealth, SourceState
from edge.supervisor import RESTART_BUDGET
from shared.configbase import StrictModel
from shared.frame import TelemetryFrame
from tests.edge.test_store_alerts import alert

T0 = 1_800_000_000.0


class FakeSourceConfig(StrictModel):
    name: str


class CountingSource(Source):
    """A source at our own seam: emits ``count`` frames, then idles."""

    kind = "fake"

    def __init__(self, name: str, count: int, sink: object) -> None:
        super().__init__(FakeSourceConfig(name=name), sink)  # type: ignore[arg-type]
        self.count = count

    async def run(self) -> None:
        self.health.set_state(SourceState.CONNECTED)
        for i in range(self.count):
            await self.sink.put([TelemetryFrame(ts=T0 + i, device_id=self.name, sensors={"n": i})])
            self.health.record_success(1, 1)
        await asyncio.Event().wait()


class CrashingSource(Source):
    kind = "fake"
    runs = 0

    async def run(self) -> None:
        CrashingSource.runs += 1
        raise RuntimeError("register map bug")


def config(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {"edge": {"id": "edge-1", "state_dir": str(tmp_path / "state")}, "store": {"batch_max_delay": "5ms"}}
    )


@asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    task = asyncio.create_task(gateway.run(), name="gateway")
    async with asyncio.timeout(10):
        await gateway.ready.wait()
    try:
        yield gateway
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_status_reports_sources_queue_and_writer(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path))
    gateway.sources.append(CountingSource("press-1", 5, gateway.writer))
    async with running(gateway):
        async with asyncio.timeout(10):
            while gateway.writer.committed_frames < 5:
                await asyncio.sleep(0.01)
        status = await request(gateway.config.control_socket, "status")
    assert status["edge_id"] == "edge-1"
    [src] = status["sources"]
    assert (src["name"], src["state"], src["frames"]) == ("press-1", "connected", 5)
    assert status["queue"]["depth"] == 5 and status["queue"]["drops"] == {}


async def test_tail_streams_frames_as_they_are_stored(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path))
    source = CountingSource("press-2", 0, gateway.writer)
    gateway.sources.append(source)
    async with running(gateway):
        received: list[dict[str, object]] = []

        async def tail() -> None:
            async for frame in stream(gateway.config.control_socket, device="press-2"):
                received.append(frame)
                if len(received) == 3:
                    return

        tail_task = asyncio.create_task(tail(), name="tail")
        async with asyncio.timeout(10):  # the tail client subscribed: frames stored from now on reach it
            while not gateway.control.tail_clients:
                await asyncio.sleep(0.01)
        await gateway.writer.put([TelemetryFrame(ts=T0 + 9, device_id="other", sensors={"n": 9})])
        for i in range(3):
            await gateway.writer.put([TelemetryFrame(ts=T0 + i, device_id="press-2", sensors={"n": i})])
        async with asyncio.timeout(10):
            await tail_task
    assert [f["sensors"] for f in received] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_crashing_source_is_restarted_then_marked_failed_and_the_daemon_stays_up(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path), restart_delay=0.001)
    crashing = CrashingSource(FakeSourceConfig(name="bad-plc"), gateway.writer)  # type: ignore[arg-type]
    gateway.sources.append(crashing)
    gateway.sources.append(CountingSource("good-plc", 3, gateway.writer))
    async with running(gateway):
        async with asyncio.timeout(10):
            while crashing.health.state != SourceState.FAILED:
                await asyncio.sleep(0.01)
        status = await request(gateway.config.control_socket, "status")
    by_name = {s["name"]: s for s in status["sources"]}
    assert CrashingSource.runs == RESTART_BUDGET + 1
    assert by_name["bad-plc"]["state"] == "failed"
    assert "register map bug" in by_name["bad-plc"]["reason"]
    assert by_name["good-plc"]["state"] == "connected"


async def test_systemd_hears_ready_and_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        monkeypatch.setenv("WATCHDOG_PID", str(__import__("os").getpid()))
        loop = asyncio.get_running_loop()
        async with running(Gateway(config(tmp_path))):
            messages = set()
            async with asyncio.timeout(10):
                while not {"READY=1", "WATCHDOG=1"} <= messages or not any(m.startswith("STATUS=") for m in messages):
                    messages.add((await loop.sock_recv(listener, 4096)).decode())
    status = next(m for m in messages if m.startswith("STATUS="))
    assert status == "STATUS=0/0 sources connected; queue 0 frames"


async def test_the_cli_reads_status_from_the_running_daemon(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path))
    gateway.sources.append(CountingSource("press-7", 2, gateway.writer))
    async with running(gateway):
        async with asyncio.timeout(10):
            while gateway.writer.committed_frames < 2:
                await asyncio.sleep(0.01)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "status", "--socket", str(gateway.config.control_socket),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "press-7" in text and "connected" in text and "2 frames waiting" in text


def test_the_cli_says_plainly_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "status", "--socket", str(tmp_path / "none.sock")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert "the daemon is not running" in proc.stderr and "Traceback" not in proc.stderr


async def test_queue_commands_show_frames_and_quarantine_from_the_running_daemon(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path))
    async with running(gateway):
        await gateway.writer.put([TelemetryFrame(ts=T0, device_id="press-9", sensors={"temp": 81.5})], durable=True)
        await gateway.writer.reject("mqtt:twin/press-9/telemetry", "invalid_frame: sensors.temp: must be finite", b"x")
        sock = str(gateway.config.control_socket)
        mode = gateway.config.control_socket.stat().st_mode & 0o777
        outputs = {}
        for action in ("stats", "peek", "quarantine"):
            async with asyncio.timeout(20):
                while True:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "edge.cli", "queue", action, "--socket", sock, stdout=subprocess.PIPE
                    )
                    outputs[action] = (await proc.communicate())[0].decode()
                    if action != "quarantine" or "press-9" in outputs[action]:
                        break  # the quarantine row is written just after the reject
                    await asyncio.sleep(0.05)
    assert mode == 0o660  # operators in the service's group may connect; others may not
    assert "1 frames waiting" in outputs["stats"]
    assert "press-9" in outputs["peek"] and "temp=81.5" in outputs["peek"]
    assert "must be finite" in outputs["quarantine"] and "mqtt:twin/press-9/telemetry" in outputs["quarantine"]


class FlakyMqtt:
    """An MQTT side at our own seam (the Gateway's MqttSide protocol) that crashes ``crashes`` times after start."""

    def __init__(self, crashes: int) -> None:
        self.started = asyncio.Event()
        self.health = SourceHealth(name="mqtt", kind="fake")
        self.crashes = crashes
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        self.started.set()
        if self.runs <= self.crashes:
            await asyncio.sleep(0.05)
            raise RuntimeError("listener task died")
        await asyncio.Event().wait()

    async def publish_stored(self, frames: object) -> None:
        return None

    async def publish_alerts(self, alerts: object) -> None:
        return None

    def snapshot(self) -> dict[str, object]:
        return {"kind": "fake", "runs": self.runs}


async def test_a_crashing_part_is_restarted_and_shown_in_status(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path), restart_delay=0.001)
    gateway.mqtt = flaky = FlakyMqtt(crashes=2)
    gateway.sources.append(CountingSource("press-1", 2, gateway.writer))
    async with running(gateway):
        async with asyncio.timeout(10):
            while flaky.runs < 3:
                await asyncio.sleep(0.01)
        status = await request(gateway.config.control_socket, "status")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "status", "--socket", str(gateway.config.control_socket),
            stdout=subprocess.PIPE,
        )
        text = (await proc.communicate())[0].decode()
    assert status["restarts"]["MQTT side"]["count"] == 2
    assert "listener task died" in status["restarts"]["MQTT side"]["last_reason"]
    assert "the MQTT side crashed and was restarted 2 time(s)" in text
    assert status["queue"]["depth"] == 2  # the rest of the daemon kept working


async def test_a_part_that_keeps_crashing_ends_the_daemon_for_systemd_to_restart(tmp_path: Path) -> None:
    from edge.errors import DaemonFailed

    gateway = Gateway(config(tmp_path), restart_delay=0.001)
    gateway.mqtt = FlakyMqtt(crashes=1000)
    async with asyncio.timeout(20):
        with pytest.raises(ExceptionGroup) as caught:
            await gateway.run()
    [failed] = caught.value.exceptions
    assert isinstance(failed, DaemonFailed)
    assert f"the MQTT side crashed {RESTART_BUDGET + 1} times" in str(failed)


async def test_the_control_socket_answers_malformed_requests_and_keeps_serving(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path))
    path = str(gateway.config.control_socket)

    async def raw(line: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(line)
        await writer.drain()
        try:
            return await reader.read()
        finally:
            writer.close()

    async with running(gateway):
        answers = [
            await raw(b'{"cmd": "queue_peek", "limit": "lots"}\n'),
            await raw(b'{"cmd": "quarantine", "limit": [1]}\n'),
            await raw(b"not json\n"),
            await raw(b'{"cmd": "format_disk"}\n'),
            await raw(b"x" * 100_000 + b"\n"),  # longer than any request
        ]
        status = await request(gateway.config.control_socket, "status")
    assert [json.loads(a)["ok"] for a in answers] == [False] * 5
    assert json.loads(answers[0])["error"].startswith("bad request: ")
    assert "unknown command 'format_disk'" in json.loads(answers[3])["error"]
    assert status["edge_id"] == "edge-1"


async def test_stopping_the_daemon_ends_the_streams_of_tail_clients(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path))
    task = asyncio.create_task(gateway.run(), name="gateway")
    async with asyncio.timeout(10):
        await gateway.ready.wait()
    received: list[dict[str, object]] = []

    async def tail() -> None:
        async for frame in stream(gateway.config.control_socket):
            received.append(frame)

    tail_task = asyncio.create_task(tail(), name="tail")
    await gateway.writer.put([TelemetryFrame(ts=T0, device_id="press-1", sensors={"n": 1})], durable=True)
    async with asyncio.timeout(10):
        while not received:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):  # the tail client sees the end of its stream; nothing holds the shutdown
        await tail_task
    assert [f["sensors"] for f in received] == [{"n": 1}]


async def test_the_health_sent_to_the_cloud_counts_the_alerts_dropped_past_the_cap(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    gateway = Gateway(cfg.model_copy(update={"store": cfg.store.model_copy(update={"alerts_max": 100})}))
    async with running(gateway):
        for start in range(0, 150, 50):
            await gateway.store.append([], alerts=[alert(n) for n in range(start, start + 50)])
        health = await gateway.edge_health()
    assert health.drops == {"alert:over_cap": 50}  # no frame was dropped; 50 alerts were
