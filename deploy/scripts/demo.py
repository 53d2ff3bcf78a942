"""`make run`: simulated PLCs -> edge gateway -> cloud aggregator, on the embedded defaults.

Starts four child processes with their configs in a run directory (``run/``,
cleared each time): the cloud service on SQLite, the plant simulator (Modbus
TCP + OPC-UA machines), the simulator's MTConnect agent and the edge daemon,
whose uplink syncs to the cloud.
Every few seconds it prints what the cloud has received, one line per device.
Every line says which process it comes from, log lines in one format.

The simulator also runs a PUR moulding station (``station-1``). Once its
first readings reach the cloud, the demo binds the ``pur-foam`` process model
to it (binding ``pur``: each shot-counter change opens a run, each mould
temperature reading re-solves it) and a formula ``vent`` (the measured cavity
pressure minus the model's, a blocked vent's sign); the station's summary
line shows the live predicted demould time ``pur.t_demold`` and its margin to
the recipe's cycle time.

A CNC lathe (``lathe-1``) is the simulator's MTConnect agent replaying a real
Okuma lathe's recording at its own pace; the edge streams it over
MTConnect, and a program harvester watches ``run/programs`` (four sample
programs named like the ones the lathe runs). The lathe's summary line shows
its execution state and program; the cloud links each program run to the
harvested program (``twincloud programs runs``, the console's Programs page).

Ctrl-C, SIGTERM or a hang-up (the terminal closed) stop all four: the edge
first, then the simulator and the cloud, each given 10 s before it is killed;
a second Ctrl-C kills at once. The children never see the terminal, so a
closed pipe (``make run | tee log``) or a hung-up terminal cannot kill them or
the demo halfway. While one run uses a run directory, a second one refuses
to start there; processes a dead earlier run left behind are stopped.

    demo.py [--run-dir DIR] [--machines N] [--cloud-port P] [--modbus-port P]
            [--opcua-port P] [--mqtt-port P] [--mtconnect-port P] [--refresh SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from demo_procs import Child, Console, DemoFailed, RunDir, RunDirBusy, log_line, now, pick_port, stop_children
from demo_summary import summary_lines

# cloud, edge and twinsim are imported where they are used: until main() has taken over the signals, a
# Ctrl-C would end the demo with a traceback, so that moment is kept short.

EDGE_ID = "demo-edge"
STATION = "station-1"
STATION_CYCLE_S = 120.0  # the station's recipe cycle time (twinsim --station-cycle)
LATHE = "lathe-1"  # the replayed Okuma lathe's device id


def station_bindings(device: str = STATION, cycle_s: float = STATION_CYCLE_S) -> list[dict[str, Any]]:
    """The PUR foam model bound to a moulding station, and the vent check over its outputs
    (docs/process-models.md, "Binding a model to a device")."""
    return [
        {"name": "pur", "device": device, "spec": {
            "kind": "model", "model": "pur-foam", "start_on": "shot_count", "start_when": "change",
            "inputs": {"mould_temperature": {"sensor": "mould_temp", "unit": "degC"}},
            "parameters": {"material": "water-pentane", "shot_mass_kg": 0.3, "mould_volume_l": 10.0,
                           "mould_area_m2": 0.33, "cycle_time_s": cycle_s, "alpha_demold": 0.6,
                           "hardness_demold": 10.0},
            "solver": {"backend": "cvode", "rtol": 1e-6, "atol": 1e-9},
            "outputs": {o: f"pur.{o}" for o in ("t_demold", "margin_s", "t_core", "alpha", "p_mould",
                                               "hardness")},
            "max_run_s": max(600.0, 2 * cycle_s)}},
        {"name": "vent", "device": device, "spec": {
            "kind": "formula", "expression": "cavity - model", "output": "vent_excess", "unit": "bar",
            "inputs": {"cavity": {"sensor": "cavity_pressure"}, "model": {"sensor": "pur.p_mould"}},
            "trigger": ["cavity_pressure"]}},
    ]
STOP_GRACE = 10.0
START_TIMEOUT = 60.0


class Stopped(Exception):
    """A signal asked the demo to stop."""


class Signals:
    """SIGINT, SIGTERM and SIGHUP ask for a stop; a second SIGINT asks to hurry (kill at once). The
    handlers only set flags: nothing is raised in the middle of the stop sequence."""

    def __init__(self) -> None:
        self.stop, self.hurry = threading.Event(), threading.Event()
        self.name = ""

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._received)

    def _received(self, signum: int, _frame: object) -> None:
        if self.stop.is_set():
            if signum == signal.SIGINT:
                self.hurry.set()
            return
        self.name = signal.Signals(signum).name
        self.stop.set()

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped


class Demo:
    def __init__(self, args: argparse.Namespace, run: Path, console: Console, signals: Signals) -> None:
        self.args, self.run_dir, self.console, self.signals = args, run, console, signals
        self.children: list[Child] = []
        self.cloud_port = pick_port("the cloud", args.cloud_port, 1, self.warn)
        self.modbus_port = pick_port("Modbus", args.modbus_port, args.machines + 1, self.warn)  # + the station
        self.opcua_port = pick_port("OPC-UA", args.opcua_port, 1, self.warn)
        self.mqtt_port = pick_port("MQTT", args.mqtt_port, 1, self.warn)
        self.mtconnect_port = pick_port("MTConnect", args.mtconnect_port, 1, self.warn)
        self.mqtt_password = secrets.token_urlsafe(12)
        self.cloud_config = run / "cloud.toml"
        self.edge_config = run / "edge.toml"
        self.edge_token = self.viewer_token = self.operator_token = ""
        self.bound = False

    def say(self, text: str, level: str = "INFO") -> None:
        self.console.say("demo", log_line(level, "demo", text))

    def warn(self, text: str) -> None:
        self.say(text, "WARNING")

    def prepare(self) -> None:
        from cloud.storage.base import StorageError
        from edge.broker.auth import set_password
        from twinsim.edgeconfig import ConfigSettings, render_edge_config

        run = self.run_dir
        self.cloud_config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.cloud_port}\n\n'
            f'[database]\nurl = "sqlite:///{run / "cloud.db"}"\n'
        )
        try:
            self.edge_token, self.viewer_token, self.operator_token = asyncio.run(self._tokens())
        except StorageError as exc:
            raise DemoFailed(f"cannot create the demo's tokens in {run / 'cloud.db'}: {exc}") from None
        self.signals.check()
        passwd = run / "broker.passwd"
        set_password(passwd, "demo", self.mqtt_password)
        config = render_edge_config(ConfigSettings(
            machines=self.args.machines, modbus_port=self.modbus_port, opcua_port=self.opcua_port, stations=1,
            edge_id=EDGE_ID, state_dir=str(run / "state"), command=f"twinsim config {' '.join(self._sim_args())}",
        ))
        self.edge_config.write_text(
            config + f'\n[broker]\npassword_file = "{passwd}"\n'
            f'listeners = [{{ name = "default", host = "127.0.0.1", port = {self.mqtt_port} }}]\n'
            f'\n[control]\nsocket = "{run / "control.sock"}"\n'
            f'\n[uplink]\nurl = "http://127.0.0.1:{self.cloud_port}"\ntoken = "{self.edge_token}"\n'
            f'retry_max = "10s"\n'
            + self._cnc_sources()
        )

    def _cnc_sources(self) -> str:
        """The lathe over MTConnect, and the harvester of the folder its programs are in (the samples copied)."""
        import shutil

        from twinsim.mtconnect import DATA_DIR

        programs = self.run_dir / "programs"
        programs.mkdir(exist_ok=True)
        for sample in sorted((DATA_DIR.parent / "programs").glob("*.MIN")):
            shutil.copy2(sample, programs / sample.name)
        return (
            f'\n# {LATHE}: the simulator MTConnect agent (a recorded Okuma lathe, replayed at its pace)\n'
            f'[[sources]]\nkind = "mtconnect"\nname = "{LATHE}"\n'
            f'url = "http://127.0.0.1:{self.mtconnect_port}"\ndevice_ids = {{ OKUMA = "{LATHE}" }}\n'
            f'\n# the programs {LATHE} runs, harvested from a folder\n'
            f'[[sources]]\nkind = "programs"\nname = "programs"\ndevice_id = "{LATHE}"\n'
            f'scan_interval = "5s"\nsettle_time = "1s"\n'
            f'[[sources.folders]]\nname = "lathe"\npath = "{programs}"\n'
        )

    async def _tokens(self) -> tuple[str, str, str]:
        """The edge's token, a viewer's and an operator's (the console's sign-in), as `twincloud edge add` and
        `twincloud user add` make them."""
        from cloud.config import load_cloud_config
        from cloud.identities import add_edge, add_user
        from cloud.storage import open_storage

        storage = open_storage(load_cloud_config(self.cloud_config).database)
        await storage.open()
        try:
            return (await add_edge(storage, EDGE_ID), await add_user(storage, "demo-viewer", "viewer"),
                    await add_user(storage, "demo-operator", "operator"))
        finally:
            await storage.close()

    def _sim_args(self) -> list[str]:
        return ["--machines", str(self.args.machines), "--modbus-port", str(self.modbus_port),
                "--opcua-port", str(self.opcua_port), "--stations", "1", "--station-cycle", f"{STATION_CYCLE_S:g}s"]

    def start(self, name: str, tag: str, *args: str) -> None:
        self.children.append(Child(name, tag, args, self.console))

    def check_children(self) -> None:
        for child in self.children:
            if (code := child.exited()) is not None:
                raise DemoFailed(f"{child.name} exited with code {code}; its last lines are above")

    def wait_until(self, what: str, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            self.check_children()
            if time.monotonic() > deadline:
                raise DemoFailed(f"{what} did not start within {START_TIMEOUT:.0f} s")
            self.signals.sleep(0.2)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.cloud_port}{path}",
                                         headers={"Authorization": f"Bearer {self.viewer_token}"})
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.cloud_port}{path}", data=json.dumps(body).encode(),
                                         method="POST", headers={"Authorization": f"Bearer {self.operator_token}",
                                                                 "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def bind_station(self, devices: list[str]) -> None:
        """Once the station's fields are in the cloud: bind the PUR model to it (once per run)."""
        if self.bound or STATION not in devices:
            return
        for binding in station_bindings():
            try:
                self.post("/api/v1/process/bindings?replace=true", binding)
            except urllib.error.HTTPError as exc:
                if exc.code == 422 and binding["name"] == "vent":
                    return  # the model's first outputs are not stored yet: the next summary tries again
                raise DemoFailed(f"the cloud refused binding {binding['name']!r}: {exc.code} "
                                 f"{exc.read().decode(errors='replace')[:300]}") from None
        self.bound = True
        self.say(f"bound the PUR foam model to {STATION}: a live predicted demould time (pur.t_demold) "
                 "from each shot's mould temperatures")

    def cloud_up(self) -> bool:
        try:
            self.get("/health")
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def run(self) -> None:
        """Start the children and print summaries until a signal (Stopped) or a failure (DemoFailed)."""
        self.start("the cloud", "cloud", "-m", "cloud.cli", "--config", str(self.cloud_config), "serve")
        ready = self.run_dir / "sim.ready"
        self.start("the simulator", "sim", "-m", "twinsim.cli", "run", *self._sim_args(), "--summary-every", "0s",
                   "--ready-file", str(ready), "--log-level", "warning")
        agent_ready = self.run_dir / "agent.ready"
        self.start("the CNC agent", "cnc", "-m", "twinsim.cli", "mtconnect", "--port", str(self.mtconnect_port),
                   "--device", "OKUMA", "--ready-file", str(agent_ready), "--log-level", "warning")
        self.wait_until("the cloud", self.cloud_up)
        self.wait_until("the plant simulator", ready.exists)
        self.wait_until("the CNC agent", agent_ready.exists)
        self.start("the edge daemon", "edge", "-m", "edge.cli", "run", "-c", str(self.edge_config))
        self.banner()
        while True:
            self.check_children()
            try:
                lines = self.summary()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                lines = [f"{now()} the cloud did not answer: {getattr(exc, 'reason', exc)}"]
            for line in lines:
                self.console.say("demo", line)
            self.signals.sleep(self.args.refresh)

    def banner(self) -> None:
        base = f"http://127.0.0.1:{self.cloud_port}"
        here = Path.cwd()
        sock = self.run_dir / "control.sock"
        shown = sock.relative_to(here) if sock.is_relative_to(here) else sock
        for line in (
            f"running: plant simulator ({self.args.machines} machine{'s' if self.args.machines > 1 else ''}, "
            f"Modbus TCP + OPC-UA, a CNC lathe over MTConnect) -> edge {EDGE_ID} "
            f"-> cloud {base}",
            f"  console:      {base}/   (sign in with the operator's token below)",
            f"  sign in with: {self.operator_token}",
            f"  API docs:     {base}/docs   (viewer token: {self.viewer_token})",
            f"  edge status:  .venv/bin/twinedge status --socket {shown}",
            f"  publish:      mosquitto_pub -h 127.0.0.1 -p {self.mqtt_port} -u demo -P {self.mqtt_password} -q 1 "
            f"-t twin/bench-1/telemetry -m '{{\"ts\": {time.time():.0f}, \"sensors\": {{\"temp\": 21.5}}}}'",
            "  Ctrl-C stops everything",
        ):
            self.console.say("demo", line)

    def summary(self) -> list[str]:
        edges = {e.get("name"): e for e in self.get("/api/v1/edges")}
        devices = sorted(self.get("/api/v1/twin/devices"))
        self.bind_station(devices)
        states = []
        for device in devices:
            self.signals.check()
            states.append(self.get(f"/api/v1/twin/{device}/state"))
        return summary_lines(edges.get(EDGE_ID, {}), EDGE_ID, states)

    def stop(self, why: str) -> None:
        # The edge first (it would log every lost PLC and cloud connection), then the simulator and the cloud.
        edge = [c for c in self.children if c.tag == "edge"]
        phases = [edge, [c for c in self.children if c not in edge]]
        if running := [c.name for phase in phases for c in phase if c.exited() is None]:
            self.say(f"stopping ({why}): {', '.join(running)}")
        stop_children(phases, STOP_GRACE, self.signals.hurry, lambda level, text: self.say(text, level))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo.py", description="simulated PLCs -> edge gateway -> cloud, "
                                "with a live summary (make run)")
    p.add_argument("--run-dir", type=Path, default=Path("run"), help="configs, databases and sockets (default run)")
    p.add_argument("--machines", type=int, choices=range(1, 51), default=3, metavar="1..50",
                   help="simulated machines (default 3)")
    p.add_argument("--cloud-port", type=int, default=8080, help="default 8080")
    p.add_argument("--modbus-port", type=int, default=5020, help="machine-1's Modbus port; machine-n: +n-1")
    p.add_argument("--opcua-port", type=int, default=4840, help="default 4840")
    p.add_argument("--mqtt-port", type=int, default=1883, help="the edge's broker (default 1883)")
    p.add_argument("--mtconnect-port", type=int, default=5000, help="the CNC lathe's MTConnect agent (default 5000)")
    p.add_argument("--refresh", type=float, default=3.0, help="seconds between summaries (default 3)")
    return p


def claim_run_dir(path: Path, console: Console) -> RunDir:
    """The run directory, locked for this run and emptied; what a dead earlier run left running is stopped."""
    run_dir = RunDir(path.resolve())
    try:
        run_dir.claim()
        if leftovers := run_dir.leftovers():
            for pid, cmd in leftovers:
                console.say("demo", log_line("WARNING", "demo", f"stopping what an earlier run left: pid {pid} "
                                             f"({cmd[:60]})"))
            run_dir.stop_processes([pid for pid, _ in leftovers], STOP_GRACE)
        run_dir.clear()
    except OSError as exc:
        raise DemoFailed(f"cannot use {path} as the run directory: {exc.strerror or exc}") from None
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signals = Signals()
    signals.install()
    console = Console()
    demo: Demo | None = None
    code = 0
    try:
        run_dir = claim_run_dir(args.run_dir, console)
        demo = Demo(args, run_dir.path, console, signals)
        demo.prepare()
        demo.run()
    except RunDirBusy as busy:
        who = f" (pid {busy.pid})" if busy.pid else ""
        console.say("demo", log_line("ERROR", "demo", f"another run is still using {args.run_dir}{who}: stop it "
                                     f"first (Ctrl-C in its terminal{f', or kill {busy.pid}' if busy.pid else ''})"))
        code = 1
    except Stopped:
        pass
    except DemoFailed as exc:
        console.say("demo", log_line("ERROR", "demo", str(exc)))
        code = 1
    finally:
        if demo is not None:
            demo.stop(signals.name or "the demo ends")
            demo.say("stopped (a second Ctrl-C: what still ran was killed)" if signals.hurry.is_set() else "stopped")
        console.close(timeout=2.0)
    return code


if __name__ == "__main__":
    os.umask(0o077)  # the run directory holds tokens and passwords
    sys.exit(main())
