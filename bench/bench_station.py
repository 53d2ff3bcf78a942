"""Live latency of the PUR foam model on the simulator's moulding station: mould reading -> stored derived point.

A real twinsim moulding station (Modbus TCP, polled by a real edge daemon
every 500 ms, uplink interval 100 ms), a real cloud with the ``pur-foam``
model bound to the station (CVODE, rtol 1e-6; each mould-temperature reading
re-solves the shot from its start). For each reading, the latency is from
the reading's timestamp (the edge's poll) to the arrival of its derived
``pur.t_demold`` point on the cloud's live feed, which publishes a point
after it is stored. Prints count, median, p95 and max over a bounded run.

    python bench/bench_station.py [--seconds 60] [--cycle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from websockets.asyncio.client import connect  # noqa: E402

from tests.e2e.plant import STATION, StationPlant, pur_binding  # noqa: E402

TARGET_P95_S = 1.0


async def measure(seconds: float, cycle_s: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-station-") as tmp:
        async with StationPlant(Path(tmp), cycle_s=cycle_s) as plant:
            binding = await plant.bind(pur_binding(cycle_s))
            field = f"{binding['name']}.t_demold"
            url = plant.cloud.ws_url + f"/api/v1/twin/ws/{STATION}"
            latencies: list[float] = []
            async with connect(url, additional_headers=plant.headers) as ws:
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=left))
                    except TimeoutError:
                        break
                    arrived = time.time()
                    if message.get("type") != "frame":
                        continue
                    frame = message["frame"]
                    if field in frame.get("sensors", {}):
                        latencies.append(arrived - float(frame["ts"]))
            info = await plant.get(f"/api/v1/process/bindings/{binding['name']}")
            print(f"binding {binding['name']}: {info['points']} points derived, {info['flagged']} flagged")
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring time after the binding (default 60)")
    parser.add_argument("--cycle", type=float, default=20.0, help="the station's cycle time, s (default 20)")
    args = parser.parse_args()
    latencies = asyncio.run(measure(args.seconds, args.cycle))
    if len(latencies) < 20:
        print(f"only {len(latencies)} derived points arrived: nothing to measure")
        return 1
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    print(f"station mould reading -> stored pur.t_demold point: n={len(ordered)} "
          f"median {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"max {ordered[-1] * 1000:.0f} ms (target p95 < {TARGET_P95_S * 1000:.0f} ms: "
          f"{'met' if p95 < TARGET_P95_S else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
