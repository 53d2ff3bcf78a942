"""`make run`: the simulated plant -> the edge gateway on its embedded defaults, with a live summary.

Starts twinsim (Modbus TCP + OPC-UA machines) and `twinedge run` as child
processes under ./run/, prints what arrives every few seconds, and stops both
cleanly on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edge.broker.auth import set_password
from edge.control import ControlError, request

RUN = Path("run").resolve()
MACHINES = 3
REFRESH = 3.0


def free_port(preferred: int, span: int = 1) -> int:
    """``preferred`` when it (and the next span-1 ports) are free on 127.0.0.1, else a free one."""
    candidates = [preferred] + [0] * 5
    for port in candidates:
        socks = []
        try:
            for offset in range(span):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port + offset if port else 0))
                if not port:
                    port = s.getsockname()[1]
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free port found on 127.0.0.1")


def prepare() -> tuple[list[str], list[str], Path, str]:
    RUN.mkdir(exist_ok=True)
    modbus = free_port(5020, MACHINES)
    opcua = free_port(4840)
    mqtt = free_port(1883)
    password = secrets.token_urlsafe(12)
    passwd = RUN / "broker.passwd"
    passwd.unlink(missing_ok=True)
    set_password(passwd, "demo", password)
    config = RUN / "edge.toml"
    common = ["--machines", str(MACHINES), "--modbus-port", str(modbus), "--opcua-port", str(opcua)]
    subprocess.run(
        [sys.executable, "-m", "edge.sim.cli", "config", *common, "--edge-id", "demo-edge",
         "--state-dir", str(RUN / "state"), "-o", str(config)],
        check=True,
    )
    with config.open("a") as f:
        f.write(
            f'\n[broker]\npassword_file = "{passwd}"\n'
            f'listeners = [{{ name = "default", host = "127.0.0.1", port = {mqtt} }}]\n'
            f'\n[control]\nsocket = "{RUN / "control.sock"}"\n'
        )
    sim = [sys.executable, "-m", "edge.sim.cli", "run", *common, "--summary-every", "0s",
           "--ready-file", str(RUN / "sim.ready"), "--log-level", "warning"]
    edge = [sys.executable, "-m", "edge.cli", "run", "-c", str(config)]
    hint = (f"mosquitto_pub -h 127.0.0.1 -p {mqtt} -u demo -P {password} -q 1 "
            f"-t twin/bench-1/telemetry -m '{{\"ts\": {time.time():.0f}, \"device_id\": \"bench-1\", "
            f"\"sensors\": {{\"temp\": 21.5}}}}'")
    return sim, edge, config, hint


def summary(status: dict[str, object]) -> str:
    sources = status["sources"]
    assert isinstance(sources, list)
    parts = [f"{s['name']}:{s['state']}({s['frames']})" for s in sources]
    queue = status["queue"]
    assert isinstance(queue, dict)
    drops = sum(queue["drops"].values())
    return (f"{time.strftime('%H:%M:%S')}  {' '.join(parts)}  | queued {queue['depth']} frames, "
            f"drops {drops}, quarantined {queue['quarantined']}")


async def watch(edge: subprocess.Popen[bytes]) -> None:
    sock = RUN / "control.sock"
    while edge.poll() is None:
        with contextlib.suppress(ControlError, OSError, json.JSONDecodeError):
            print(summary(await request(sock, "status")), flush=True)
        await asyncio.sleep(REFRESH)
    raise SystemExit(f"the edge daemon exited with code {edge.returncode}; see its log above")


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in 25 s; killing it", file=sys.stderr)
            proc.kill()


def main() -> int:
    sim_cmd, edge_cmd, config, hint = prepare()
    ready = RUN / "sim.ready"
    ready.unlink(missing_ok=True)
    # Children ignore the terminal's Ctrl-C; we stop them in order with SIGTERM.
    sim = subprocess.Popen(sim_cmd, start_new_session=True)
    edge: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the plant simulator did not start; see its log above")
            time.sleep(0.2)
        edge = subprocess.Popen(edge_cmd, start_new_session=True)
        print(f"\nplant simulator: {MACHINES} machines (Modbus TCP + OPC-UA); edge config {config}")
        print(f"publish your own frame:\n  {hint}")
        print("status: .venv/bin/twinedge status --socket run/control.sock   (Ctrl-C stops)\n", flush=True)
        asyncio.run(watch(edge))
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        if edge is not None:
            stop(edge, "the edge daemon")
        stop(sim, "the simulator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
