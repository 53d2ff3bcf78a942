"""MQTT ingest benchmark: QoS 1 publishers on 127.0.0.1 -> embedded broker (or Mosquitto + edge client) -> sink.

Run: python bench/bench_mqtt_ingest.py            (about 90 s; add --quick for a 30 s smoke run)

Publishers run in a separate process (a lean raw-socket MQTT client, so the
publisher side is not the bottleneck); the broker and the sink run in this
process, whose CPU is what the table reports. The sink only counts frames
(the cheapest realistic sink); acknowledgements still wait for its put.
Phases:
  1. sustained rate, single-frame messages, unlimited publishers
  2. sustained rate, 50 frames per message
  3. publish-to-PUBACK latency at 2,000 messages/s
  4. broker CPU at a steady 1,000 messages/s
  5. Mosquitto (max_queued_messages 0) -> ExternalMqttIngest, unlimited publishers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack  # noqa: E402
import psutil  # noqa: E402

from edge.broker.client import ExternalMqttIngest  # noqa: E402
from edge.broker.config import AclRule, BrokerConfig, ListenerConfig, MqttClientConfig  # noqa: E402
from edge.broker.embedded import EmbeddedBroker  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from tests.edge.broker.mosquitto import Mosquitto, mosquitto_available  # noqa: E402

TS = 1_780_000_000.0


# --------------------------------------------------------------------------- publisher (child process)


def _str(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    out, length = bytearray([(kind << 4) | flags]), len(body)
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + body


def _payloads(device: str, frames_per_message: int, count: int = 200) -> list[bytes]:
    out = []
    for n in range(count):
        frames = [
            {"ts": TS + n * frames_per_message + i, "sensors": {"temp_c": 40.0 + i, "rpm": 1500 + n, "ok": True}}
            for i in range(frames_per_message)
        ]
        out.append(msgpack.packb(frames[0] if frames_per_message == 1 else frames))
    return out


async def _one_publisher(port: int, index: int, args: argparse.Namespace, stats: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_packet(1, 0, _str(b"MQTT") + bytes([4, 2]) + struct.pack("!H", 0) + _str(f"bench-{index}".encode())))
    await writer.drain()
    connack = await reader.readexactly(4)
    if connack[3] != 0:
        raise SystemExit(f"publisher {index}: CONNACK {connack[3]}")
    topic = _str(f"twin/bench-{index}/telemetry".encode())
    payloads = _payloads(f"bench-{index}", args.frames)
    rate = args.rate / args.connections if args.rate else 0.0
    window = args.window
    sent_at: dict[int, float] = {}
    latencies: list[float] = stats["latencies"]
    free = asyncio.Event()
    free.set()
    stop_at = time.monotonic() + args.seconds
    next_id, seq = 1, 0

    async def read_acks() -> None:
        buf = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
            now = time.monotonic()
            while len(buf) >= 4:
                pid = (buf[2] << 8) | buf[3]
                buf = buf[4:]
                started = sent_at.pop(pid, None)
                if started is not None:
                    stats["acked"] += 1
                    if args.latency:
                        latencies.append(now - started)
            free.set()

    acks = asyncio.create_task(read_acks(), name=f"acks-{index}")
    t0 = time.monotonic()
    while time.monotonic() < stop_at:
        budget = window - len(sent_at)
        if rate:
            due = int((time.monotonic() - t0) * rate) - seq
            budget = min(budget, due)
        if budget <= 0:
            free.clear()
            try:
                async with asyncio.timeout(0.005 if rate else 1.0):
                    await free.wait()
            except TimeoutError:
                pass
            continue
        chunk = []
        now = time.monotonic()
        for _ in range(budget):
            chunk.append(_packet(3, 2, topic + struct.pack("!H", next_id) + payloads[seq % len(payloads)]))
            sent_at[next_id] = now
            next_id = next_id % 65535 + 1
            seq += 1
        writer.write(b"".join(chunk))
        stats["sent"] += len(chunk)
        await writer.drain()
    async with asyncio.timeout(10):
        while sent_at:
            free.clear()
            await free.wait()
    acks.cancel()
    writer.write(_packet(14, 0, b""))
    writer.close()


async def _publishers(args: argparse.Namespace) -> None:
    stats: dict[str, Any] = {"sent": 0, "acked": 0, "latencies": []}
    cpu0 = time.process_time()
    await asyncio.gather(*(_one_publisher(args.port, i, args, stats) for i in range(args.connections)))
    stats["publisher_cpu_s"] = time.process_time() - cpu0
    lat = sorted(stats.pop("latencies"))
    if lat:
        stats["p50_ms"] = lat[len(lat) // 2] * 1000
        stats["p95_ms"] = lat[int(len(lat) * 0.95)] * 1000
        stats["p99_ms"] = lat[int(len(lat) * 0.99)] * 1000
    print(json.dumps(stats), flush=True)


# --------------------------------------------------------------------------- the measured side


class CountingSink:
    """Counts frames; the cheapest realistic sink (the real store is measured by the lead's benchmark)."""

    def __init__(self) -> None:
        self.frames = 0
        self.rejected = 0
        self.target = 0
        self.reached = asyncio.Event()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False) -> None:
        self.frames += len(frames)
        if self.target and self.frames >= self.target:
            self.reached.set()

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        self.rejected += 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_phase(
    port: int, sink: CountingSink, *, seconds: float, connections: int, window: int, frames: int = 1,
    rate: int = 0, latency: bool = False, warmup: float = 1.5,
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--publisher", "--port", str(port), "--seconds", str(seconds + warmup),
           "--connections", str(connections), "--window", str(window), "--frames", str(frames), "--rate", str(rate)]
    if latency:
        cmd.append("--latency")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    me = psutil.Process()
    await asyncio.sleep(warmup)
    f0, cpu0, t0 = sink.frames, me.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)
    f1, cpu1, t1 = sink.frames, me.cpu_times(), time.monotonic()
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    elapsed = t1 - t0
    result["frames_per_s"] = (f1 - f0) / elapsed
    result["msgs_per_s"] = result["frames_per_s"] / frames
    result["cpu_pct"] = 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / elapsed
    result["offered_per_s"] = result["sent"] / (seconds + warmup) if seconds + warmup else None
    return result


async def embedded_phases(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    sink, port = CountingSink(), free_port()
    config = BrokerConfig(
        listeners=[ListenerConfig(name="bench", port=port)], allow_anonymous=True,
        acl=[AclRule(username="*", publish=["twin/+/telemetry"])], republish=False,
    )
    broker = EmbeddedBroker(config, sink, edge_id="bench")
    task = asyncio.create_task(broker.run(), name="bench-broker")
    await broker.started.wait()
    secs = 4.0 if quick else 10.0
    results = []
    try:
        results.append(("embedded, 1 frame/msg, 4 conns", await run_phase(
            port, sink, seconds=secs, connections=4, window=100)))
        results.append(("embedded, 50 frames/msg, 4 conns", await run_phase(
            port, sink, seconds=secs, connections=4, window=20, frames=50)))
        results.append(("embedded, 2,000 msgs/s, 50 conns", await run_phase(
            port, sink, seconds=secs, connections=50, window=100, rate=2000, latency=True)))
        results.append(("embedded, 1,000 msgs/s, 50 conns", await run_phase(
            port, sink, seconds=secs, connections=50, window=100, rate=1000, latency=True)))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return results


async def mosquitto_phases(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    """Mosquitto -> ExternalMqttIngest: (a) draining a backlog queued while the edge was away, which is
    what the edge client alone can sustain; (b) live publishers at a fixed 20,000 msgs/s."""
    if not mosquitto_available():
        return []
    port = free_port()
    config = MqttClientConfig(port=port, client_id="bench-edge")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with Mosquitto(port, Path(tmp)) as mosquitto:
            assert mosquitto.proc is not None
            broker_proc = psutil.Process(mosquitto.proc.pid)
            sink = CountingSink()
            # register the persistent session, then queue a backlog while the edge is away
            ingest = ExternalMqttIngest(config, sink, edge_id="bench")
            task = asyncio.create_task(ingest.run(), name="bench-external")
            await ingest.started.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            backlog = 60_000 if quick else 200_000
            await run_phase(port, CountingSink(), seconds=backlog / 40_000, connections=4, window=200,
                            rate=40_000, warmup=0.0)
            me = psutil.Process()
            task = asyncio.create_task(ingest.run(), name="bench-external")
            cpu0, t0 = me.cpu_times(), time.monotonic()
            sink.target = int(backlog * 0.98)
            async with asyncio.timeout(120):
                await sink.reached.wait()
            cpu1, t1 = me.cpu_times(), time.monotonic()
            rate = sink.frames / (t1 - t0)
            cpu = 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / (t1 - t0)
            drained = {"msgs_per_s": rate, "frames_per_s": rate, "cpu_pct": cpu, "offered_per_s": None}
            rows.append(("Mosquitto -> edge client, backlog", drained))
            try:
                broker_proc.cpu_percent()
                live = await run_phase(port, sink, seconds=4.0 if quick else 10.0, connections=4, window=500,
                                       rate=20_000)
                live["mosquitto_cpu_pct"] = broker_proc.cpu_percent()
                rows.append(("Mosquitto -> edge client, 20k/s offered", live))
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return rows


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{'phase':38} {'offered':>8} {'msgs/s':>9} {'frames/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'CPU %':>6}")
    for name, r in rows:
        p50 = f"{r['p50_ms']:.1f}" if "p50_ms" in r else "-"
        p95 = f"{r['p95_ms']:.1f}" if "p95_ms" in r else "-"
        offered = f"{r['offered_per_s']:.0f}" if r.get("offered_per_s") else "-"
        print(f"{name:38} {offered:>8} {r['msgs_per_s']:9.0f} {r['frames_per_s']:10.0f} {p50:>7} {p95:>7} "
              f"{r['cpu_pct']:6.1f}")
        if r.get("mosquitto_cpu_pct") is not None:
            print(f"{'  (mosquitto process itself)':38} {'':>8} {'':9} {'':10} {'':>7} {'':>7} "
                  f"{r['mosquitto_cpu_pct']:6.1f}")
    print("\noffered = messages/s the publisher process sent (msgs/s of all phases is what reached the sink).")
    print("CPU % = this process (broker + ingest + counting sink) over the measured window; 100 = one core.")
    print("Targets: >= 10,000 frames/s; p95 < 100 ms at 2,000 msgs/s; <= 15 % CPU at 1,000 msgs/s;")
    print("         >= 20,000 msgs/s through Mosquitto and the edge client.")
    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")


async def main(args: argparse.Namespace) -> None:
    rows = await embedded_phases(args.quick)
    external = await mosquitto_phases(args.quick)
    rows += external
    if not external:
        print("mosquitto not installed: external-broker phase skipped (apt-get install mosquitto)")
    print_table(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 s per phase instead of 10 s")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    asyncio.run(_publishers(ns) if ns.publisher else main(ns))
