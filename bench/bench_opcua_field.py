"""Benchmark the OPC-UA source against a foreign server: lost updates and time to resume after a restart.

    python bench/bench_opcua_field.py [--seconds 60] [--outages 3] [--outage 10] [--json]

The PLC is node-opcua (tests/interop/opcua_server, installed by `make install`), a
subprocess whose counter ``ns=1;s=Counter`` goes up by one every 100 ms with its
SourceTimestamp, so a lost update is a gap in the numbers.

1. Lost updates: three sources subscribe to the counter at once for ``--seconds``:
   the default settings (publishing 1 s, sampling 0, queue 20), the defaults at
   100 ms publishing, and the former defaults (sampling = publishing = 100 ms,
   queue 1) for comparison. Printed: changes expected (from the counter's range),
   received, lost, and the median / 95th percentile latency from SourceTimestamp
   to the sink (one clock: same machine).
2. Resume after a restart: ``--outages`` times, the server is killed (SIGKILL),
   stays down ``--outage`` seconds and is started again on the same port. Printed:
   seconds from the moment its port accepts connections (the benchmark probes it
   every 10 ms) to the first value of the new server at the sink.
Targets: 0 lost updates with the defaults; values resume within 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.sources.base import Position
from edge.sources.opcua import OpcUaSourceConfig  # noqa: E402
from edge.sources.opcua.source import OpcUaSource  # noqa: E402
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame  # noqa: E402
from tests.edge.sources.nodeopcua import NodeOpcUaServer, node_opcua_missing  # noqa: E402
from tests.support import free_port  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "defaults (publishing 1 s)": {},
    "defaults, publishing 100 ms": {"publishing_interval": "100ms"},
    "former defaults (sampling = publishing = 100 ms, queue 1)": {
        "publishing_interval": "100ms", "sampling_interval": "100ms", "queue_size": 1},
}


class CounterSink:
    """Keeps each counter value with its delay from SourceTimestamp to arrival."""

    def __init__(self) -> None:
        self.values: list[tuple[int, float, float]] = []  # (count, source ts, received at)

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        now = time.time()
        for frame in frames:
            if "count" in frame.sensors:
                self.values.append((int(frame.sensors["count"]), frame.ts, now))

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        print(f"rejected {origin}: {reason}", file=sys.stderr)


def config(name: str, url: str, **extra: Any) -> OpcUaSourceConfig:
    return OpcUaSourceConfig.model_validate({
        "kind": "opcua", "name": name, "url": url, "nodes": [{"name": "count", "node_id": "ns=1;s=Counter"}],
        **extra,
    })


@contextlib.asynccontextmanager
async def running(source: OpcUaSource) -> Any:
    task = asyncio.create_task(source.run(), name=f"bench:opcua:{source.name}")
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def lost_updates(url: str, seconds: float) -> list[dict[str, Any]]:
    sinks = {label: CounterSink() for label in SETTINGS}
    sources = [OpcUaSource(config(f"s{i}", url, **extra), sinks[label])
               for i, (label, extra) in enumerate(SETTINGS.items())]
    async with contextlib.AsyncExitStack() as stack:
        for source in sources:
            await stack.enter_async_context(running(source))
        async with asyncio.timeout(60):
            while not all(sink.values for sink in sinks.values()):  # noqa: ASYNC110 - warm-up
                await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # past the initial value and the first cycles
        marks = {label: len(sink.values) for label, sink in sinks.items()}
        await asyncio.sleep(seconds)
        await asyncio.sleep(1.5)  # the last publish of the slowest source (1 s) is in
    rows = []
    for label, sink in sinks.items():
        window = sink.values[marks[label]:]
        counts = [c for c, _ts, _at in window]
        expected = max(counts) - min(counts) + 1 if counts else 0
        delays = [(at - ts) * 1000 for _c, ts, at in window]
        rows.append({
            "settings": label, "expected": expected, "received": len(set(counts)),
            "lost": expected - len(set(counts)), "duplicates": len(counts) - len(set(counts)),
            "latency_ms_median": statistics.median(delays) if delays else float("nan"),
            "latency_ms_p95": _percentile(delays, 0.95) if delays else float("nan"),
        })
    return rows


async def _accepting_at(port: int) -> float:
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        at = time.time()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return at


async def resume_after_restart(srv: NodeOpcUaServer, outages: int, outage: float) -> list[dict[str, Any]]:
    sink = CounterSink()
    source = OpcUaSource(config("restart", srv.url, publishing_interval="100ms"), sink)
    rows = []
    async with running(source):
        async with asyncio.timeout(60):
            while not sink.values:  # noqa: ASYNC110 - warm-up
                await asyncio.sleep(0.05)
        for _ in range(outages):
            await srv.kill()
            killed = time.time()
            await asyncio.sleep(outage)
            accepting = asyncio.create_task(_accepting_at(srv.port), name="bench:probe")
            await srv.start()
            accepted = await accepting
            async with asyncio.timeout(60):  # the old server is long gone: what arrives now is the new one's
                while not sink.values or sink.values[-1][2] < accepted:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            first = next(at for _c, _ts, at in sink.values if at >= accepted)
            rows.append({"down_s": accepted - killed, "resumed_after_s": first - accepted})
            await asyncio.sleep(2.0)
    return rows


def print_report(lost: list[dict[str, Any]], resumed: list[dict[str, Any]], seconds: float) -> None:
    print(f"\nOPC-UA source against node-opcua: a counter changing every 100 ms, {seconds:g} s per source\n")
    header = f"{'settings':<58} {'expected':>8} {'received':>8} {'lost':>5} {'lost %':>7} {'p50 ms':>7} {'p95 ms':>7}"
    print(header)
    print("-" * len(header))
    for r in lost:
        pct = 100 * r["lost"] / r["expected"] if r["expected"] else float("nan")
        print(f"{r['settings']:<58} {r['expected']:>8} {r['received']:>8} {r['lost']:>5} {pct:>7.2f} "
              f"{r['latency_ms_median']:>7.0f} {r['latency_ms_p95']:>7.0f}")
    print("\nresume after a restart (server killed, down, started again on the same port):")
    for i, r in enumerate(resumed, 1):
        print(f"  restart {i}: down {r['down_s']:.1f} s; first value {r['resumed_after_s']:.2f} s after the port "
              "accepted connections")
    if resumed:
        worst = max(r["resumed_after_s"] for r in resumed)
        print(f"  worst {worst:.2f} s (target <= 2 s)")


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-opcua-field-") as tmp:
        srv = NodeOpcUaServer(free_port(), Path(tmp) / "pki")
        await srv.start()
        try:
            lost = await lost_updates(srv.url, args.seconds)
            resumed = await resume_after_restart(srv, args.outages, args.outage)
        finally:
            await srv.kill()
    print_report(lost, resumed, args.seconds)
    if args.json:
        print(json.dumps({"lost_updates": lost, "resume": resumed}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds of the lost-update phase")
    parser.add_argument("--outages", type=int, default=3, help="server restarts in the resume phase")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the server stays down each time")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    cli = parser.parse_args()
    if (missing := node_opcua_missing()) is not None:
        raise SystemExit(f"bench_opcua_field: {missing}")
    asyncio.run(main(cli))
