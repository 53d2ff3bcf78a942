"""Cloud programs benchmark: `python bench/bench_programs.py [--programs N] [--json]`.

At the store (what the sync handler and the API call), on SQLite and on a throw-away local PostgreSQL:
- ingest: N program documents (each with 12 tool uses, 3 work offsets, 10 header lines: about 6 KB of
  JSON) in batches of 200, read and checked one by one as the sync handler does, then stored with what is read from
  them; documents per second;
- search over the N programs: by T number, by tool words, by work offset, by text, and with errors; median and 95th
  percentile of 50 runs each (a page of 100);
- runs: the Okuma recording's frames (9,815) and device model loaded, then the machine's runs over the day read,
  linked and calibrated (median of 20).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_cloud_query import timed  # noqa: E402
from cloud.documents import read_documents  # noqa: E402
from cloud.runsquery import device_runs  # noqa: E402
from cloud.storage.base import Storage  # noqa: E402
from cloud.storage.postgres import PostgresStorage  # noqa: E402
from cloud.storage.programs import ProgramQuery, search_programs  # noqa: E402
from cloud.storage.sqlite import SQLiteStorage  # noqa: E402
from tests.cloud.documents import program, program_doc, tool  # noqa: E402
from tests.cloud.pg import PgUnavailable, start_cluster  # noqa: E402
from tests.cloud.test_runs import DAY, epoch, load_okuma, okuma_programs  # noqa: E402

KINDS = ["drill", "end mill", "tap", "face mill", "chamfer", "reamer"]


def bodies(n: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for k in range(n):
        tools = [tool(rng.randint(1, 60), f"{rng.choice([6, 8, 10, 12])}MM {kind.upper()}",
                      float(rng.choice([6, 8, 10, 12])), kind, holes=rng.randint(0, 20))
                 for kind in rng.choices(KINDS, k=12)]
        diagnostics = [{"line": 12, "level": "error", "message": "G2 without R or IJK"}] if k % 50 == 0 else []
        out.append(program(f"cell-{k % 20}/O{10000 + k}.nc", number=f"O{10000 + k}", tools=tools,
                           offsets=rng.sample(["G54", "G55", "G56", "G57", "G54.1 P3"], 3),
                           header=[f"PART {k} OP{j}" for j in range(10)], diagnostics=diagnostics,
                           holes=sum(t["holes"] for t in tools)))
    return out


async def run(storage: Storage, name: str, n: int) -> list[dict]:
    await storage.open()
    out = []
    try:
        entries = [program_doc(k + 1, b) for k, b in enumerate(bodies(n))]
        size = sum(len(json.dumps(e["document"]["body"])) for e in entries)
        began = time.perf_counter()
        for start in range(0, n, 200):
            docs, _ = read_documents(entries[start:start + 200])
            await storage.ingest("bench", [], None, 1, documents=docs)
        took = time.perf_counter() - began
        out.append({"backend": name, "what": f"ingest {n:,} programs ({size / n / 1000:.1f} kB each)",
                    "per_s": round(n / took)})
        for what, query in [("search by T number", ProgramQuery(tool="T17")),
                            ("search by tool words", ProgramQuery(tool="face mill")),
                            ("search by work offset", ProgramQuery(offset="G54.1 P3")),
                            ("search by text", ProgramQuery(text="part 1234 ")),
                            ("search with errors", ProgramQuery(has_errors=True))]:
            median, p95 = await timed(lambda q=query: search_programs(storage, q), 50)
            out.append({"backend": name, "what": f"{what} over {n:,}", "median_ms": round(median, 2),
                        "p95_ms": round(p95, 2)})
        await load_okuma(storage, okuma_programs())
        median, p95 = await timed(lambda: device_runs(storage, "OKUMA", epoch(DAY[0]), epoch(DAY[1])), 20)
        out.append({"backend": name, "what": "runs of the Okuma day (9,815 frames)", "median_ms": round(median, 1),
                    "p95_ms": round(p95, 1)})
    finally:
        await storage.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--programs", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += await run(SQLiteStorage(Path(tmp) / "bench.db"), "sqlite", args.programs)
        try:
            server = start_cluster()
        except PgUnavailable as exc:
            print(f"PostgreSQL not measured: {exc}", file=sys.stderr)
        else:
            try:
                from tests.cloud.pg import fresh_pg_database
                rows += await run(PostgresStorage(await fresh_pg_database(server)), "postgres", args.programs)
            finally:
                server.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        figure = f"{r['per_s']:,} documents/s" if "per_s" in r else f"median {r['median_ms']} ms, p95 {r['p95_ms']} ms"
        print(f"{r['backend']:<9} {r['what']:<45} {figure}")


if __name__ == "__main__":
    asyncio.run(main())
