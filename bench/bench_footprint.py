"""Footprint benchmark: RSS and CPU of the running daemon (`twinedge run`) as a separate process.

Run: python bench/bench_footprint.py          (about 90 s)

Phase 1 (loaded): the embedded broker, 50 Modbus TCP devices x 100 registers
polled every 1 s and one OPC-UA source subscribed to 1,000 items changing at
10 Hz, all served by the plant simulator (twinsim) in another process.
Phase 2 (idle): the daemon with its broker and no traffic.
Targets: RSS < 150 MB loaded; idle CPU < 2 % of a core.

With ``--model`` every Modbus device of phase 1 is scored by a model (a local package, frame mode, over ten of
its registers; a real ONNX graph built with the dev extra's onnx in this process, not the daemon's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from edge.broker.auth import set_password  # noqa: E402
from edge.control import ControlError  # noqa: E402
from edge.control.client import request  # noqa: E402
from tests.support import free_port, free_ports  # noqa: E402


def broker_section(tmp: Path) -> str:
    passwd = tmp / "broker.passwd"
    set_password(passwd, "bench", "bench-password")
    return (f'\n[broker]\npassword_file = "{passwd}"\n'
            f'listeners = [{{ name = "default", host = "127.0.0.1", port = {free_port()} }}]\n'
            f'\n[control]\nsocket = "{tmp / "control.sock"}"\n')


async def wait_ready(sock: Path, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(60):
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}")
            try:
                await request(sock, "status")
                return
            except ControlError:
                await asyncio.sleep(0.2)


async def measure(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, float]:
    p = psutil.Process(proc.pid)
    cpu0, t0 = p.cpu_times(), time.monotonic()
    peak = 0
    end = t0 + seconds
    while time.monotonic() < end:
        peak = max(peak, p.memory_info().rss)
        await asyncio.sleep(0.5)
    cpu1, t1 = p.cpu_times(), time.monotonic()
    return {
        "cpu_pct": 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / (t1 - t0),
        "rss_mb": p.memory_info().rss / 1e6,
        "peak_rss_mb": peak / 1e6,
    }


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "-c", str(config)], stdout=out, stderr=out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def model_section(tmp: Path, config: Path) -> str:
    """[[inference.local]] rules: one package over the first ten registers of the Modbus devices, for each."""
    import tomllib

    from tests.mlkit import make_package, make_schema

    modbus = [s for s in tomllib.loads(config.read_text())["sources"] if s["kind"] == "modbus"]
    sensors = [r["name"] for r in modbus[0]["registers"][:10]]
    data, _ = make_package(make_schema(sensors, mean=100.0, scale=100.0, threshold=1e6), name="footprint")
    package = tmp / "footprint.twinmodel"
    package.write_bytes(data)
    return "\n[inference]\n" + "".join(
        f'[[inference.local]]\ndevice = "{s.get("device_id") or s["name"]}"\npackage = "{package}"\n'
        for s in modbus)


async def loaded(tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    modbus, opcua = free_ports(args.devices), free_port()
    common = ["--machines", str(args.devices), "--modbus-port", str(modbus), "--opcua-port", str(opcua),
              "--registers", "100", "--opcua-items", str(args.items)]
    config = tmp / "loaded.toml"
    gen = [sys.executable, "-m", "twinsim.cli", "config", *common, "--state-dir", str(tmp / "state"),
           "--publishing-interval", "100ms", "-o", str(config)]
    subprocess.run(gen, check=True)  # noqa: ASYNC221 - a one-off, before timing
    with config.open("a") as f:
        f.write(broker_section(tmp))
        if args.model:
            f.write(model_section(tmp, config))
    # Two simulator processes: one asyncua server with 1,000 items at 10 Hz keeps a
    # core busy, and would make the Modbus devices answer late if they shared it.
    sims = []
    for part, skip in (("modbus", "--no-opcua"), ("opcua", "--no-modbus")):
        ready = tmp / f"sim-{part}.ready"
        cmd = [sys.executable, "-m", "twinsim.cli", "run", *common, skip, "--summary-every", "0s",
               "--ready-file", str(ready), "--log-level", "warning"]
        sims.append((subprocess.Popen(cmd), ready))  # noqa: ASYNC220 - started once, before timing
    try:
        deadline = time.monotonic() + 120
        for sim, ready in sims:
            while not ready.exists():
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the simulator did not start")
                await asyncio.sleep(0.2)
        edge = start_daemon(config, tmp / "loaded.log")
        try:
            await wait_ready(tmp / "control.sock", edge)
            await asyncio.sleep(args.warmup)
            before = await request(tmp / "control.sock", "status")
            result = await measure(edge, args.seconds)
            after = await request(tmp / "control.sock", "status")
            values = sum(s["values"] for s in after["sources"]) - sum(s["values"] for s in before["sources"])
            result["values_per_s"] = values / args.seconds
            result["connected"] = sum(1 for s in after["sources"] if s["state"] == "connected")
            result["sources"] = len(after["sources"])
            models = after.get("models") or {}
            result["scored_devices"] = sum(1 for m in models.values() if m.get("last_scored_at") is not None)
        finally:
            stop(edge)
    finally:
        for sim, _ in sims:
            stop(sim)
    return result


async def idle(tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    config = tmp / "idle.toml"
    config.write_text(f'[edge]\nid = "idle-edge"\nstate_dir = "{tmp / "idle-state"}"\n' + broker_section(tmp))
    edge = start_daemon(config, tmp / "idle.log")
    try:
        await wait_ready(tmp / "control.sock", edge)
        await asyncio.sleep(3)
        return await measure(edge, args.seconds)
    finally:
        stop(edge)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        load = await loaded(tmp, args)
        rest = await idle(tmp, args)
    print(f"\n{'phase':58} {'CPU %':>6} {'RSS MB':>7} {'peak MB':>8}")
    title = f"loaded: broker + {args.devices} Modbus x 100 regs @1 s + {args.items} OPC-UA items @10 Hz"
    if args.model:
        title += ", scored"
    print(f"{title:58} {load['cpu_pct']:6.1f} {load['rss_mb']:7.1f} {load['peak_rss_mb']:8.1f}")
    print(f"  values/s stored: {load['values_per_s']:.0f}; sources connected {load['connected']}/{load['sources']}")
    if args.model:
        print(f"  devices scored by their model: {load['scored_devices']}")
    print(f"{'idle: broker, no sources, no traffic':58} {rest['cpu_pct']:6.1f} {rest['rss_mb']:7.1f} "
          f"{rest['peak_rss_mb']:8.1f}")
    print("\nTargets: RSS < 150 MB loaded; idle CPU < 2 % of a core (100 % = one core).")
    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if args.json:
        print(json.dumps({"loaded": load, "idle": rest}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--model", action="store_true", help="every Modbus device scored by a local model package")
    asyncio.run(main(parser.parse_args()))
