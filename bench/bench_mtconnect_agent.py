"""Benchmark: the simulator's MTConnect agent (``python bench/bench_mtconnect_agent.py``, under a minute).

1. The replay alone, in process, as fast as possible: observations produced per second (no client).
2. ``twinsim mtconnect --speed max`` as a subprocess, one client streaming ``/sample?interval=0`` from
   sequence 1 with httpx, the edge's multipart reader and parser: observations received per second
   end to end, and the agent's CPU (psutil; 100 % = one core) while it serves them.
3. The same agent at the recording's pace (``--speed 1``) for 20 s with that client: the agent's CPU.

What it is for: the MTConnect source's ingest benchmark needs an agent that is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.sources.mtconnect.multipart import MultipartReader, boundary_from_content_type  # noqa: E402
from edge.sources.mtconnect.protocol import Streams, parse_streams  # noqa: E402
from twinsim.mtconnect import AgentSettings, MTConnectAgent  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOTAL = 25_700  # observations of one pass of the Okuma recording, with the 220 UNAVAILABLE seeds


async def replay_alone() -> float:
    rates = []
    for _ in range(3):
        agent = MTConnectAgent(AgentSettings(speed=math.inf, paused=True, record=False))
        async with agent:
            start = time.perf_counter()
            agent.resume()
            await agent.replay_done.wait()
            rates.append((agent.buffer.next_sequence - 221) / (time.perf_counter() - start))
    return sorted(rates)[1]


@contextlib.asynccontextmanager
async def agent_process(*args: str) -> AsyncIterator[tuple[str, psutil.Process]]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twinsim", "mtconnect", "--port", "0", "--ready-file", str(ready),
            "--log-level", "warning", *args, cwd=REPO, stdout=asyncio.subprocess.DEVNULL)
        try:
            async with asyncio.timeout(30):
                while not ready.exists():
                    await asyncio.sleep(0.05)
            info = json.loads(ready.read_text())
            yield info["url"], psutil.Process(proc.pid)
        finally:
            proc.terminate()
            await proc.wait()


async def stream(url: str, until: float | None) -> int:
    """Observations received from sequence 1 until all TOTAL arrived, or until ``until`` (monotonic)."""
    seen = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client, \
            client.stream("GET", "/sample", params={"from": 1, "interval": 0, "count": 1000}) as response:
        reader = MultipartReader(boundary_from_content_type(response.headers["content-type"]))
        async for data in response.aiter_bytes():
            for part in reader.feed(data):
                doc = parse_streams(part)
                assert isinstance(doc, Streams)
                seen += len(doc.observations)
            if (until is None and seen >= TOTAL) or (until is not None and time.monotonic() >= until):
                return seen
    return seen


async def main() -> None:
    print(f"replay alone, as fast as possible: {await replay_alone():,.0f} observations/s")
    async with agent_process("--speed", "max", "--once", "--buffer", "131072") as (url, proc):
        proc.cpu_percent()
        start = time.perf_counter()
        seen = await stream(url, None)
        elapsed = time.perf_counter() - start
        print(f"streamed to a client (httpx + the edge's parser), --speed max: {seen:,} observations in "
              f"{elapsed:.2f} s = {seen / elapsed:,.0f}/s; agent CPU {proc.cpu_percent():.0f} %")
    async with agent_process("--speed", "1") as (url, proc):
        proc.cpu_percent()
        seen = await stream(url, time.monotonic() + 20)
        print(f"the recording's pace (--speed 1), one streaming client, 20 s: {seen:,} observations; "
              f"agent CPU {proc.cpu_percent():.1f} %")


if __name__ == "__main__":
    asyncio.run(main())
