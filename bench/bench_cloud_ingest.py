"""Cloud ingest benchmark: `python bench/bench_cloud_ingest.py [--values N] [--json]`.

Prints sensor values stored per second
- into the store directly (frames already validated; batches of 1,000 frames
  of 20 sensors, the way the sync endpoint hands them over), SQLite and
  PostgreSQL (a throw-away local server, started like the tests do);
- through the whole sync endpoint of a real uvicorn process on 127.0.0.1:
  MessagePack + zstd batches of 1,000 frames, decoded, validated one by one,
  deduplicated and stored (SQLite), one edge sending batches back to back,
  and four edges at once.
Every run stops by itself (a fixed number of values); traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.storage.base import Storage  # noqa: E402
from cloud.storage.postgres import PostgresStorage  # noqa: E402
from cloud.storage.sqlite import SQLiteStorage  # noqa: E402
from shared.batch import EdgeHealth  # noqa: E402
from shared.codec import encode_obj  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from tests.cloud.pg import PgUnavailable, start_cluster  # noqa: E402
from tests.cloud.server import CloudServer  # noqa: E402

SENSORS = 20
BATCH = 1000
T0 = 1_767_225_600.0


def frames(count: int, device_count: int = 10, offset: int = 0, prefix: str = "press") -> list[TelemetryFrame]:
    return [TelemetryFrame(ts=T0 + (i + offset) * 0.1, device_id=f"{prefix}-{i % device_count}",
                           sensors={f"s{k}": float((i * 7 + k) % 1000) / 10 for k in range(SENSORS)})
            for i in range(count)]


async def store_rate(storage: Storage, values: int) -> float:
    await storage.open()
    batches = []
    all_frames = frames(values // SENSORS)
    for start in range(0, len(all_frames), BATCH):
        batches.append([(start + k + 1, f) for k, f in enumerate(all_frames[start:start + BATCH])])
    health = EdgeHealth(queue_depth=0)
    stored = 0
    began = time.perf_counter()
    for batch in batches:
        stored += (await storage.ingest("bench", batch, health, 1)).samples
    elapsed = time.perf_counter() - began
    await storage.close()
    return stored / elapsed


async def http_rate(values: int, edges: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        server = CloudServer(Path(tmp), edges=[f"edge-{e}" for e in range(edges)])
        server.start()
        try:
            per_edge = values // SENSORS // edges
            cctx = zstandard.ZstdCompressor(level=3)
            bodies: dict[str, list[bytes]] = {}
            for e, name in enumerate(server.edge_tokens):
                fs = frames(per_edge, offset=e * per_edge * 10, prefix=f"{name}-press")  # each edge its own devices
                bodies[name] = [cctx.compress(encode_obj({
                    "edge_id": name, "sent_at": time.time(),
                    "frames": [{"seq": s + k + 1, "frame": f.to_wire()} for k, f in enumerate(fs[s:s + BATCH])],
                    "health": {"queue_depth": len(fs) - s}})) for s in range(0, len(fs), BATCH)]

            async def send(name: str, client: httpx.AsyncClient) -> int:
                headers = {"Authorization": f"Bearer {server.edge_tokens[name]}",
                           "Content-Type": "application/msgpack", "Content-Encoding": "zstd"}
                stored = 0
                for body in bodies[name]:
                    resp = await client.post("/api/v1/sync/batches", content=body, headers=headers)
                    resp.raise_for_status()
                    if resp.json()["rejected"]:
                        raise RuntimeError(f"the cloud refused frames: {resp.json()['rejected'][0]}")
                    stored += resp.json()["stored"] * SENSORS
                return stored

            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                began = time.perf_counter()
                total = sum(await asyncio.gather(*(send(n, client) for n in server.edge_tokens)))
                elapsed = time.perf_counter() - began
        finally:
            server.stop()
    return total / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000, help="sensor values per run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, float | None, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rate = await store_rate(SQLiteStorage(Path(tmp) / "b.db"), args.values)
        rows.append(("store: SQLite (WAL, synchronous=FULL)", rate, ""))
    try:
        pg = start_cluster()
    except PgUnavailable as exc:
        rows.append(("store: PostgreSQL", None, str(exc)[:60]))
    else:
        try:
            rows.append(("store: PostgreSQL 15 (weekly partitions)",
                         await store_rate(PostgresStorage(pg.url, pool_size=2), args.values), ""))
        finally:
            pg.stop()
    rows.append(("HTTP sync -> SQLite, 1 edge", await http_rate(args.values, 1), "msgpack+zstd, 1,000-frame batches"))
    rows.append(("HTTP sync -> SQLite, 4 edges", await http_rate(args.values, 4), "concurrently"))
    if args.json:
        print(json.dumps([{"case": c, "values_per_s": v, "note": n} for c, v, n in rows], indent=2))
        return
    print(f"\nCloud ingest: {args.values:,} sensor values per run ({SENSORS} sensors/frame, {BATCH}-frame batches)\n")
    print(f"{'case':<44} {'values/s':>12}  note")
    for case, rate, note in rows:
        shown = f"{rate:12,.0f}" if rate is not None else f"{'n/a':>12}"
        print(f"{case:<44} {shown}  {note}")
    print("\ntarget: >= 200,000 sensor values/s into SQLite")


if __name__ == "__main__":
    asyncio.run(main())
