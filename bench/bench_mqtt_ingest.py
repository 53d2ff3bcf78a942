"""MQTT ingest benchmark: QoS 1 publishers on 127.0.0.1 -> embedded broker (or Mosquitto + edge client) -> store.

Run: python bench/bench_mqtt_ingest.py            (about 90 s; add --quick for a 30 s smoke run)
     python bench/bench_mqtt_ingest.py --bulk [--sink model]   (phase 2 alone, about 12 s)

Publishers run in a separate process (a lean raw-socket MQTT client, so the
publisher side is not the bottleneck); the broker and the sink run in this
process, whose CPU is what the table reports. By default the sink is the real
durable path (store writer -> SQLite WAL, synchronous=FULL): a PUBACK leaves only
after its frames' transaction committed. `--sink count` measures the broker alone; `--sink model` is the
durable path with a fleet anomaly model scoring every frame before it is stored (needs the dev extra's onnx).
Phases:
  1. sustained rate, single-frame messages, unlimited publishers
  2. sustained rate, 50 frames per message
  3. publish-to-PUBACK latency at 2,000 messages/s
  4. broker CPU at a steady 1,000 messages/s
  5. Mosquitto (max_queued_messages 0) -> ExternalMqttIngest -> sink: a backlog queued while the edge was
     away, then live publishers at 20,000 and 30,000 msgs/s (`--only mosquitto` runs just these)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from edge import heap  # noqa: E402
from edge.broker.client import ExternalMqttIngest  # noqa: E402
from edge.broker.config import AclRule, BrokerConfig, ListenerConfig, MqttClientConfig  # noqa: E402
from edge.broker.embedded import EmbeddedBroker  # noqa: E402
from edge.config import StoreConfig  # noqa: E402
from edge.sources.base import Position
from edge.store import Store  # noqa: E402
from edge.writer import StoreWriter  # noqa: E402
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame  # noqa: E402
from tests.edge.broker.mosquitto import Mosquitto, mosquitto_available  # noqa: E402
from tests.support import free_port  # noqa: E402

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
    """Counts frames: the broker alone (`--sink count`); the default sink is the real durable store."""

    def __init__(self) -> None:
        self.frames = 0
        self.rejected = 0
        self.target = 0
        self.reached = asyncio.Event()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        self.frames += len(frames)
        if self.target and self.frames >= self.target:
            self.reached.set()

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        self.rejected += 1


class StoreSink:
    """The real durable path: a StoreWriter over a Store with the default settings, in a temp dir; with
    ``scored``, an inference engine whose fleet model scores every frame before it is stored."""

    def __init__(self, directory: Path, *, scored: bool = False) -> None:
        self.directory = directory
        self.scored = scored
        self.engine: Any = None
        config = StoreConfig()
        self.store = Store(directory / "queue.db", config)
        self.writer = StoreWriter(
            self.store, max_frames=config.batch_max_frames, max_delay=config.batch_max_delay,
            queue_frames=config.ingest_queue_frames,
        )
        self.target = 0
        self.reached = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.writer.on_commit(self._committed)

    async def _committed(self, frames: Sequence[TelemetryFrame]) -> None:
        if self.target and self.frames >= self.target:
            self.reached.set()

    @property
    def frames(self) -> int:
        return self.writer.committed_frames

    async def start(self) -> None:
        heap.enable()  # as the daemon does: start-up's objects (and the model's) are kept out of full collections
        if self.scored:
            self.engine = await scoring_engine(self.directory)
            self.writer.enrich = self.engine.enrich
        await self.store.open()
        heap.settle()
        self._task = asyncio.create_task(self.writer.run(), name="bench-store-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.engine is not None:
            self.engine.close()
        await self.store.close()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        await self.writer.put(frames, durable=durable)

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        await self.writer.reject(origin, reason, payload)


async def scoring_engine(directory: Path) -> Any:
    """An engine with a fleet anomaly model over the publishers' temp_c and rpm (a real ONNX graph)."""
    from tests.mlkit import fleet_engine

    return await fleet_engine(directory, ("temp_c", "rpm"), mean=1000.0, scale=1000.0)


async def run_phase(
    port: int, sink: CountingSink | StoreSink, *, seconds: float, connections: int, window: int, frames: int = 1,
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
    result["cpu_us_per_frame"] = result["cpu_pct"] / 100 / result["frames_per_s"] * 1e6 if f1 > f0 else None
    result["offered_per_s"] = result["sent"] / (seconds + warmup) if seconds + warmup else None
    return result


async def embedded_phases(quick: bool, sink_kind: str, bulk: bool = False) -> list[tuple[str, dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        sink: CountingSink | StoreSink = (CountingSink() if sink_kind == "count"
                                          else StoreSink(Path(tmp), scored=sink_kind == "model"))
        if isinstance(sink, StoreSink):
            await sink.start()
        try:
            return await _embedded_phases(quick, sink, bulk)
        finally:
            if isinstance(sink, StoreSink):
                await sink.stop()


async def _embedded_phases(quick: bool, sink: CountingSink | StoreSink, bulk: bool = False
                           ) -> list[tuple[str, dict[str, Any]]]:
    port = free_port()
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
        if bulk:
            results.append(("embedded, 50 frames/msg, 4 conns", await run_phase(
                port, sink, seconds=secs, connections=4, window=20, frames=50)))
            return results
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


async def wait_frames(sink: CountingSink | StoreSink, target: int, timeout: float) -> None:
    sink.target, sink.reached = target, asyncio.Event()
    if sink.frames < target:
        async with asyncio.timeout(timeout):
            await sink.reached.wait()


async def mosquitto_phases(quick: bool, sink_kind: str, inflight: int) -> list[tuple[str, dict[str, Any]]]:
    """Mosquitto -> ExternalMqttIngest -> sink: (a) draining a backlog queued while the edge was away, which is
    what the edge client alone can sustain; (b) live publishers at a fixed 20,000 msgs/s."""
    if not mosquitto_available():
        return []
    with tempfile.TemporaryDirectory() as tmp:
        sink: CountingSink | StoreSink = (CountingSink() if sink_kind == "count"
                                          else StoreSink(Path(tmp), scored=sink_kind == "model"))
        if isinstance(sink, StoreSink):
            await sink.start()
        try:
            return await _mosquitto_phases(quick, sink, inflight, Path(tmp))
        finally:
            if isinstance(sink, StoreSink):
                await sink.stop()


async def _mosquitto_phases(
    quick: bool, sink: CountingSink | StoreSink, inflight: int, tmp: Path
) -> list[tuple[str, dict[str, Any]]]:
    port = free_port()
    config = MqttClientConfig(port=port, client_id="bench-edge")
    rows = []
    async with Mosquitto(port, tmp, max_inflight=inflight) as mosquitto:
        assert mosquitto.proc is not None
        broker_proc = psutil.Process(mosquitto.proc.pid)
        # register the persistent session, then queue a backlog while the edge is away
        ingest = ExternalMqttIngest(config, sink, edge_id="bench")
        task = asyncio.create_task(ingest.run(), name="bench-external")
        await ingest.started.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        planned = 60_000 if quick else 200_000
        queued = await run_phase(port, CountingSink(), seconds=planned / 40_000, connections=4, window=200,
                                 rate=40_000, warmup=0.0)
        backlog = int(queued["sent"])
        me = psutil.Process()
        f0 = sink.frames
        task = asyncio.create_task(ingest.run(), name="bench-external")
        broker_proc.cpu_percent()
        cpu0, t0 = me.cpu_times(), time.monotonic()
        await wait_frames(sink, f0 + int(backlog * 0.98), 120)
        cpu1, t1 = me.cpu_times(), time.monotonic()
        rate = (sink.frames - f0) / (t1 - t0)
        cpu = 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / (t1 - t0)
        drained = {"msgs_per_s": rate, "frames_per_s": rate, "cpu_pct": cpu, "offered_per_s": None,
                   "mosquitto_cpu_pct": broker_proc.cpu_percent()}
        rows.append(("Mosquitto -> edge client, backlog", drained))
        try:
            try:
                await wait_frames(sink, f0 + backlog, 30)  # let the rest of the backlog go before the live phase
            except TimeoutError:
                print(f"backlog: {sink.frames - f0} of {backlog} stored after 30 s; edge: {ingest.snapshot()}")
            for offered in (20_000, 30_000):
                broker_proc.cpu_percent()
                live = await run_phase(port, sink, seconds=4.0 if quick else 10.0, connections=4, window=500,
                                       rate=offered)
                live["mosquitto_cpu_pct"] = broker_proc.cpu_percent()
                rows.append((f"Mosquitto -> edge client, {offered // 1000}k/s offered", live))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return rows


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{'phase':38} {'offered':>8} {'msgs/s':>9} {'frames/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'CPU %':>6} "
          f"{'µs/frame':>8}")
    for name, r in rows:
        p50 = f"{r['p50_ms']:.1f}" if "p50_ms" in r else "-"
        p95 = f"{r['p95_ms']:.1f}" if "p95_ms" in r else "-"
        offered = f"{r['offered_per_s']:.0f}" if r.get("offered_per_s") else "-"
        per_frame = f"{r['cpu_us_per_frame']:.2f}" if r.get("cpu_us_per_frame") else "-"
        print(f"{name:38} {offered:>8} {r['msgs_per_s']:9.0f} {r['frames_per_s']:10.0f} {p50:>7} {p95:>7} "
              f"{r['cpu_pct']:6.1f} {per_frame:>8}")
        if r.get("mosquitto_cpu_pct") is not None:
            print(f"{'  (mosquitto process itself)':38} {'':>8} {'':9} {'':10} {'':>7} {'':>7} "
                  f"{r['mosquitto_cpu_pct']:6.1f}")
    print("\noffered = messages/s the publisher process sent (msgs/s of all phases is what reached the sink).")
    print("CPU % = this process (broker + ingest + sink) over the measured window; 100 = one core;")
    print("µs/frame = that CPU time per frame stored (the figure to compare when other work shares the machine).")
    print("Targets: >= 10,000 frames/s; p95 < 100 ms at 2,000 msgs/s; <= 15 % CPU at 1,000 msgs/s;")
    print("         >= 20,000 msgs/s through Mosquitto and the edge client.")
    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")


async def main(args: argparse.Namespace) -> None:
    sinks = {"count": "counting only", "store": "durable store (SQLite WAL, synchronous=FULL)",
             "model": "durable store (SQLite WAL, synchronous=FULL), every frame scored by a fleet anomaly model"}
    print(f"sink: {sinks[args.sink]}")
    rows = await embedded_phases(args.quick, args.sink, args.bulk) if args.only != "mosquitto" else []
    external = (await mosquitto_phases(args.quick, args.sink, args.inflight)
                if args.only != "embedded" and not args.bulk else [])
    rows += external
    if not external and args.only != "embedded" and not args.bulk:
        print("mosquitto not installed: external-broker phase skipped (apt-get install mosquitto)")
    print_table(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 s per phase instead of 10 s")
    parser.add_argument("--sink", choices=["store", "count", "model"], default="store",
                        help="store: the real durable path (default); count: the broker alone; "
                        "model: the durable path with every frame scored")
    parser.add_argument("--only", choices=["embedded", "mosquitto"], help="run one group of phases")
    parser.add_argument("--bulk", action="store_true",
                        help="run only the 50 frames per message phase (about 12 s): compare --sink store and model")
    parser.add_argument("--inflight", type=int, default=1000,
                        help="Mosquitto's max_inflight_messages (default 1000, as docs/mqtt.md recommends)")
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
