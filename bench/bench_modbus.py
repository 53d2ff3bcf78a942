"""Benchmark the Modbus source: 50 devices × 100 registers, polled every 1 s and then every 100 ms.

    python bench/bench_modbus.py [--devices 50] [--registers 100] [--seconds 20] [--model]

The simulated PLCs run in a subprocess (so their CPU is not counted as the
source's): one pymodbus TCP server per device on consecutive ports of
127.0.0.1, because a source is one device at its own host:port, as 50 PLCs on
a plant network would be. The sources run in this process and feed a counting
sink. Per phase it prints values/s produced, missed polls (ticks skipped because
a cycle overran), late cycles, CPU of this process (psutil: user+system over
wall time), RSS, and Modbus requests per device per cycle (one per contiguous
block). Stops by itself; traffic only on 127.0.0.1.

With ``--model`` every frame is also scored, as it reaches the sink, by a fleet anomaly model over ten of the
registers (a real ONNX graph, one onnxruntime thread): a frame at a time, the costliest way to score (the store
writer would batch frames of many devices). Needs the dev extra's onnx to build the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.sources.base import Position
from edge.sources.modbus import ModbusSourceConfig  # noqa: E402
from edge.sources.modbus.source import ModbusSource  # noqa: E402
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame  # noqa: E402

# --- simulated devices (subprocess) ----------------------------------------------------------


async def serve(base_port: int, devices: int, registers: int) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    servers = []
    for i in range(devices):
        words = [(i * 1000 + r * 7) % 65536 for r in range(registers)]
        device = SimDevice(id=1, simdata=(
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=words, datatype=DataType.REGISTERS)],
            [SimData(0, values=[0], datatype=DataType.REGISTERS)],
        ))
        server = ModbusTcpServer([device], address=("127.0.0.1", base_port + i))
        await server.serve_forever(background=True)
        servers.append(server)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    for server in servers:
        await server.shutdown()


def free_base_port(count: int) -> int:
    for base in range(21000, 60000, 97):
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise SystemExit("no free range of ports on 127.0.0.1")


# --- the sources (this process) --------------------------------------------------------------


class CountingSink:
    """A FrameSink that only counts, so the figures are the source's own cost (and, with an engine, scoring's)."""

    def __init__(self, engine: Any = None) -> None:
        self.frames = 0
        self.values = 0
        self.engine = engine
        self.scored = 0

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        if self.engine is not None:
            frames, _ = await self.engine.enrich(frames)
            self.scored += sum(1 for f in frames if "model.score" in f.metrics)
        self.frames += len(frames)
        for frame in frames:
            self.values += len(frame.sensors)

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        print(f"rejected from {origin}: {reason}", file=sys.stderr)


def register_map(registers: int) -> list[dict[str, Any]]:
    """100 one-register values: plain counts, scaled signed values, and scaled values with an offset."""
    out: list[dict[str, Any]] = []
    for r in range(registers):
        if r % 2 == 0:
            out.append({"name": f"r{r}", "address": r, "type": "uint16"})
        elif r % 4 == 1:
            out.append({"name": f"r{r}", "address": r, "type": "int16", "scale": 0.1})
        else:
            out.append({"name": f"r{r}", "address": r, "type": "uint16", "scale": 0.01, "offset": -10.0})
    return out


def totals(sources: list[ModbusSource]) -> dict[str, int]:
    keys = ("cycles", "missed_cycles", "late_cycles")
    return {k: sum(int(s.health.detail[k]) for s in sources) for k in keys}


async def scoring_engine(directory: Path) -> Any:
    """An engine with a fleet anomaly model over registers r0..r9 (a real ONNX graph)."""
    from tests.mlkit import fleet_engine

    return await fleet_engine(directory, [f"r{r}" for r in range(10)], mean=100.0, scale=100.0)


async def phase(
    base: int, devices: int, registers: int, period: str, seconds: float, warmup: float, sim: psutil.Process,
    engine: Any = None,
) -> dict[str, Any]:
    sink = CountingSink(engine)
    regs = register_map(registers)
    sources = [
        ModbusSource(ModbusSourceConfig.model_validate({
            "kind": "modbus", "name": f"plc-{i}", "tcp": {"host": "127.0.0.1", "port": base + i},
            "poll_interval": period, "timeout": "1s", "registers": regs,
        }), sink)
        for i in range(devices)
    ]
    me = psutil.Process()
    tasks = [asyncio.create_task(s.run(), name=f"source {s.name}") for s in sources]
    try:
        await asyncio.sleep(warmup)
        down = [s.name for s in sources if s.health.state.value != "connected"]
        if down:
            raise SystemExit(f"not connected after warm-up: {', '.join(down)}")
        before, values0, frames0 = totals(sources), sink.values, sink.frames
        cpu0, sim0, t0 = me.cpu_times(), sim.cpu_times(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, sim1, t1 = me.cpu_times(), sim.cpu_times(), time.monotonic()
        after, values1, frames1 = totals(sources), sink.values, sink.frames
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    wall = t1 - t0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    sim_cpu = (sim1.user - sim0.user) + (sim1.system - sim0.system)
    interval = sources[0].config.poll_interval
    requests = sorted({int(s.health.detail["requests_per_cycle"]) for s in sources})
    return {
        "period": period,
        "target": devices * registers / interval,
        "values_per_s": (values1 - values0) / wall,
        "frames_per_s": (frames1 - frames0) / wall,
        "cycles": after["cycles"] - before["cycles"],
        "expected_cycles": devices * wall / interval,
        "missed": after["missed_cycles"] - before["missed_cycles"],
        "late": after["late_cycles"] - before["late_cycles"],
        "cpu_pct": 100.0 * cpu / wall,
        "rss_mb": me.memory_info().rss / 1e6,
        "requests": ",".join(map(str, requests)),
        "sim_cpu_pct": 100.0 * sim_cpu / wall,
        "scored": sink.scored,
    }


async def bench(args: argparse.Namespace) -> None:
    base = free_base_port(args.devices)
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(base), "--devices", str(args.devices),
        "--registers", str(args.registers),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        if line.strip() != b"READY":
            raise SystemExit("the simulated devices did not start")
        sim = psutil.Process(server.pid)
        with tempfile.TemporaryDirectory() as tmp:
            engine = await scoring_engine(Path(tmp)) if args.model else None
            try:
                rows = [
                    await phase(base, args.devices, args.registers, period, args.seconds, args.warmup, sim, engine)
                    for period in ("1s", "100ms")
                ]
            finally:
                if engine is not None:
                    engine.close()
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            await asyncio.wait_for(server.wait(), 10)
        except TimeoutError:
            server.kill()
            await server.wait()
    print_table(args, rows)


def print_table(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(f"\nModbus source: {args.devices} devices x {args.registers} registers over TCP on 127.0.0.1, "
          f"{args.seconds:.0f} s per phase after {args.warmup:.0f} s warm-up; {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}" + ("; every frame scored by a model, one at a time" if args.model else ""))
    header = ("poll", "target values/s", "values/s", "frames/s", "cycles (expected)", "missed polls",
              "late cycles", "source CPU %core", "RSS MB", "requests/device/cycle", "simulator CPU %core")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join([
            r["period"], f"{r['target']:.0f}", f"{r['values_per_s']:.0f}", f"{r['frames_per_s']:.1f}",
            f"{r['cycles']} ({r['expected_cycles']:.0f})", str(r["missed"]), str(r["late"]),
            f"{r['cpu_pct']:.1f}", f"{r['rss_mb']:.0f}", r["requests"], f"{r['sim_cpu_pct']:.0f}",
        ]))
    if args.model:
        print("frames scored: " + ", ".join(f"{r['scored']} ({r['period']})" for r in rows))
    print("targets: 1 s < 10% of a core; 100 ms: period kept (0 missed polls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--registers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--model", action="store_true", help="score every frame with a fleet anomaly model")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.devices <= 200 or not 1 <= args.registers <= 125 or not 1 <= args.seconds <= 60:
        raise SystemExit("keep --devices 1..200, --registers 1..125, --seconds 1..60")
    if args.serve:
        asyncio.run(serve(args.serve, args.devices, args.registers))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
