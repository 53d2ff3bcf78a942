"""Benchmark the OPC-UA source: 1,000 variables changing at 10 Hz, one subscription at 100 ms.

    python bench/bench_opcua.py [--items 1000] [--rate 10] [--seconds 12] [--servers 1] [--json]

The simulated PLC (an asyncua server) runs in a subprocess, so its CPU is not
counted as the source's; it rewrites every variable ``--rate`` times a second
with a fresh SourceTimestamp. The source runs in this process with a counting
sink (no storage). After a warm-up (every item seen once, plus 2 s) it measures
for ``--seconds``: notifications/s received, frames/s, CPU of this process
(psutil: user+system over wall time, 100% = one core), RSS, and the server's
CPU for context. A second phase does the same with ``mode = "poll"`` at the
same rate. Stops by itself (about 40 s); traffic only on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.sources.base import Position
from edge.sources.opcua import OpcUaSourceConfig  # noqa: E402
from edge.sources.opcua.source import OpcUaSource  # noqa: E402
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame  # noqa: E402
from tests.support import free_port  # noqa: E402

# --- simulated PLC (subprocess) ------------------------------------------------------------------


async def serve(port: int, items: int, rate: float) -> None:
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    idx = await server.register_namespace("urn:twinedge:bench")
    plc = await server.nodes.objects.add_object(idx, "Plc")
    ids = []
    for i in range(items):
        var = await plc.add_variable(ua.NodeId(f"V{i}", idx), f"V{i}", ua.Variant(0.0, ua.VariantType.Double))
        ids.append(var.nodeid)
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    tick, n = 1.0 / rate, 0
    start = next_at = loop.time()
    while not stdin_closed.done():
        n += 1
        now = datetime.datetime.now(datetime.UTC)
        for i, nid in enumerate(ids):
            dv = ua.DataValue(ua.Variant(float(n * 1000 + i), ua.VariantType.Double), SourceTimestamp=now)
            await server.write_attribute_value(nid, dv)
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    print(f"WROTE {n / (loop.time() - start):.2f}", flush=True)  # write cycles per second achieved
    await server.stop()


# --- the source under test (this process) --------------------------------------------------------


class CountingSink:
    def __init__(self) -> None:
        self.frames = 0
        self.values = 0
        self.seen: set[str] = set()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        self.frames += len(frames)
        for frame in frames:
            self.values += len(frame.sensors)
            if len(self.seen) < 100_000:
                self.seen.update(f"{frame.device_id}/{k}" for k in frame.sensors)

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        print(f"rejected {origin}: {reason}", file=sys.stderr)


def make_config(index: int, port: int, items: int, mode: str, interval: str) -> OpcUaSourceConfig:
    return OpcUaSourceConfig.model_validate({
        "kind": "opcua", "name": f"bench-{index}", "url": f"opc.tcp://127.0.0.1:{port}", "mode": mode,
        "publishing_interval": interval, "sampling_interval": interval, "poll_interval": interval,
        "nodes": [{"name": f"v{i}", "node_id": f"ns=2;s=V{i}", "device_id": f"plc-{index}-{i // 500}"}
                  for i in range(items)],
    })


async def measure(ports: list[int], items: int, mode: str, interval: str, seconds: float,
                  servers: list[psutil.Process]) -> dict[str, Any]:
    sink = CountingSink()
    per_server = items // len(ports)
    sources = [OpcUaSource(make_config(k, port, per_server, mode, interval), sink) for k, port in enumerate(ports)]
    tasks = [asyncio.create_task(src.run(), name=f"bench:opcua:{src.name}") for src in sources]
    me = psutil.Process()

    def server_cpu() -> float:
        return sum(p.cpu_times().user + p.cpu_times().system for p in servers)

    try:
        async with asyncio.timeout(60):
            while len(sink.seen) < per_server * len(ports):  # noqa: ASYNC110 - warm-up: every item seen once
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        t0, c0, s0 = time.perf_counter(), me.cpu_times(), server_cpu()
        v0, f0 = sink.values, sink.frames
        await asyncio.sleep(seconds)
        t1, c1, s1 = time.perf_counter(), me.cpu_times(), server_cpu()
        wall = t1 - t0
        devices = len(ports) * -(-per_server // 500)
        return {
            "mode": mode,
            "values_per_s": (sink.values - v0) / wall,
            "frames_per_s": (sink.frames - f0) / wall,
            "cycles_per_s": (sink.frames - f0) / wall / devices,
            "cpu_pct": 100 * ((c1.user - c0.user) + (c1.system - c0.system)) / wall,
            "rss_mb": me.memory_info().rss / 1e6,
            "server_cpu_pct": 100 * (s1 - s0) / wall,
            "state": ",".join(sorted({src.health.state.value for src in sources})),
        }
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def start_server(items: int, rate: float) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(port), "--items", str(items), "--rate", str(rate),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    if line.strip() != b"READY":
        raise SystemExit(f"the simulated PLC did not start: {line!r}")
    return proc, port


async def stop_server(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    try:
        async with asyncio.timeout(10):
            out = await proc.stdout.read()
            await proc.wait()
    except TimeoutError:
        proc.kill()
        return "?"
    return out.decode().strip().removeprefix("WROTE ")


def print_table(args: argparse.Namespace, interval: str, results: list[dict[str, Any]], wrote: list[str]) -> None:
    expected = args.items * args.rate
    print(f"\nOPC-UA source: {args.items} items changing at {args.rate:g} Hz (expected {expected:,.0f} values/s), "
          f"interval {interval}, {args.servers} server process(es), {args.seconds:g} s per phase, "
          f"{psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.2f}")
    print(f"simulated PLC write cycles/s achieved (per server, whole run): {', '.join(wrote)}\n")
    header = (f"{'mode':<10} {'values/s':>10} {'frames/s':>9} {'cycles/s':>9} {'CPU %':>7} "
              f"{'CPU % per 10k/s':>16} {'RSS MB':>7} {'server CPU %':>13}  state")
    print(header)
    print("-" * len(header))
    for r in results:
        per_10k = r["cpu_pct"] * 10_000 / r["values_per_s"] if r["values_per_s"] else float("nan")
        print(f"{r['mode']:<10} {r['values_per_s']:>10,.0f} {r['frames_per_s']:>9.1f} {r['cycles_per_s']:>9.1f} "
              f"{r['cpu_pct']:>7.1f} {per_10k:>16.1f} {r['rss_mb']:>7.1f} {r['server_cpu_pct']:>13.1f}  {r['state']}")
    print("\ncycles/s: publish responses (subscribe) or reads (poll) per second that reached the sink;"
          "\nCPU %: this process (the source and a counting sink), 100% = one core.")
    if args.json:
        print(json.dumps(results))


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    per_server = args.items // args.servers
    started = [await start_server(per_server, args.rate) for _ in range(args.servers)]
    procs, ports = [p for p, _ in started], [port for _, port in started]
    interval = f"{1000 / args.rate:g}ms"
    try:
        servers = [psutil.Process(p.pid) for p in procs]
        results = [await measure(ports, args.items, mode, interval, args.seconds, servers)
                   for mode in ("subscribe", "poll")]
    finally:
        wrote = [await stop_server(p) for p in procs]
    print_table(args, interval, results, wrote)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="changes per item per second")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per phase")
    parser.add_argument("--servers", type=int, default=1, help="split the items over this many server processes")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    cli = parser.parse_args()
    if cli.serve:
        asyncio.run(serve(cli.serve, cli.items, cli.rate))
    else:
        asyncio.run(main(cli))
