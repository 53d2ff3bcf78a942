"""CLI start-up benchmark: how long `twinedge --help` and `twinedge status` take, as a person types them.

Run: python bench/bench_cli.py [--runs 15]      (about 15 s)

Each command runs as a fresh process (`python -m edge.cli ...`, as the installed
`twinedge` script does), `status` against a real daemon started for the bench
(no sources, no broker). Prints the median and the slowest run, and which
heavy libraries each command imported.
Targets: `twinedge --help` < 0.2 s, `twinedge status` < 0.3 s on this machine (a Pi is several times slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pydantic", "asyncio", "asyncua", "pymodbus", "amqtt", "aiosqlite", "httpx", "cryptography")
TARGETS = {"--help": 0.2, "status": 0.3}


def timed(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def imported(args: list[str]) -> list[str]:
    """The heavy libraries a command loads (run in-process with -X importtime would be noisier)."""
    code = (
        "import sys, runpy; sys.argv = ['twinedge', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('edge.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('IMPORTED', ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("IMPORTED")), "IMPORTED ?")
    return [m for m in line.split(" ", 1)[1].split(",") if m]


def start_daemon(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    sock = tmp / "control.sock"
    config = tmp / "edge.toml"
    config.write_text(f'[edge]\nid = "bench-cli"\nstate_dir = "{tmp / "state"}"\n[control]\nsocket = "{sock}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while subprocess.run([sys.executable, "-m", "edge.cli", "status", "--socket", str(sock)], cwd=ROOT,
                         capture_output=True, check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the daemon did not start")
        time.sleep(0.2)
    return proc, sock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        proc, sock = start_daemon(Path(tmp))
        try:
            commands = {"--help": ["--help"], "status": ["status", "--socket", str(sock)]}
            print(f"\n{'command':<18}{'median':>9}{'slowest':>9}{'target':>9}  imports")
            for name, args in commands.items():
                times = timed(args, runs)
                median = statistics.median(times)
                verdict = "ok" if median < TARGETS[name] else "OVER"
                print(f"twinedge {name:<9}{median:>8.3f}s{max(times):>8.3f}s{TARGETS[name]:>8.1f}s  "
                      f"{', '.join(imported(args)) or '-'}  {verdict}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    bare = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - start)
    print(f"\n(a bare `python -c pass` takes {statistics.median(bare):.3f} s here)")
    load = os.getloadavg()[0]
    print(f"{runs} runs each. Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average (1 min) {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
