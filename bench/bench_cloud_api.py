"""Cloud API latency benchmark: `python bench/bench_cloud_api.py [--clients 50] [--workers 1,2] [--json]`.

A real uvicorn process (SQLite; one worker, then one per core of this
2-core machine, as deployed) on 127.0.0.1 holding 200,000
points (20 devices x 10 fields x 1,000 frames). 50 concurrent clients (one
keep-alive connection each, in one asyncio process on the same machine, with
a minimal HTTP/1.1 client so that the load generator costs little CPU) call:
- GET /api/v1/twin/{device}/state
- GET /api/v1/twin/history (one field, 100 points from a random start)
- GET /api/v1/twin/history (one field, 1,000 points)
Each case runs twice: paced (every client sends one request every 1/rate s,
default 5/s each = 250 requests/s offered, like dashboards polling) and back
to back (each client sends its next request as soon as the answer arrives:
the service's throughput; then latency is roughly clients / throughput).
Prints p50/p95/p99 latency and requests/s. The client shares the 2 CPU cores
with the server, so the figures include its cost.
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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.codec import encode_obj  # noqa: E402
from tests.cloud.server import CloudServer  # noqa: E402

T0 = 1_767_225_600.0
DEVICES, FIELDS, FRAMES = 20, 10, 1000


async def load(server: CloudServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        seq = 0
        for start in range(0, FRAMES, 250):
            frames = []
            for i in range(start, start + 250):
                for d in range(DEVICES):
                    seq += 1
                    frames.append({"seq": seq, "frame": {"ts": T0 + i, "device_id": f"press-{d}",
                                                         "sensors": {f"f{k}": float(i + k) for k in range(FIELDS)}}})
            body = {"edge_id": "edge-1", "sent_at": time.time(), "frames": frames, "health": {"queue_depth": 0}}
            resp = await client.post("/api/v1/sync/batches", content=encode_obj(body),
                                     headers={"Authorization": f"Bearer {server.edge_token}",
                                              "Content-Type": "application/msgpack"})
            resp.raise_for_status()


class RawClient:
    """A minimal keep-alive HTTP/1.1 GET client (like wrk or hey): the load generator must cost far less
    CPU than the server it measures, and httpx costs about as much per request as the server does."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n\r\n"
                          .encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def hammer(server: CloudServer, clients: int, seconds: float, make_url, rate: float | None) -> dict:
    """Each client sends back to back (rate None) or one request every 1/rate s (a dashboard polling)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(rng: random.Random) -> None:
        nonlocal errors
        client = RawClient(server.port, server.viewer_token)
        try:
            if rate:
                await asyncio.sleep(rng.uniform(0, 1 / rate))  # clients do not start in lockstep
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                status, _ = await client.get(make_url(rng))
                latencies.append(time.perf_counter() - began)
                if status != 200:
                    errors += 1
                if rate:
                    await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
        finally:
            await client.close()

    began = time.perf_counter()
    await asyncio.gather(*(client_loop(random.Random(i)) for i in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=5.0, help="requests/s per client in the paced runs")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker processes; a comma-separated list runs each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = {
        "state": lambda rng: f"/api/v1/twin/press-{rng.randrange(DEVICES)}/state",
        "history, 100 points": lambda rng: (f"/api/v1/twin/history?device=press-{rng.randrange(DEVICES)}"
                                            f"&fields=f{rng.randrange(FIELDS)}&limit=100"
                                            f"&start={T0 + rng.randrange(FRAMES - 100)}"),
        "history, 1,000 points": lambda rng: (f"/api/v1/twin/history?device=press-{rng.randrange(DEVICES)}"
                                              f"&fields=f{rng.randrange(FIELDS)}&limit=1000"),
    }
    results: dict[str, dict[str, dict]] = {}
    for workers in [int(w) for w in args.workers.split(",")]:
        results[f"{workers} worker(s)"] = one = {}
        with tempfile.TemporaryDirectory() as tmp:
            with CloudServer(Path(tmp), auth_cache_ttl="5s", server_options=f"workers = {workers}") as server:
                await load(server)
                for name, make_url in cases.items():
                    one[f"{name}, paced {args.rate:g}/s each"] = await hammer(server, args.clients, args.seconds,
                                                                             make_url, args.rate)
                    one[f"{name}, back to back"] = await hammer(server, args.clients, args.seconds, make_url, None)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for setting, one in results.items():
        print(f"\nCloud API latency: {args.clients} concurrent clients, {args.seconds:.0f} s per case, "
              f"{setting}, SQLite, {DEVICES * FIELDS * FRAMES:,} points stored\n")
        print(f"{'request':<44} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, r in one.items():
            print(f"{name:<44} {r['rps']:8.0f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} "
                  f"{r['errors']:7d}")
    print("\ntarget: p95 < 50 ms for state and history")


if __name__ == "__main__":
    asyncio.run(main())
