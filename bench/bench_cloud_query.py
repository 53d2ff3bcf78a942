"""Cloud query benchmark: `python bench/bench_cloud_query.py [--json]`.

Loads 1,000,000 points (one device, 10 fields, 100,000 frames at 1 Hz = 27.8 h)
into SQLite and into a throw-away local PostgreSQL, then times, at the store
(what the API handlers call):
- history: 1,000 points of one field from a random start (paged query);
- aggregate over all 1,000,000 points (10 fields, whole range) with windows
  1 h, 5 min, 1 min and 30 s — answered from the rollups kept at ingest
  (10 s, 1 min and 1 h levels).
Each figure is the median and the 95th percentile of repeated runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.storage.base import Storage  # noqa: E402
from cloud.storage.postgres import PostgresStorage  # noqa: E402
from cloud.storage.sqlite import SQLiteStorage  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from tests.cloud.pg import PgUnavailable, start_cluster  # noqa: E402

T0 = 1_767_225_600.0
FRAMES, FIELDS = 100_000, 10
US = 1_000_000


async def load(storage: Storage) -> float:
    began = time.perf_counter()
    rng = random.Random(1)
    for start in range(0, FRAMES, 2000):
        batch = [(i + 1, TelemetryFrame(ts=T0 + i, device_id="press-0",
                                        sensors={f"f{k}": rng.uniform(0, 100) for k in range(FIELDS)}))
                 for i in range(start, start + 2000)]
        await storage.ingest("bench", batch, None, 1)
    return time.perf_counter() - began


async def timed(fn, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


async def run(storage: Storage, name: str) -> list[dict]:
    await storage.open()
    loaded = await load(storage)
    rows = [{"backend": name, "case": "load 1,000,000 points", "median_ms": loaded * 1000, "p95_ms": None}]
    rng = random.Random(2)
    lo, hi = int(T0 * US), int((T0 + FRAMES) * US)

    async def history() -> None:
        start = int((T0 + rng.uniform(0, FRAMES - 2000)) * US)
        page = await storage.history("press-0", ["f3"], start, hi, 1000, None)
        assert sum(len(p) for _, p in page.series) == 1000

    med, p95 = await timed(history, 100)
    rows.append({"backend": name, "case": "history, 1,000 points", "median_ms": med, "p95_ms": p95})
    cases = (("1 h", 3600, 20, False), ("1 h", 3600, 20, True), ("5 min", 300, 20, False),
             ("1 min", 60, 10, False), ("30 s", 30, 3, False))
    for label, window, runs, first_last in cases:
        async def aggregate(window: int = window, first_last: bool = first_last) -> None:
            result = await storage.aggregate("press-0", None, lo, hi, window * US, first_last)
            assert sum(a.count for _, buckets in result for _, a in buckets) == FRAMES * FIELDS

        med, p95 = await timed(aggregate, runs)
        funcs = "all 7 funcs" if first_last else "mean/min/max/sum/count"
        rows.append({"backend": name, "case": f"aggregate 1M points, {label}, {funcs}", "median_ms": med,
                     "p95_ms": p95})
    await storage.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += await run(SQLiteStorage(Path(tmp) / "q.db"), "SQLite")
    try:
        pg = start_cluster()
    except PgUnavailable as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    else:
        try:
            rows += await run(PostgresStorage(pg.url, pool_size=2), "PostgreSQL")
        finally:
            pg.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"\nCloud queries over {FRAMES * FIELDS:,} stored points ({FIELDS} fields x {FRAMES:,} frames at 1 Hz)\n")
    print(f"{'backend':<11} {'case':<56} {'median ms':>10} {'p95 ms':>8}")
    for r in rows:
        p95 = f"{r['p95_ms']:8.1f}" if r["p95_ms"] is not None else f"{'':>8}"
        print(f"{r['backend']:<11} {r['case']:<56} {r['median_ms']:10.1f} {p95}")
    print("\ntarget: aggregate over 1,000,000 points < 100 ms on SQLite")


if __name__ == "__main__":
    asyncio.run(main())
