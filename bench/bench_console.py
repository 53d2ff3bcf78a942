"""Web console benchmark: `python bench/bench_console.py [--clients 50] [--seconds 15] [--json]`.

A real `twincloud serve` (SQLite, 1 worker) on 127.0.0.1 holding 30 days of one oven's temperature at 1 Hz
(2,592,000 points, stored through the storage API's ingest before the service starts), fed live by the real
simulator (2 Modbus machines polled every 200 ms) through the real edge daemon, whose uplink is set as
`make run` sets it (a batch at most every second). Debian's chromium (Playwright) measures:

- the fleet page's cold first load: a fresh browser profile (empty cache) with a session cookie, from
  navigation to the fleet table filled in, and the bytes it transferred (every response, headers included);
- the device chart over the 30 days: from the aggregate request to the chart drawn (the page's own
  measurement, `window.twinCharts.loads`), the first load and then repeated ones;
- live latency: from a frame's reading on the edge (before its store commit) to the chart drawn with it.

Then N browser sessions (signed in through POST /login, each with its own session cookie) are simulated by
clients that do what a device page does: the live feed's WebSocket open, and the page's requests every 3 s
(latest state, edges, drift, the device's alerts). The cloud process's CPU is read from /proc over a fixed
time, without and with the clients. Bounded: about 1.5 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from cloud.config import load_cloud_config  # noqa: E402
from cloud.sessions import SESSION_COOKIE  # noqa: E402
from cloud.storage import open_storage  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from tests.cloud.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.cloud.server import CloudServer  # noqa: E402
from tests.e2e.daemon import EdgeDaemon  # noqa: E402
from tests.support import free_ports  # noqa: E402

EDGE, OVEN_EDGE = "edge-e2e", "line-1"
DAYS = 30
POINTS = DAYS * 86400
PAGE_POLL_S = 3.0  # what pages/devices.js asks for on a device page, this often


def reading(i: int) -> float:
    """A slow saw tooth between 20 and 26, and one spike to 500 in the middle of the 30 days."""
    return 500.0 if i == POINTS // 2 else 20.0 + (i % 600) / 100


def seed(server: CloudServer) -> float:
    """30 days of oven-1 at 1 Hz, ending a minute ago; returns the seconds it took."""
    async def load() -> None:
        storage = open_storage(load_cloud_config(server.config_path).database)
        await storage.open()
        try:
            start = time.time() - POINTS - 60
            for first in range(0, POINTS, 20_000):
                frames = [(i + 1, TelemetryFrame.model_construct(
                    ts=start + i, device_id="oven-1", sensors={"temp": reading(i)}, metrics={}, status="ok"))
                    for i in range(first, min(first + 20_000, POINTS))]
                await storage.ingest(OVEN_EDGE, frames, None, int(time.time() * 1e6))
        finally:
            await storage.close()
    began = time.perf_counter()
    asyncio.run(load())
    return time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core the process used over ``seconds``."""
    before, began = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - began)


async def session_cookie(client: httpx.AsyncClient, token: str) -> str:
    resp = await client.post("/login", json={"token": token})
    resp.raise_for_status()
    return resp.cookies[SESSION_COOKIE]


async def fleet_cold_load(browser: Browser, base: str, cookie: str, runs: int = 5) -> dict[str, Any]:
    times, sizes = [], []
    for _ in range(runs):
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": base}])
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        received: list[int] = []
        cdp.on("Network.loadingFinished", lambda e, into=received: into.append(int(e["encodedDataLength"])))
        began = time.perf_counter()
        await page.goto(base + "/")
        await page.locator("#fleet-status", has_text="edges online").wait_for()
        times.append((time.perf_counter() - began) * 1000)
        await page.wait_for_load_state("networkidle")
        sizes.append(sum(received))
        await context.close()
    return {"first_ms": times[0], "median_ms": statistics.median(times), "bytes": sizes[0]}


async def loaded(page: Page, n: int) -> None:
    """Until the page has drawn its n-th history load (the CSP forbids evaluating strings: a selector waits)."""
    await page.locator(f"#device-charts[data-loaded='{n}']").wait_for(timeout=60_000)


async def device_chart(browser: Browser, base: str, cookie: str, runs: int = 5) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": base}])
    page = await context.new_page()
    await page.goto(base + "/devices?d=oven-1&range=30d&fields=temp")
    await loaded(page, 1)
    for n in range(2, runs + 1):  # 24 h, then back to 30 days: a 30-day load each time
        await page.select_option("#device-range", "24h")
        await loaded(page, 2 * n - 2)
        await page.select_option("#device-range", "30d")
        await loaded(page, 2 * n - 1)
    loads = [x for x in await page.evaluate("window.twinCharts.loads") if x["span_s"] > 29 * 86400]
    spike = await page.evaluate("Math.max(...window.twinCharts.charts.temp.data[3])")
    await context.close()
    later = [x["ms"] for x in loads[1:]]
    return {"first_ms": loads[0]["ms"], "median_ms": statistics.median(later), "max_ms": max(later),
            "buckets": loads[0]["buckets"], "window_s": loads[0]["window_s"], "spike_kept": spike > 400}


async def live_latency(browser: Browser, base: str, cookie: str, seconds: float) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": base}])
    page = await context.new_page()
    await page.goto(base + "/devices?d=machine-1&range=15m&fields=spindle_temp")
    await page.locator("#device-feed", has_text="live").wait_for(timeout=30_000)
    await asyncio.sleep(seconds)
    got = sorted(await page.evaluate("window.twinCharts.latency"))
    await context.close()
    return {"frames": len(got), "median_s": statistics.median(got), "p95_s": got[int(len(got) * 0.95) - 1],
            "max_s": got[-1]}


async def live_page_client(base: str, cookie: str, device: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """One browser session on a device page: the live feed open, the page's requests every few seconds."""
    ws_url = base.replace("http://", "ws://") + f"/api/v1/twin/ws/{device}"
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": base}
    paths = [f"/api/v1/twin/{device}/state", "/api/v1/edges", "/api/v1/drift",
             f"/api/v1/alerts?device={device}&limit=10"]
    async with connect(ws_url, additional_headers=headers) as ws, \
            httpx.AsyncClient(base_url=base, cookies={SESSION_COOKIE: cookie}, timeout=30) as client:
        async def read() -> None:
            async for _ in ws:
                counts["frames"] += 1

        reader = asyncio.create_task(read())
        try:
            while not stop.is_set():
                for path in paths:
                    (await client.get(path)).raise_for_status()
                    counts["requests"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PAGE_POLL_S)
        finally:
            reader.cancel()


async def sessions_cpu(server: CloudServer, clients: int, seconds: float) -> dict[str, Any]:
    assert server.pid is not None
    idle = await cpu_share(server.pid, seconds)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        cookies = [await session_cookie(client, server.viewer_token) for _ in range(clients)]
    stop = asyncio.Event()
    counts = {"frames": 0, "requests": 0}
    tasks = [asyncio.create_task(live_page_client(server.base_url, c, f"machine-{1 + i % 2}", stop, counts))
             for i, c in enumerate(cookies)]
    await asyncio.sleep(3)  # every session connected and past its first requests
    counts.update(frames=0, requests=0)
    loaded = await cpu_share(server.pid, seconds)
    sent = dict(counts)
    stop.set()
    await asyncio.gather(*tasks)
    return {"clients": clients, "idle_cpu": idle, "cpu": loaded, "frames_per_s": sent["frames"] / seconds,
            "requests_per_s": sent["requests"] / seconds}


async def plant(cloud: CloudServer, tmp: Path) -> tuple[asyncio.subprocess.Process, EdgeDaemon]:
    modbus = free_ports(2)
    sim_args = ["--machines", "2", "--modbus-port", str(modbus), "--no-opcua"]
    gen = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim.cli", "config", *sim_args, "--poll-interval", "200ms", stdout=subprocess.PIPE)
    generated = (await gen.communicate())[0].decode()
    ready = tmp / "sim.ready"
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim.cli", "run", *sim_args, "--summary-every", "0s", "--ready-file", str(ready),
        "--log-level", "warning")
    async with asyncio.timeout(60):
        while not ready.exists():
            await asyncio.sleep(0.1)
    uplink = (f'\n[uplink]\nurl = "{cloud.base_url}"\ntoken = "{cloud.edge_tokens[EDGE]}"\nretry_max = "10s"\n')
    daemon = EdgeDaemon(tmp / "edge", uplink + "\n" + generated[generated.index("[[sources]]"):], edge_id=EDGE)
    await daemon.start()
    return sim, daemon


async def measure(cloud: CloudServer, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    sim, daemon = await plant(cloud, tmp)
    try:
        async with httpx.AsyncClient(base_url=cloud.base_url, timeout=30) as client:
            cookie = await session_cookie(client, cloud.viewer_token)
            async with asyncio.timeout(60):
                while "machine-2" not in [d["name"] for d in (await client.get("/api/v1/devices")).json()]:
                    await asyncio.sleep(0.2)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                fleet = await fleet_cold_load(browser, cloud.base_url, cookie)
                chart = await device_chart(browser, cloud.base_url, cookie)
                latency = await live_latency(browser, cloud.base_url, cookie, args.seconds)
            finally:
                await browser.close()
        cpu = await sessions_cpu(cloud, args.clients, args.seconds)
    finally:
        sim.terminate()
        await sim.wait()
        await daemon.stop()
    return {"fleet": fleet, "chart": chart, "latency": latency, "cpu": cpu}


def report(r: dict[str, Any], seeded_s: float) -> None:
    f, c, lat, cpu = r["fleet"], r["chart"], r["latency"], r["cpu"]
    print(f"seeded {POINTS:,} points (30 days at 1 Hz, one sensor) in {seeded_s:.1f} s")
    print(f"fleet page, cold first load: {f['first_ms']:.0f} ms (median of 5 cold profiles {f['median_ms']:.0f} ms), "
          f"{f['bytes'] / 1024:.0f} KiB transferred   target < 1 s {'✓' if f['median_ms'] < 1000 else '✗'}")
    print(f"device chart, 30 days of 1 Hz ({POINTS:,} points) as {c['buckets']} buckets of {c['window_s']} s: "
          f"request to drawn {c['first_ms']:.0f} ms first, then median {c['median_ms']:.0f} ms "
          f"(max {c['max_ms']:.0f}); "
          f"spike kept: {c['spike_kept']}   target < 500 ms {'✓' if c['median_ms'] < 500 else '✗'}")
    print(f"live latency, edge reading (before its commit) to chart drawn, uplink as in make run: median "
          f"{lat['median_s']:.2f} s, p95 {lat['p95_s']:.2f} s, max {lat['max_s']:.2f} s over {lat['frames']} frames"
          f"   target < 2 s {'✓' if lat['p95_s'] < 2 else '✗'}")
    print(f"cloud CPU, {cpu['clients']} sessions on live device pages (WebSocket clients with session cookies, "
          f"{cpu['frames_per_s']:.0f} frames/s sent, {cpu['requests_per_s']:.0f} page requests/s): "
          f"{cpu['cpu'] * 100:.1f} % of a core (idle with the edge feeding: {cpu['idle_cpu'] * 100:.1f} %)"
          f"   target < 30 % {'✓' if cpu['cpu'] < 0.30 else '✗'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency and CPU measurements")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"Debian's chromium is needed ({CHROMIUM}); deploy/scripts/system-deps.sh installs it")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        cloud = CloudServer(Path(tmp) / "cloud", edges=[EDGE, OVEN_EDGE], auth_cache_ttl="5s")
        seeded = seed(cloud)
        with cloud:
            result = asyncio.run(measure(cloud, Path(tmp), args))
    if args.json:
        print(json.dumps({"seed_s": seeded, **result}, indent=1))
    else:
        report(result, seeded)


if __name__ == "__main__":
    main()
