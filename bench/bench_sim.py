"""Benchmark: CPU cost of the twinsim plant simulator (``python bench/bench_sim.py``, about 2 minutes).

Runs ``twinsim run`` as a subprocess on 127.0.0.1 and measures its CPU with
psutil while it serves:

1. 50 Modbus devices x 100 holding registers, 10 Hz tick, nobody reading;
2. the same, with 50 clients each reading all 100 registers at 10 Hz (500 requests/s);
3. OPC-UA with 1,000 extra variables changing at 10 Hz, nobody subscribed;
4. the same, with one client subscribed to all 1,000 at 100 ms.

The target: the simulator stays well under one core (100 %) in case 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import free_ports  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEASURE_S = 20.0
DEVICES = 50
REGISTERS = 100
ITEMS = 1000


@contextlib.asynccontextmanager
async def simulator(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twinsim", "run", "--summary-every", "0s", "--ready-file", str(ready), *args,
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(60):
                while not ready.exists():
                    if proc.returncode is not None:
                        raise RuntimeError(f"twinsim exited with {proc.returncode}")
                    await asyncio.sleep(0.1)
            yield proc, json.loads(ready.read_text())
        finally:
            proc.terminate()
            async with asyncio.timeout(20):
                await proc.wait()


async def cpu_percent(pid: int, seconds: float) -> float:
    process = psutil.Process(pid)
    start = process.cpu_times()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    end = process.cpu_times()
    used = (end.user - start.user) + (end.system - start.system)
    return 100.0 * used / (time.monotonic() - t0)


async def poller(port: int, stop: asyncio.Event, counts: list[int]) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        while not stop.is_set():
            response = await client.read_holding_registers(0, count=REGISTERS, device_id=1)
            counts[0 if not response.isError() else 1] += 1
            next_at += 0.1
            await asyncio.sleep(max(0.0, next_at - loop.time()))
    finally:
        client.close()


async def modbus_case(polled: bool) -> tuple[float, str]:
    base = free_ports(DEVICES)
    args = ("--machines", str(DEVICES), "--registers", str(REGISTERS), "--modbus-port", str(base), "--no-opcua")
    async with simulator(*args) as (proc, info):
        await asyncio.sleep(2.0)  # let start-up settle
        if not polled:
            return await cpu_percent(proc.pid, MEASURE_S), "-"
        stop, counts = asyncio.Event(), [0, 0]
        async with asyncio.TaskGroup() as tg:
            for i, ep in enumerate(info["modbus"]):
                tg.create_task(poller(ep["port"], stop, counts), name=f"bench-poller-{i}")
            await asyncio.sleep(2.0)
            counts[:] = [0, 0]
            cpu = await cpu_percent(proc.pid, MEASURE_S)
            rate = counts[0] / MEASURE_S
            stop.set()
        return cpu, f"{rate:,.0f} reads/s, {counts[1]} errors"


class _Count:
    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        self.n += 1


async def opcua_case(subscribed: bool) -> tuple[float, str]:
    port = free_ports(1)
    async with simulator("--machines", "3", "--no-modbus", "--opcua-port", str(port),
                         "--opcua-items", str(ITEMS)) as (proc, info):
        await asyncio.sleep(2.0)
        if not subscribed:
            return await cpu_percent(proc.pid, MEASURE_S), "-"
        async with Client(info["opcua"], timeout=10) as client:
            counter = _Count()
            sub = await client.create_subscription(100, counter)
            nodes = [client.get_node(f"ns=2;s=Bench.Item{i:04d}") for i in range(ITEMS)]
            await sub.subscribe_data_change(nodes)
            await asyncio.sleep(2.0)
            counter.n = 0
            cpu = await cpu_percent(proc.pid, MEASURE_S)
            rate = counter.n / MEASURE_S
            await sub.delete()
        return cpu, f"{rate:,.0f} notifications/s"


async def main() -> None:
    print(f"twinsim CPU ({psutil.cpu_count()} cores, {MEASURE_S:.0f} s per case; 100 % = one core)")
    cases = [
        (f"Modbus {DEVICES} dev x {REGISTERS} regs, 10 Hz, idle", modbus_case(False)),
        (f"Modbus {DEVICES} dev x {REGISTERS} regs, 10 Hz, polled 10 Hz", modbus_case(True)),
        (f"OPC-UA {ITEMS} items at 10 Hz, no subscriber", opcua_case(False)),
        (f"OPC-UA {ITEMS} items at 10 Hz, 1 subscription 100 ms", opcua_case(True)),
    ]
    print(f"{'case':<52} {'sim CPU':>8}  client side")
    for name, case in cases:
        cpu, detail = await case
        print(f"{name:<52} {cpu:7.1f}%  {detail}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
