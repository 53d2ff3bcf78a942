"""Benchmark the MTConnect source with the simulator's agent replaying the Okuma lathe recording.

    python bench/bench_mtconnect.py [--replays 8] [--seconds 60] [--json]

The agent runs in a subprocess, so its CPU is not counted as the edge's.

1. Ingest at full speed: the agent replays the recording ``--replays`` times as fast as it can into its
   buffer and pauses; the source then reads the whole buffer from sequence 1 (a position stored at 1, as
   after an outage) over the multipart stream, (a) into a counting sink (the source alone) and (b) into the
   real store (the store writer, SQLite in WAL with synchronous=full, in a temporary directory).
   Printed: observations/s and frames/s until the source caught up with the agent.
2. The recording's real rate: the agent replays at speed 1 (about 18 observations/s, in bursts); the source
   and the real store run for ``--seconds``; printed: this process's CPU (user+system over wall time, 100% =
   one core) and RSS.
Traffic only on 127.0.0.1; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import StoreConfig  # noqa: E402
from edge.sources.base import Position  # noqa: E402
from edge.sources.mtconnect.config import MTConnectSourceConfig  # noqa: E402
from edge.sources.mtconnect.source import MTConnectSource  # noqa: E402
from edge.store import Store  # noqa: E402
from edge.writer import StoreWriter  # noqa: E402
from shared.batch import Document, EdgeEvent  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402

AGENT = """
import asyncio, json, math, sys
from twinsim.mtconnect import AgentSettings, MTConnectAgent
async def main(replays, speed):
    settings = AgentSettings(speed=speed, loop=True, buffer_size=2**22, record=False, timestamps="wall")
    async with MTConnectAgent(settings) as agent:
        if math.isinf(speed):
            while agent.loops < replays:
                await agent.changed()
            agent.pause()
        print(json.dumps({"url": agent.url, "instance": agent.instance_id,
                          "next": agent.buffer.next_sequence}), flush=True)
        await asyncio.Event().wait()
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
"""


async def _stop(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _cpu_pct(before: Any, after: Any, wall: float) -> float:
    """Percent of one core between two ``cpu_times()``."""
    return 100 * ((after.user - before.user) + (after.system - before.system)) / wall


class CountingSink:
    """The source alone: counts what it hands over and keeps its position (in memory)."""

    def __init__(self, start: str | None = None) -> None:
        self.frames = self.events = 0
        self.positions: dict[str, str] = {}
        self.start = start

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False, events: Sequence[EdgeEvent] = (),
                  documents: Sequence[Document] = (), position: Position | None = None) -> None:
        self.frames += len(frames)
        self.events += len(events)
        if position is not None:
            self.positions[position.key] = position.value

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        print(f"rejected {origin}: {reason}", file=sys.stderr)

    async def position(self, key: str) -> str | None:
        return self.positions.get(key, self.start)


class StoreSink(StoreWriter):
    """The real store writer; the first position read is the one given (read the whole buffer)."""

    start: str | None = None

    async def position(self, key: str) -> str | None:
        return await super().position(key) or self.start


@contextlib.asynccontextmanager
async def agent(replays: int, speed: float) -> AsyncIterator[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", AGENT, str(replays), str(speed),
                                                stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[1])
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(600):
            info = json.loads(await proc.stdout.readline())
        info["proc"] = psutil.Process(proc.pid)
        yield info
    finally:
        proc.kill()
        await proc.wait()


def config(url: str) -> MTConnectSourceConfig:
    return MTConnectSourceConfig.model_validate({"kind": "mtconnect", "name": "bench", "url": url,
                                                 "heartbeat": "1s", "interval": "10ms", "count": 5000})


async def ingest(info: dict[str, Any], store_dir: Path | None) -> dict[str, Any]:
    start = json.dumps({"instance": info["instance"], "next": 1})
    store: Store | None = None
    sink: Any
    tasks: list[asyncio.Task[None]] = []
    if store_dir is None:
        sink = CountingSink(start)
    else:
        store = Store(store_dir / "queue.db", StoreConfig())
        await store.open()
        sink = StoreSink(store, max_frames=1000, max_delay=0.02, queue_frames=20_000)
        sink.start = start
        tasks.append(asyncio.create_task(sink.run(), name="bench:writer"))
    source = MTConnectSource(config(info["url"]), sink)
    me = psutil.Process()
    t0, c0, a0 = time.perf_counter(), me.cpu_times(), info["proc"].cpu_times()
    tasks.append(asyncio.create_task(source.run(), name="bench:mtconnect"))
    try:
        async with asyncio.timeout(600):
            while source.health.detail["next_sequence"] != info["next"]:  # noqa: ASYNC110 - polling a figure
                await asyncio.sleep(0.01)
        t1, c1, a1 = time.perf_counter(), me.cpu_times(), info["proc"].cpu_times()
    finally:
        await _stop(tasks)
        if store is not None:
            await store.close()
    wall = t1 - t0
    return {"sink": "store" if store_dir else "count", "observations": source.health.values,
            "frames": source.health.frames, "seconds": wall, "observations_per_s": source.health.values / wall,
            "frames_per_s": source.health.frames / wall,
            "cpu_pct": _cpu_pct(c0, c1, wall), "agent_cpu_pct": _cpu_pct(a0, a1, wall)}


async def real_rate(info: dict[str, Any], seconds: float, store_dir: Path) -> dict[str, Any]:
    store = Store(store_dir / "real.db", StoreConfig())
    await store.open()
    writer = StoreWriter(store, max_frames=1000, max_delay=0.02, queue_frames=20_000)
    source = MTConnectSource(config(info["url"]), writer)
    tasks = [asyncio.create_task(writer.run(), name="bench:writer"),
             asyncio.create_task(source.run(), name="bench:mtconnect")]
    me = psutil.Process()
    try:
        await asyncio.sleep(2.0)  # connected, seeded from /current
        o0, f0 = source.health.values, source.health.frames
        t0, c0, a0 = time.perf_counter(), me.cpu_times(), info["proc"].cpu_times()
        await asyncio.sleep(seconds)
        t1, c1, a1 = time.perf_counter(), me.cpu_times(), info["proc"].cpu_times()
    finally:
        await _stop(tasks)
        await store.close()
    wall = t1 - t0
    return {"seconds": wall, "observations_per_s": (source.health.values - o0) / wall,
            "frames_per_s": (source.health.frames - f0) / wall,
            "cpu_pct": _cpu_pct(c0, c1, wall), "agent_cpu_pct": _cpu_pct(a0, a1, wall),
            "rss_mb": me.memory_info().rss / 1e6, "state": source.health.state.value}


async def main(args: argparse.Namespace) -> None:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with agent(args.replays, float("inf")) as info:
            print(f"agent buffer filled: {info['next'] - 1:,} observations ({args.replays} replays of the Okuma "
                  "recording)", flush=True)
            results["ingest"] = [await ingest(info, None), await ingest(info, Path(tmp))]
        async with agent(1, 1.0) as info:
            results["real_rate"] = await real_rate(info, args.seconds, Path(tmp))
    print("\nMTConnect ingest at full speed (multipart stream from sequence 1, count 5000 per part)")
    print(f"{'sink':<8} {'observations':>12} {'frames':>8} {'seconds':>8} {'obs/s':>9} {'frames/s':>9} {'CPU %':>6} "
          f"{'agent %':>8}")
    for r in results["ingest"]:
        print(f"{r['sink']:<8} {r['observations']:>12,} {r['frames']:>8,} {r['seconds']:>8.2f} "
              f"{r['observations_per_s']:>9,.0f} {r['frames_per_s']:>9,.0f} {r['cpu_pct']:>6.0f} "
              f"{r['agent_cpu_pct']:>8.0f}")
    print("CPU %: this process (the source, and with sink 'store' the store writer); agent %: the simulator's agent")
    r = results["real_rate"]
    print(f"\nAt the recording's real rate for {r['seconds']:.0f} s (source + store, synchronous=full): "
          f"{r['observations_per_s']:.1f} observations/s, {r['frames_per_s']:.1f} frames/s; edge CPU "
          f"{r['cpu_pct']:.1f}% of one core, RSS {r['rss_mb']:.0f} MB (agent {r['agent_cpu_pct']:.1f}%); "
          f"source {r['state']}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replays", type=int, default=8, help="replays of the recording in the buffer (default 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="the real-rate run's length (default 60)")
    parser.add_argument("--json", action="store_true")
    asyncio.run(main(parser.parse_args()))
