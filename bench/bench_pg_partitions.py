"""PostgreSQL partitions benchmark: `python bench/bench_pg_partitions.py [--rows N] [--json]`.

Prints, on a throw-away local PostgreSQL server (started like the tests do):
- the upgrade of a database of schema version 3 holding N samples (and N/20
  frames) over 100 days: the time ``PostgresStorage.open()`` takes to make
  both tables partitioned by week (no row of the past is copied);
- retention of 70 of those 100 days: ``purge`` on the weekly partitions
  (whole weeks dropped, the straddling week deleted by rows) against a
  ``DELETE ... WHERE ts < cutoff`` on a plain table of the same rows with a
  BRIN index, each with the write-ahead log it wrote.
Every run stops by itself; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.storage.partitions import WEEK_US, Partitions  # noqa: E402
from cloud.storage.postgres import PostgresStorage  # noqa: E402
from tests.cloud.oldschema import postgres_at_version  # noqa: E402
from tests.cloud.pg import PgServer, fresh_pg_database, start_cluster  # noqa: E402

DAY_US = 86_400_000_000
SPAN_US = 100 * DAY_US


def fill_sql(table: str, rows: int, now_us: int) -> str:
    """``rows`` samples of 200 series, evenly over the 100 days before ``now_us``."""
    step = SPAN_US // (rows // 200)
    return (f"INSERT INTO {table} SELECT g % 200, {now_us - SPAN_US} + (g::bigint / 200) * {step}, g::float8, NULL "
            f"FROM generate_series(0, {rows - 1}) g")


async def upgrade(server: PgServer, rows: int, now_us: int) -> dict[str, float]:
    url = await fresh_pg_database(server)
    con = await asyncpg.connect(url)
    try:
        await postgres_at_version(con, 3)
        await con.execute(fill_sql("samples", rows, now_us), timeout=3600)
        step = SPAN_US // (rows // 20 // 10)
        await con.execute(f"INSERT INTO frames SELECT g % 10, {now_us - SPAN_US} + (g::bigint / 10) * {step}, "
                          f"'e', g, 'ok' FROM generate_series(0, {rows // 20 - 1}) g", timeout=3600)
        await con.execute("CREATE INDEX samples_ts_brin ON samples USING brin (ts)")
        await con.execute("VACUUM ANALYZE", timeout=3600)
        size = await con.fetchval("SELECT pg_total_relation_size('samples')")
    finally:
        await con.close()
    store = PostgresStorage(url, pool_size=2)
    began = time.perf_counter()
    await store.open()
    elapsed = time.perf_counter() - began
    await store.close()
    return {"seconds": elapsed, "table_bytes": size}


async def retention(server: PgServer, rows: int, now_us: int) -> list[dict[str, Any]]:
    url = await fresh_pg_database(server)
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    con = await asyncpg.connect(url)
    out = []
    try:
        weeks = list(range(now_us - SPAN_US, now_us + WEEK_US, WEEK_US))
        await Partitions(["samples"]).ensure(con, weeks, limit=len(weeks))
        await con.execute("CREATE TABLE plain (LIKE samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        await con.execute("ALTER TABLE plain ADD PRIMARY KEY (series_id, ts)")
        await con.execute("CREATE INDEX plain_ts_brin ON plain USING brin (ts)")
        for table in ("samples", "plain"):
            await con.execute(fill_sql(table, rows, now_us), timeout=3600)
        await con.execute("VACUUM ANALYZE", timeout=3600)
        cutoff = now_us - 30 * DAY_US
        for case, run in (("weekly partitions: purge", lambda: store.purge(cutoff, None)),
                          ("plain table: DELETE", lambda: _delete(con, cutoff))):
            wal = await con.fetchval("SELECT pg_current_wal_lsn()")
            began = time.perf_counter()
            removed = await run()
            elapsed = time.perf_counter() - began
            written = await con.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", wal)
            out.append({"case": case, "rows": removed, "seconds": elapsed, "wal_bytes": float(written)})
    finally:
        await con.close()
        await store.close()
    return out


async def _delete(con: asyncpg.Connection, cutoff: int) -> int:
    status = await con.execute("DELETE FROM plain WHERE ts < $1", cutoff, timeout=3600)
    return int(status.rsplit(" ", 1)[-1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="samples in the table")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = start_cluster()
    now_us = time.time_ns() // 1000
    try:
        up = await upgrade(server, args.rows, now_us)
        purge = await retention(server, args.rows, now_us)
    finally:
        server.stop()
    if args.json:
        print(json.dumps({"upgrade": up, "retention": purge}, indent=2))
        return
    print(f"\nUpgrade to weekly partitions: {args.rows:,} samples ({up['table_bytes'] / 2**20:,.0f} MiB) "
          f"and {args.rows // 20:,} frames over 100 days: {up['seconds']:.2f} s")
    print(f"\nRetention of 70 of 100 days ({args.rows:,} samples):")
    print(f"{'case':<28} {'rows':>12} {'seconds':>9} {'WAL MiB':>9}")
    for r in purge:
        print(f"{r['case']:<28} {r['rows']:>12,} {r['seconds']:>9.2f} {r['wal_bytes'] / 2**20:>9.1f}")


if __name__ == "__main__":
    asyncio.run(main())
