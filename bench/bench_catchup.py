"""Catch-up benchmark: a large backlog queued on the edge, drained to a local cloud over HTTP.

Run: python bench/bench_catchup.py               (1,000,000 frames; a few minutes)
     python bench/bench_catchup.py --frames 200000 --batch 20000 --compression zstd

The edge side is the real uplink over the real durable queue, in this process;
the cloud is `twincloud serve` on SQLite in another process (uvicorn on
127.0.0.1). Frames carry 5 sensor values each. Target: >= 20,000 frames/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from edge.config import StoreConfig, UplinkConfig  # noqa: E402
from edge.store import Store  # noqa: E402
from edge.uplink import Uplink  # noqa: E402
from shared.batch import EdgeHealth  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from tests.cloud.server import CloudServer  # noqa: E402

T0 = 1_790_000_000.0


async def fill(store: Store, count: int) -> float:
    started = time.perf_counter()
    chunk = 20_000
    for first in range(0, count, chunk):
        frames = [
            TelemetryFrame(ts=T0 + i * 0.01, device_id=f"machine-{i % 50}",
                           sensors={"temp": 20.0 + i % 7, "vib": 1.5, "current": 12.25, "pressure": 6.0, "n": i})
            for i in range(first, min(first + chunk, count))
        ]
        await store.append(frames)
    return time.perf_counter() - started


async def health() -> EdgeHealth:
    return EdgeHealth(queue_depth=0)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cloud = CloudServer(tmp / "cloud", edges=["bench-edge"])
        await asyncio.to_thread(cloud.start)
        try:
            store = Store(tmp / "queue.db", StoreConfig(disk_budget=8 * 1024**3))
            await store.open()
            fill_s = await fill(store, args.frames)
            print(f"queued {args.frames:,} frames on the edge in {fill_s:.1f} s")
            config = UplinkConfig.model_validate({
                "url": f"http://127.0.0.1:{cloud.port}", "token": cloud.edge_tokens["bench-edge"],
                "batch_max_frames": args.batch, "batch_max_bytes": "64MiB", "interval": "0s",
                "compression": args.compression})
            uplink = Uplink(config, store, edge_id="bench-edge", health=health)
            cloud_proc = psutil.Process(cloud.pid) if cloud.pid else None
            me = psutil.Process()
            load0 = os.getloadavg()[0]
            cpu0, ccpu0, t0 = me.cpu_times(), cloud_proc.cpu_times() if cloud_proc else None, time.monotonic()
            task = asyncio.create_task(uplink.run(), name="uplink")
            async with asyncio.timeout(args.timeout):
                while store.depth and not task.done():
                    await asyncio.sleep(0.2)
            elapsed = time.monotonic() - t0
            cpu1, load1 = me.cpu_times(), os.getloadavg()[0]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            edge_cpu = 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / elapsed
            cloud_cpu = None
            if cloud_proc and ccpu0:
                c1 = cloud_proc.cpu_times()
                cloud_cpu = 100 * ((c1.user - ccpu0.user) + (c1.system - ccpu0.system)) / elapsed
            sent = uplink.link.frames_sent
            await store.close()
        finally:
            await asyncio.to_thread(cloud.stop)
    print(f"\n{'catch-up':34} {'frames':>10} {'seconds':>8} {'frames/s':>9} {'values/s':>9} {'edge CPU':>9} "
          f"{'cloud CPU':>9}")
    cloud_text = f"{cloud_cpu:8.0f}%" if cloud_cpu is not None else "        -"
    print(f"{'edge queue -> cloud (SQLite), HTTP':34} {sent:10,} {elapsed:8.1f} {sent / elapsed:9,.0f} "
          f"{5 * sent / elapsed:9,.0f} {edge_cpu:8.0f}% {cloud_text}")
    print(f"\nbatches of {args.batch:,} frames, {args.compression}; target >= 20,000 frames/s. "
          f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average (1 min) {load0:.2f} before, {load1:.2f} after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--compression", choices=["gzip", "zstd", "none"], default="gzip",
                        help="as the edge's uplink.compression (default: gzip, the edge's default)")
    parser.add_argument("--timeout", type=float, default=600.0)
    asyncio.run(main(parser.parse_args()))
