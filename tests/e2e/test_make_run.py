"""`make run` as a person meets it: typed in a terminal, piped through `tee`, and ended by Ctrl-C, by
closing the terminal or by SIGTERM; and the demo killed outright.

After each ending no process of that run is left (make, the demo, tee, the
cloud, the simulator, the edge) and every port it used is free again, so the
next `make run` gets the same ports. The live summary fits 100 columns and
shows every device, and every line says which process it comes from, in one
log format. The three endings run side by side (each start-up takes seconds
of CPU, mostly imports), in terminals of their own.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.e2e.terminal import Terminal, processes_mentioning
from tests.support import free_port, free_ports

REPO = Path(__file__).resolve().parents[2]
# `make test` runs these tests inside make: its variables would make the nested `make run` print
# "Entering directory" lines and inherit flags, unlike what a person types in a terminal.
USER_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
STAMP = ".venv/.installed-stamp"  # the Makefile's install stamp: `make -o` keeps make from installing
STOP_BOUND = 30.0  # seconds: the demo gives each child 10 s, then kills it
DEVICES = ("lathe-1", "machine-1", "machine-1-opcua", "station-1")  # as the summary sorts them
TAGS = ("cloud", "sim", "cnc", "edge", "demo")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+: ")


@dataclass
class Run:
    dir: Path
    log: Path
    ports: dict[str, int]

    def args(self) -> list[str]:
        return ["--run-dir", str(self.dir), "--machines", "1", "--refresh", "1",
                *(arg for name, port in self.ports.items() for arg in (f"--{name}-port", str(port)))]

    def make_command(self) -> list[str]:
        return ["make", "-o", STAMP, "run", f"PY={sys.executable}", f"RUN_ARGS={shlex.join(self.args())}"]

    def demo_pid(self) -> int:
        return int((self.dir / ".demo.lock").read_text())


def load_script_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "deploy" / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_summary_shows_every_device_on_one_line_of_at_most_100_columns() -> None:
    summary = load_script_module("demo_summary")
    at = 1_800_000_000.0

    def state(device: str, age: float | None, **values: object) -> dict[str, object]:
        return {"device_id": device, "ts": None if age is None else at - age,
                "values": {k: {"ts": at, "value": v} for k, v in values.items()}}

    edge = {"last_seen": at, "frames_stored": 1_234_567, "queue_depth": 12_345,
            "sources": {"machine-1": "connected", "sim-opcua": "connecting"}}
    states = [
        state("machine-1", 0.4, running=True, alarm_code=0, spindle_temp=41.26, vibration_rms=1.5, motor_current=16.1,
              spindle_speed=3000, cycle_count=4_294_967_295),
        state("machine-2-opcua", 250.0, running=True, alarm_code=101, spindle_temp=83.4, vibration_rms=1.25,
              motor_current=17.0, spindle_speed=2400.0, cycle_count=12),
        state("a-device-with-a-name-far-too-long-for-a-column", 3.0, temp=21.5, humidity=40.123456, text="x" * 80),
        state("lathe-1", 1.5, Lpexecution="ACTIVE", Lpprogram="IMTS-2022-1E-mm.MIN", Lppartcount=7, Xact=12.5),
        state("waiting", None),
    ]
    lines = summary.summary_lines(edge, "demo-edge", states, at)
    assert all(len("demo  | " + line) <= 100 for line in lines), lines
    header, titles, *rows = lines
    assert "1,234,567 frames from demo-edge; edge: queue 12,345, 1/2 sources connected" in header
    assert titles.split()[:6] == ["device", "state", "spindle", "°C", "vib", "mm/s"]
    assert [row.split()[0] for row in rows] == ["machine-1", "machine-2-opcua", "a-device-with-a-n…", "lathe-1",
                                                "waiting"]
    assert rows[0].split()[1:8] == ["run", "41.3", "1.50", "16.1", "3,000", "4,294,967,295", "0.4"]
    assert rows[1].split()[1] == "OVERTEMP" and rows[1].endswith("4 min ago")
    assert "humidity 40.12  temp 21.50" in rows[2] and rows[2].endswith("3.0 s ago")
    assert rows[3].split()[1:6] == ["active", "program", "IMTS-2022-1E-mm.MIN", "parts", "7"]
    assert rows[3].endswith("1.5 s ago")
    assert rows[4].endswith("no data yet")


def test_a_second_run_gets_the_port_back_from_connections_of_the_first_in_time_wait() -> None:
    procs = load_script_module("demo_procs")
    with socket.socket() as server:  # a cloud that closed its side of a request first, then stopped
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            accepted.close()
    warnings: list[str] = []
    assert procs.pick_port("the cloud", port, 1, warnings.append) == port
    assert warnings == []
    with socket.socket() as other:  # another program listens there: a free port, and a warning that says so
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        picked = procs.pick_port("the cloud", port, 1, warnings.append)
    assert picked != port
    assert warnings == [f"port {port} (the cloud) is taken by another program; using {picked} instead"]


def new_run(base: Path) -> Run:
    ports = {"cloud": free_port(), "modbus": free_ports(2), "opcua": free_port(), "mqtt": free_port(),
             "mtconnect": free_port()}  # + station
    base.mkdir()
    return Run(base / "run", base / "make-run.log", ports)


def start_in_terminal(term: Terminal, run: Run) -> None:
    """Type `make run ... 2>&1 | tee LOG`, checking first that make would run the demo and nothing else."""
    dry = subprocess.run([*run.make_command(), "-n"], cwd=REPO, capture_output=True, text=True, check=True,
                         env=USER_ENV)
    assert dry.stdout.count("\n") == 1 and "demo.py" in dry.stdout, f"make run would do more: {dry.stdout}"
    term.type(f"{shlex.join(run.make_command())} 2>&1 | tee {run.log}")


def assert_all_gone(run: Run, ending: str) -> None:
    """Within STOP_BOUND: no process mentions the run's directory, and every port refuses connections."""
    deadline = time.monotonic() + STOP_BOUND
    while (left := processes_mentioning(str(run.dir.parent))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"{ending}: still running {STOP_BOUND:.0f} s after the end: {left}"
    for name, port in run.ports.items():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"{ending}: the {name} port {port} still answers"
        with socket.socket() as sock:  # and a new run can listen there (as the servers do: SO_REUSEADDR)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def last_summary(text: str) -> list[str]:
    """The last summary the terminal showed: header, column titles, one line per device."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    start = max(i for i, line in enumerate(lines) if line.startswith("demo  | ") and " cloud: " in line)
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("demo  | "):
            continue  # a child's line in between
        if block and LOG_LINE.match(line[8:]):
            break
        block.append(line)
    return block


def devices_in(summary: list[str]) -> list[str]:
    return [line.split()[2] for line in summary[2:]]


def assert_one_log_format(log: Path) -> None:
    logged = log.read_text().splitlines()[1:]  # the first line is make's echo of the command
    assert any(line.startswith("edge  | ") for line in logged)
    for line in logged:
        tag, bar, text = line.partition(" | ")
        assert bar and tag.strip() in TAGS, line
        if tag.strip() != "demo":  # (a record of several lines would go on indented: none in a good run)
            assert LOG_LINE.match(text), line


def test_ctrl_c_hang_up_and_sigterm_each_stop_every_process_and_free_the_ports(tmp_path: Path) -> None:
    # As in a terminal whose shell runs under a systemd unit: the children's lines still reach the demo,
    # and must stay in the terminal format, not the journal's.
    env = {**USER_ENV, "PYTHONPATH": str(REPO), "INVOCATION_ID": "0" * 32, "JOURNAL_STREAM": "8:12345"}
    runs = {ending: new_run(tmp_path / ending) for ending in ("ctrl-c", "hang-up", "sigterm")}
    terminals = {ending: Terminal(REPO, env) for ending in runs}
    try:
        for ending, run in runs.items():
            start_in_terminal(terminals[ending], run)
        for term in terminals.values():
            term.wait_for(" frames from demo-edge", timeout=120)
        shown = terminals["ctrl-c"].wait_for(f"demo  | {DEVICES[-1]} ", timeout=60)  # its row of a summary
        deadline = time.monotonic() + 60  # the first summaries may list only the devices that sent data already
        while devices_in(last_summary(shown)) != list(DEVICES) and time.monotonic() < deadline:
            time.sleep(1)
            shown = terminals["ctrl-c"].wait_for(f"demo  | {DEVICES[-1]} ", timeout=60)

        sigterm = runs["sigterm"]
        second = subprocess.run([sys.executable, "deploy/scripts/demo.py", *sigterm.args()], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"another run is still using {sigterm.dir} (pid {sigterm.demo_pid()})" in second.stdout

        terminals["ctrl-c"].ctrl_c()  # SIGINT to make, the demo and tee: tee dies, the demo writes to a closed pipe
        terminals["hang-up"].hang_up()  # SIGHUP to bash, which passes it to make, the demo and tee
        os.kill(sigterm.demo_pid(), signal.SIGTERM)  # as a supervisor stops it
        for ending, run in runs.items():
            assert_all_gone(run, ending)
    finally:
        for term in terminals.values():
            term.close()
        for pid in processes_mentioning(str(tmp_path)):  # after a failure only: nothing may outlive the test
            os.kill(pid, signal.SIGKILL)

    summary = last_summary(shown)
    assert devices_in(summary) == list(DEVICES), summary
    assert all(len(line) <= 100 for line in summary), summary
    assert re.search(r" cloud: [1-9][\d,]* frames from demo-edge", summary[0]), summary[0]
    assert_one_log_format(runs["ctrl-c"].log)


def test_a_child_stops_by_itself_when_the_demo_is_killed(tmp_path: Path) -> None:
    """The kernel's parent-death signal: a simulator started as the demo starts it gets SIGTERM when its
    parent is SIGKILLed, and closes its servers although its output pipe has no reader any more."""
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, str(REPO / "deploy" / "scripts"), str(port), str(tmp_path / "ready")],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**USER_ENV, "PYTHONPATH": str(REPO)},
    ) as parent:
        try:
            assert parent.stdout is not None
            for line in parent.stdout:
                if "twinsim ready" in line:
                    break
            child = int((tmp_path / "child.pid").read_text())
            parent.kill()
            parent.wait()
            deadline = time.monotonic() + STOP_BOUND
            while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not processes_mentioning(str(tmp_path)), f"pid {child} outlived the demo"
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0
        finally:
            for pid in processes_mentioning(str(tmp_path)):
                os.kill(pid, signal.SIGKILL)


PARENT = """\
import pathlib, sys, time
sys.path.insert(0, sys.argv[1])
from demo_procs import Child, Console
child = Child("the simulator", "sim", ["-m", "twinsim.cli", "run", "--machines", "1", "--no-opcua", "--modbus-port",
              sys.argv[2], "--summary-every", "0s", "--ready-file", sys.argv[3]], Console())
pathlib.Path(sys.argv[3]).with_name("child.pid").write_text(str(child.pid))
time.sleep(120)
"""
