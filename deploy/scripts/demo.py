"""`make run`: simulated PLCs -> edge gateway -> cloud aggregator, on the embedded defaults.

Starts three child processes under ./run/ (made afresh each time): the cloud
service on SQLite, the plant simulator (Modbus TCP + OPC-UA machines) and the
edge daemon, whose uplink syncs to the cloud. Every few seconds it prints what
the cloud has received. Ctrl-C stops all three cleanly.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edge.broker.auth import set_password

RUN = Path("run").resolve()
MACHINES = 3
REFRESH = 3.0
EDGE_ID = "demo-edge"


def free_port(preferred: int, span: int = 1) -> int:
    """``preferred`` when it (and the next span-1 ports) are free on 127.0.0.1, else a free one."""
    for port in (preferred, 0, 0, 0, 0):
        socks: list[socket.socket] = []
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


def twincloud(config: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "cloud.cli", "--config", str(config), "--log-level", "WARNING",
                          *args], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0]


class Demo:
    def __init__(self) -> None:
        shutil.rmtree(RUN, ignore_errors=True)
        RUN.mkdir()
        self.cloud_port = free_port(8080)
        self.modbus_port = free_port(5020, MACHINES)
        self.opcua_port = free_port(4840)
        self.mqtt_port = free_port(1883)
        self.mqtt_password = secrets.token_urlsafe(12)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        cloud_config = RUN / "cloud.toml"
        cloud_config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.cloud_port}\n\n'
            f'[database]\nurl = "sqlite:///{RUN / "cloud.db"}"\n'
        )
        self.cloud_config = cloud_config
        self.edge_token = twincloud(cloud_config, "edge", "add", EDGE_ID)
        self.viewer_token = twincloud(cloud_config, "user", "add", "--role", "viewer", "demo-viewer")
        self.edge_config = self._edge_config()

    def _edge_config(self) -> Path:
        passwd = RUN / "broker.passwd"
        set_password(passwd, "demo", self.mqtt_password)
        config = RUN / "edge.toml"
        subprocess.run(
            [sys.executable, "-m", "twinsim.cli", "config", *self._sim_args(), "--edge-id", EDGE_ID,
             "--state-dir", str(RUN / "state"), "-o", str(config)],
            check=True,
        )
        with config.open("a") as f:
            f.write(
                f'\n[broker]\npassword_file = "{passwd}"\n'
                f'listeners = [{{ name = "default", host = "127.0.0.1", port = {self.mqtt_port} }}]\n'
                f'\n[control]\nsocket = "{RUN / "control.sock"}"\n'
                f'\n[uplink]\nurl = "http://127.0.0.1:{self.cloud_port}"\ntoken = "{self.edge_token}"\n'
                f'retry_max = "10s"\n'
            )
        return config

    def _sim_args(self) -> list[str]:
        return ["--machines", str(MACHINES), "--modbus-port", str(self.modbus_port),
                "--opcua-port", str(self.opcua_port)]

    def start(self, name: str, *cmd: str) -> subprocess.Popen[bytes]:
        # Children ignore the terminal's Ctrl-C (own session); we stop them in order with SIGTERM.
        proc = subprocess.Popen([sys.executable, *cmd], start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def wait_until(self, what: str, ready: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited with code {proc.returncode}; see its log above")
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start within {timeout:.0f} s")
            time.sleep(0.2)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.cloud_port}{path}",
                                         headers={"Authorization": f"Bearer {self.viewer_token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def cloud_up(self) -> bool:
        try:
            self.get("/health")
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def run(self) -> None:
        self.start("the cloud", "-m", "cloud.cli", "--config", str(self.cloud_config), "serve")
        self.wait_until("the cloud", self.cloud_up)
        ready = RUN / "sim.ready"
        self.start("the simulator", "-m", "twinsim.cli", "run", *self._sim_args(), "--summary-every", "0s",
                   "--ready-file", str(ready), "--log-level", "warning")
        self.wait_until("the plant simulator", ready.exists)
        self.start("the edge daemon", "-m", "edge.cli", "run", "-c", str(self.edge_config))
        base = f"http://127.0.0.1:{self.cloud_port}"
        print(f"\nrunning: plant simulator ({MACHINES} machines, Modbus TCP + OPC-UA) -> edge {EDGE_ID} "
              f"-> cloud {base}")
        print(f"  API docs:     {base}/docs   (viewer token: {self.viewer_token})")
        print("  edge status:  .venv/bin/twinedge status --socket run/control.sock")
        print(f"  publish:      mosquitto_pub -h 127.0.0.1 -p {self.mqtt_port} -u demo -P {self.mqtt_password} -q 1 "
              f"-t twin/bench-1/telemetry -m '{{\"ts\": {time.time():.0f}, \"sensors\": {{\"temp\": 21.5}}}}'")
        print("  Ctrl-C stops everything\n", flush=True)
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited with code {proc.returncode}; see its log above")
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                print(self.summary(), flush=True)
            time.sleep(REFRESH)

    def summary(self) -> str:
        edges = {e["name"]: e for e in self.get("/api/v1/edges")}
        edge = edges.get(EDGE_ID, {})
        devices = self.get("/api/v1/twin/devices")
        parts = []
        for device in devices[:4]:
            state = self.get(f"/api/v1/twin/{device}/state")
            values = state.get("values", {})
            temp = values.get("spindle_temp", {}).get("value")
            age = time.time() - state["ts"] if state.get("ts") else None
            shown = f"{temp:.1f}°C" if isinstance(temp, int | float) else f"{len(values)} values"
            parts.append(f"{device} {shown} ({age:.1f} s ago)" if age is not None else device)
        more = f" +{len(devices) - 4} more" if len(devices) > 4 else ""
        return (f"{time.strftime('%H:%M:%S')}  cloud has {edge.get('frames_stored', 0)} frames from {EDGE_ID} "
                f"(edge queue {edge.get('queue_depth')})  |  {', '.join(parts)}{more}")

    def stop(self) -> None:
        for name, proc in reversed(self.procs):  # edge first, then the simulator, the cloud last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=25)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in 25 s; killing it", file=sys.stderr)
                    proc.kill()


def main() -> int:
    demo = Demo()
    try:
        demo.run()
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
