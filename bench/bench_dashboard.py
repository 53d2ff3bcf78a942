"""Dashboards under load: `python bench/bench_dashboard.py [--seconds 12] [--workers 1,2] [--pg-url URL] [--json]`.

2,000,000 points (10 devices x 20 sensors x 10,000 s at 1 Hz) are stored
through the storage API's ingest (the path a sync batch takes after decoding:
dedup, samples, rollups in one transaction), then a real `twincloud serve`
process (uvicorn, 1 or more workers) serves them on 127.0.0.1 and 50
concurrent clients (one keep-alive connection each, on the same 2 cores) send
requests back to back for a fixed time:
- half of them history: a random device, 2 random fields, a random 5-minute
  range (600 points);
- half of them aggregates: a random device, 4 random fields, a window of
  10 s, 15 s, 30 s, 1 min, 2 min or 5 min, 120 windows ending at a random
  second (not aligned), mean/min/max/count.
Clients use 10 viewer tokens (5 each), like 10 people's dashboards. Then an
aggregate-only run (all 50 clients) measures throughput. Prints p50/p95/p99
per kind, requests/s, 503 answers and the server's peak RSS (all its
processes). SQLite by default, 1 and 2 workers; with --pg-url the same runs
against that PostgreSQL database (loaded once; --replicas N starts N servers
on their own ports, clients spread over them), and with --pg against a
private PostgreSQL server the benchmark starts and removes (as the tests do).
Every run stops by itself.

The clients are wrk processes (C, from Debian's package ``wrk``; a Lua script
makes each request's URL) when wrk is installed, so that the load generator
takes little of the 2 cores; ``--client httpx`` (or no wrk) runs them as
httpx clients in this process instead, which costs about as much CPU per
request as the server spends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.identities import add_user  # noqa: E402
from cloud.storage.base import Storage  # noqa: E402
from cloud.storage.postgres import PostgresStorage  # noqa: E402
from cloud.storage.sqlite import SQLiteStorage  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from tests.cloud.pg import PgUnavailable, fresh_pg_database, start_cluster  # noqa: E402
from tests.support import free_port  # noqa: E402

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DEVICES, SENSORS, SECONDS = 10, 20, 10_000
TOKENS = 10
WINDOWS_S = [10, 15, 30, 60, 120, 300]
Url = Callable[[random.Random], str]


# --- data ------------------------------------------------------------------------------
async def load(storage: Storage) -> float:
    """Store the points in batches of 1,000 frames, as an edge's sync batches arrive; returns seconds taken."""
    rng = random.Random(7)
    level = [[20.0 + 5 * rng.random() for _ in range(SENSORS)] for _ in range(DEVICES)]
    began = time.perf_counter()
    seq = 0
    step = 1000 // DEVICES
    for t in range(0, SECONDS, step):
        batch = []
        for d in range(DEVICES):
            for i in range(t, min(t + step, SECONDS)):
                row = level[d]
                for k in range(SENSORS):
                    row[k] += rng.gauss(0, 0.05)
                seq += 1
                batch.append((seq, TelemetryFrame(ts=T0 + i, device_id=f"press-{d}",
                                                  sensors={f"s{k}": round(v, 4) for k, v in enumerate(row)})))
        await storage.ingest("edge-1", batch, None, time.time_ns() // 1000)
    return time.perf_counter() - began


async def viewer_tokens(storage: Storage) -> list[str]:
    return [await add_user(storage, f"dash-{k}-{os.getpid()}", "viewer") for k in range(TOKENS)]


def history_url(rng: random.Random) -> str:
    fields = ",".join(rng.sample([f"s{k}" for k in range(SENSORS)], 2))
    start = T0 + rng.randrange(SECONDS - 300)
    return f"/api/v1/twin/history?device=press-{rng.randrange(DEVICES)}&fields={fields}&start={start}" \
           f"&stop={start + 300}&limit=1000"


def aggregate_url(rng: random.Random) -> str:
    fields = ",".join(rng.sample([f"s{k}" for k in range(SENSORS)], 4))
    window = rng.choice(WINDOWS_S)
    stop = T0 + rng.randrange(600, SECONDS)
    return f"/api/v1/twin/history/aggregate?device=press-{rng.randrange(DEVICES)}&fields={fields}" \
           f"&start={stop - 120 * window}&stop={stop}&window={window}s"


# --- server ----------------------------------------------------------------------------
class Server:
    """`twincloud serve` in a subprocess with its own config file."""

    def __init__(self, directory: Path, db_url: str, workers: int, extra: str = "") -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = directory / f"cloud-{self.port}.toml"
        self.config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\nworkers = {workers}\nauth_cache_ttl = "60s"\n\n'
            f'[database]\nurl = "{db_url}"\n\n[retention]\nsamples_days = 0\nrollups_days = 0\n\n'
            f'[log]\nlevel = "WARNING"\n\n{extra}', encoding="utf-8")
        self.log = directory / f"cloud-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cloud.cli", "--config", str(self.config), "serve"],
                                         stdout=subprocess.DEVNULL, stderr=log)

    async def start(self) -> None:
        self._spawn()
        assert self.proc is not None
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            for _ in range(300):
                if self.proc.poll() is not None:
                    break
                try:
                    if (await client.get("/health")).status_code == 200:
                        await asyncio.sleep(1.0)  # every worker up
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError("twincloud did not start:\n" + self.log.read_text()[-3000:])

    def rss(self) -> int:
        if self.proc is None:
            return 0
        try:
            top = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [top, *top.children(recursive=True)])
        except psutil.Error:
            return 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- load ------------------------------------------------------------------------------
WRK_SCRIPT = """
local kind, tokens, out = "%(kind)s", {%(tokens)s}, "%(out)s"
local T0, DEVICES, SENSORS, SECONDS = %(t0)d, %(devices)d, %(sensors)d, %(seconds)d
local WINDOWS = {%(windows)s}
local n = 0
function init(args) math.randomseed(%(seed)d) end
local function fields(k)
  local picked, list = {}, {}
  while #list < k do
    local f = math.random(0, SENSORS - 1)
    if not picked[f] then picked[f] = true; list[#list + 1] = "s" .. f end
  end
  return table.concat(list, ",")
end
function request()
  n = n + 1
  local device = "press-" .. math.random(0, DEVICES - 1)
  local path
  if kind == "history" then
    local start = T0 + math.random(0, SECONDS - 301)
    path = "/api/v1/twin/history?device=" .. device .. "&fields=" .. fields(2) .. "&start=" .. start ..
           "&stop=" .. (start + 300) .. "&limit=1000"
  else
    local window = WINDOWS[math.random(1, #WINDOWS)]
    local stop = T0 + math.random(600, SECONDS - 1)
    path = "/api/v1/twin/history/aggregate?device=" .. device .. "&fields=" .. fields(4) .. "&start=" ..
           (stop - 120 * window) .. "&stop=" .. stop .. "&window=" .. window .. "s"
  end
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. tokens[n %% #tokens + 1]})
end
function done(summary, latency, requests)
  local f = io.open(out, "w")
  f:write(summary.requests, " ", summary.errors.status, " ", summary.errors.timeout, " ",
          summary.errors.connect + summary.errors.read + summary.errors.write, "\\n")
  for k = 1, 1000 do  -- the latency at each 1/1000 of the requests, so that processes can be merged
    f:write(latency:percentile((k - 0.5) / 10), "\\n")
  end
  f:close()
end
"""


def _quantiles(histogram: dict[int, int], qs: list[float]) -> list[float]:
    """Latency quantiles in seconds from a histogram of weights per microsecond."""
    total = sum(histogram.values())
    out, seen, items = [], 0, sorted(histogram.items())
    wanted = iter(sorted(qs))
    q = next(wanted, None)
    for us, count in items:
        seen += count
        while q is not None and seen >= q * total:
            out.append(us / 1e6)
            q = next(wanted, None)
    return out + [math.nan] * (len(qs) - len(out))


async def hammer_wrk(servers: list[Server], tokens: list[str], kinds: list[tuple[str, Url]], seconds: float,
                     clients: int, directory: Path) -> dict[str, Any]:
    """The same load as ``hammer``, from wrk processes: one per kind and server, the clients shared out."""
    jobs = [(name, server) for name, _ in kinds for server in servers]
    procs = []
    for j, (name, server) in enumerate(jobs):
        conns = clients // len(jobs) + (1 if j < clients % len(jobs) else 0)
        out = directory / f"wrk-{j}.out"
        script = directory / f"wrk-{j}.lua"
        script.write_text(WRK_SCRIPT % {
            "kind": name, "tokens": ",".join(f'"{t}"' for t in tokens), "out": out, "t0": T0,
            "devices": DEVICES, "sensors": SENSORS, "seconds": SECONDS, "seed": 1000 + j,
            "windows": ",".join(map(str, WINDOWS_S))}, encoding="utf-8")
        procs.append((name, out, await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(script), server.base_url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)))
    peak_rss = 0
    began = time.perf_counter()
    while any(p.returncode is None for _, _, p in procs):
        peak_rss = max(peak_rss, sum(s.rss() for s in servers))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for _, _, p in procs)), 0.5)
    elapsed = time.perf_counter() - began
    histograms: dict[str, dict[int, int]] = {name: {} for name, _ in kinds}
    counts: dict[str, list[int]] = {name: [0, 0, 0, 0] for name, _ in kinds}
    for name, out, proc in procs:
        if proc.returncode != 0 or not out.exists():
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err[-2000:]}")
        head, *rows = out.read_text().splitlines()
        got = [int(v) for v in head.split()]
        counts[name] = [a + b for a, b in zip(counts[name], got, strict=True)]
        for row in rows:  # 1,000 quantiles: each stands for a 1/1000 of this process's requests
            us = round(float(row))
            histograms[name][us] = histograms[name].get(us, 0) + got[0]
    out_: dict[str, Any] = {"seconds": round(elapsed, 1), "rss_mib": round(peak_rss / 2**20), "kinds": {},
                            "client": "wrk"}
    for name, (requests, status_errors, timeouts, socket_errors) in counts.items():
        p50, p95, p99 = _quantiles(histograms[name], [0.50, 0.95, 0.99])
        ok = requests - status_errors
        out_["kinds"][name] = {"requests": ok, "rps": round(ok / elapsed, 1), "p50_ms": round(p50 * 1000, 1),
                               "p95_ms": round(p95 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
                               "refused_503": status_errors, "failed": timeouts + socket_errors}
    out_["rps"] = round(sum(k["requests"] for k in out_["kinds"].values()) / elapsed, 1)
    return out_


async def hammer(servers: list[Server], tokens: list[str], kinds: list[tuple[str, Url]], seconds: float,
                 clients: int) -> dict[str, Any]:
    """``clients`` clients, each of one kind (in turn), send requests back to back for ``seconds``."""
    latencies: dict[str, list[float]] = {name: [] for name, _ in kinds}
    refused: dict[str, int] = dict.fromkeys(latencies, 0)
    failed: dict[str, int] = dict.fromkeys(latencies, 0)
    peak_rss = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(k: int) -> None:
        name, make_url = kinds[k % len(kinds)]
        rng = random.Random(k)
        server = servers[k % len(servers)]
        headers = {"Authorization": f"Bearer {tokens[k % len(tokens)]}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as client:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                resp = await client.get(make_url(rng))
                if resp.status_code == 200:
                    resp.json()  # a dashboard reads the answer
                    latencies[name].append(time.perf_counter() - began)
                elif resp.status_code == 503:
                    refused[name] += 1
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                else:
                    failed[name] += 1

    async def watch_rss() -> None:
        nonlocal peak_rss
        while time.perf_counter() < deadline:
            peak_rss = max(peak_rss, sum(s.rss() for s in servers))
            await asyncio.sleep(0.5)

    began = time.perf_counter()
    await asyncio.gather(watch_rss(), *(client_loop(k) for k in range(clients)))
    elapsed = time.perf_counter() - began
    out: dict[str, Any] = {"seconds": round(elapsed, 1), "rss_mib": round(peak_rss / 2**20), "kinds": {}}
    for name, lat in latencies.items():
        lat.sort()
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [math.nan] * 99
        out["kinds"][name] = {"requests": len(lat), "rps": round(len(lat) / elapsed, 1),
                              "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
                              "p99_ms": round(q[98] * 1000, 1), "refused_503": refused[name],
                              "failed": failed[name]}
    out["rps"] = round(sum(len(v) for v in latencies.values()) / elapsed, 1)
    return out


async def run_case(directory: Path, db_url: str, workers: int, replicas: int, tokens: list[str],
                   kinds: list[tuple[str, Url]], args: argparse.Namespace) -> dict[str, Any]:
    extra = f"[queries]\nmax_running = {args.max_running}\n" if args.max_running else ""
    servers = [Server(directory, db_url, workers, extra) for _ in range(replicas)]
    try:
        for server in servers:
            await server.start()
        await hammer(servers, tokens, kinds, min(3.0, args.seconds), args.clients)  # warm caches and pools
        if args.client == "wrk":
            return await hammer_wrk(servers, tokens, kinds, args.seconds, args.clients, directory)
        return await hammer(servers, tokens, kinds, args.seconds, args.clients)
    finally:
        for server in servers:
            server.stop()


MIX: list[tuple[str, Url]] = [("history", history_url), ("aggregate", aggregate_url)]
AGGREGATES: list[tuple[str, Url]] = [("aggregate", aggregate_url)]


async def sqlite_runs(args: argparse.Namespace, results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        template = directory / "template.db"
        storage = SQLiteStorage(template, synchronous="normal")
        await storage.open()
        try:
            results["load_s"] = round(await load(storage), 1)
            tokens = await viewer_tokens(storage)
        finally:
            await storage.close()
        workers = [int(w) for w in args.workers.split(",")]
        cases = [(f"SQLite, {_workers(w)}, mixed", w, MIX) for w in workers]
        cases.append((f"SQLite, {_workers(max(workers))}, aggregates only", max(workers), AGGREGATES))
        for label, n, kinds in cases:
            db = directory / "run.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(template, db)
            results[label] = await run_case(directory, f"sqlite:///{db}", n, 1, tokens, kinds, args)
            report(label, results[label])


async def postgres_runs(args: argparse.Namespace, results: dict[str, Any]) -> None:
    storage = PostgresStorage(args.pg_url, pool_size=4)
    await storage.open()
    try:
        if not await storage.devices():
            results["pg_load_s"] = round(await load(storage), 1)
        tokens = await viewer_tokens(storage)
    finally:
        await storage.close()
    workers = args.pg_workers
    with tempfile.TemporaryDirectory() as tmp:
        for label, kinds in [("mixed", MIX), ("aggregates only", AGGREGATES)]:
            name = f"PostgreSQL, {args.replicas} replica(s) x {workers} worker(s), {label}"
            results[name] = await run_case(Path(tmp), args.pg_url, workers, args.replicas, tokens, kinds, args)
            report(name, results[name])


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n > 1 else ''}"


def report(label: str, r: dict[str, Any]) -> None:
    print(f"\n{label}: {r['rps']:.0f} requests/s over {r['seconds']:.0f} s, server peak RSS {r['rss_mib']} MiB",
          flush=True)
    print(f"  {'kind':<10} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'503':>5} {'other':>6}")
    for kind, k in r["kinds"].items():
        print(f"  {kind:<10} {k['rps']:7.1f} {k['p50_ms']:8.1f} {k['p95_ms']:8.1f} {k['p99_ms']:8.1f} "
              f"{k['refused_503']:5d} {k['failed']:6d}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="measured time per run")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="uvicorn workers per server; each value is one mixed run")
    parser.add_argument("--pg-url", help="also run against this PostgreSQL database (loaded when empty)")
    parser.add_argument("--pg", action="store_true", help="also run against a private PostgreSQL server started here")
    parser.add_argument("--replicas", type=int, default=2, help="servers on their own ports for --pg-url")
    parser.add_argument("--pg-workers", type=int, default=1, help="uvicorn workers per PostgreSQL replica")
    parser.add_argument("--max-running", type=int, help="the servers' queries.max_running (default: its default)")
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL runs")
    parser.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator (default: wrk when installed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    print(f"{DEVICES} devices x {SENSORS} sensors x {SECONDS:,} s = {DEVICES * SENSORS * SECONDS:,} points; "
          f"{args.clients} clients back to back, {args.seconds:g} s per run, load generator ({args.client}) "
          f"on this machine",
          flush=True)
    if not args.no_sqlite:
        await sqlite_runs(args, results)
    if args.pg_url:
        await postgres_runs(args, results)
    elif args.pg:
        try:
            server = start_cluster()
        except PgUnavailable as exc:
            print(f"\nPostgreSQL runs skipped: {exc}")
        else:
            try:
                args.pg_url = await fresh_pg_database(server)
                await postgres_runs(args, results)
            finally:
                server.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    print("\ntargets: p95 < 200 ms for history and aggregates with 2 workers; aggregates only >= 160 requests/s")


if __name__ == "__main__":
    asyncio.run(main())
