"""Hostile-network benchmark: the daemon's embedded broker against floods of raw sockets.

Run: python bench/bench_hostile_network.py          (about 30 s)

The daemon (`twinedge run`) runs as a separate process with the 1,024 descriptors a
service gets by default, so that 1,100 connections are more than it could hold.
Attackers run in another process (no login needed except for the oversized PUBLISH):

1. 3,000 connections that send nothing or one byte and are closed by the client;
2. 1,100 connections opened at once and held idle past the connect timeout;
3. four clients that announce a 200 MB PUBLISH and send up to 64 MB of it.

During each phase a probe logs in as a normal device (CONNECT, QoS 1 PUBLISH,
PUBACK) and asks the control socket for `status` every 0.25 s. Printed per phase:
descriptors and RSS of the daemon afterwards, the slowest probe, the daemon's CPU,
and what it wrote to its log (lines, bytes, tracebacks).
Targets: a normal client and `status` served within 1 s throughout; RSS growth
< 10 MB; no traceback in the log.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack  # noqa: E402

from tests.e2e.daemon import PASSWORD, USER  # noqa: E402
from tests.e2e.hostile import HostileDaemon  # noqa: E402
from tests.edge.broker.mqttraw import PUBACK, PUBLISH, RawClient, close_all, fixed_header, open_silent  # noqa: E402

FRAME = msgpack.packb({"ts": 1_800_000_000.0, "sensors": {"temp": 20.5}})
PROBE_EVERY = 0.25


# --- attackers (run in a child process: python bench_hostile_network.py --attack ...) ---------------


def attack_silent(port: int, count: int) -> None:
    """``count`` connections in waves of 100: opened, half of them send one byte, closed by us."""
    done = 0
    while done < count:
        wave = open_silent(port, min(100, count - done))
        for sock in wave[1::2]:
            try:
                sock.send(b"\x10")
            except OSError:
                pass
        close_all(wave)
        done += 100


def attack_idle(port: int, count: int, hold: float) -> None:
    """``count`` connections opened as fast as possible and held without a byte for ``hold`` seconds."""
    socks = open_silent(port, count)
    print(f"opened {len(socks)}", flush=True)
    time.sleep(hold)
    close_all(socks)


async def attack_oversized(port: int, count: int) -> None:
    """``count`` clients at once: CONNECT, then a PUBLISH announcing 200 MB, sending up to 64 MB of it."""

    async def one(n: int) -> None:
        client, code, _ = await RawClient.connect(port, f"big-{n}", username=USER, password=PASSWORD)
        assert code == 0
        header = fixed_header(PUBLISH, 2, 200 * 1024 * 1024)
        chunk = b"\x00" * (1024 * 1024)
        try:
            await client.send(header + b"\x00\x07plant/x\x00\x01")
            for _ in range(64):
                await client.send(chunk)
        except ConnectionError:
            pass
        await client.abort()

    await asyncio.gather(*(one(n) for n in range(count)))


# --- the measuring side -----------------------------------------------------------------------------


@dataclass
class Probe:
    client: list[float] = field(default_factory=list)
    status: list[float] = field(default_factory=list)
    failures: int = 0
    fds_peak: int = 0
    rss_peak: float = 0.0

    async def once(self, daemon: HostileDaemon, port: int, n: int) -> None:
        self.fds_peak = max(self.fds_peak, daemon.descriptors())
        self.rss_peak = max(self.rss_peak, daemon.rss_mb())
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(5):
                client, code, _ = await RawClient.connect(port, f"probe-{n}", username=USER, password=PASSWORD)
                await client.publish("twin/probe/telemetry", FRAME, qos=1, packet_id=1)
                await client.read_kind(PUBACK)
                await client.disconnect()
            assert code == 0
            self.client.append(time.monotonic() - t0)
        except (TimeoutError, OSError, AssertionError):
            self.failures += 1
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(5):
                await daemon.status()
            self.status.append(time.monotonic() - t0)
        except (TimeoutError, OSError):
            self.failures += 1

    async def run(self, daemon: HostileDaemon, port: int, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await self.once(daemon, port, n)
            try:
                async with asyncio.timeout(PROBE_EVERY):
                    await stop.wait()
            except TimeoutError:
                pass


@dataclass
class Row:
    phase: str
    fds_peak: int
    fds: int
    rss_peak: float
    rss: float
    client_max: float
    status_max: float
    failures: int
    cpu: float
    log_lines: int
    log_bytes: int
    tracebacks: int


async def phase(daemon: HostileDaemon, name: str, attack: list[str], settle: float) -> Row:
    """Run one attacker process with the probe going; measure ``settle`` s after the attacker ended."""
    port = daemon.ports["default"]
    log_before = len(daemon.log_text())
    cpu_before = daemon.cpu_seconds()
    stop, probe = asyncio.Event(), Probe()
    prober = asyncio.create_task(probe.run(daemon, port, stop), name="probe")
    attacker = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--attack", *attack, "--port", str(port), stdout=subprocess.PIPE
    )
    out, _ = await attacker.communicate()
    await asyncio.sleep(settle)
    stop.set()
    await prober
    new_log = daemon.log_text()[log_before:]
    row = Row(
        phase=name, fds_peak=probe.fds_peak, fds=daemon.descriptors(), rss_peak=probe.rss_peak, rss=daemon.rss_mb(),
        client_max=max(probe.client, default=float("nan")), status_max=max(probe.status, default=float("nan")),
        failures=probe.failures, cpu=daemon.cpu_seconds() - cpu_before,
        log_lines=len(new_log.splitlines()), log_bytes=len(new_log.encode()), tracebacks=new_log.count("Traceback"),
    )
    if out.strip():
        print(f"  {name}: attacker {out.decode().strip()}", flush=True)
    return row


async def idle_row(daemon: HostileDaemon, name: str) -> Row:
    probe = Probe()
    for n in range(4):
        await probe.once(daemon, daemon.ports["default"], n)
    return Row(name, probe.fds_peak, daemon.descriptors(), probe.rss_peak, daemon.rss_mb(), max(probe.client),
               max(probe.status), probe.failures, 0.0, 0, 0, 0)


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        daemon = HostileDaemon(Path(tmp), listeners={"default": ""},
                               broker_toml=f'connect_timeout = "{args.connect_timeout:g}s"', nofile=1024)
        await daemon.astart()
        try:
            rows = [await idle_row(daemon, "started")]
            rows.append(await phase(daemon, f"{args.silent:,} silent, closed by client", ["silent", str(args.silent)],
                                    settle=1.0))
            hold = args.connect_timeout + 2
            rows.append(await phase(daemon, f"{args.idle:,} idle, held {hold:g} s", ["idle", str(args.idle),
                                    "--hold", str(hold)], settle=1.0))
            rows.append(await phase(daemon, "4 oversized PUBLISH", ["oversized", "4"], settle=1.0))
            mqtt = (await daemon.status())["mqtt"]
            alive = daemon.alive()
        finally:
            daemon.stop()
        log = daemon.log_text()
    report(rows, mqtt, alive, log)


def report(rows: list[Row], mqtt: dict, alive: bool, log: str) -> None:
    print("\nhostile network: daemon with 1,024 descriptors, one listener; probe every 0.25 s")
    print("fds and RSS: the highest seen during the phase / after it; client and status: the slowest probe")
    print(f"{'phase':32} {'fds':>10} {'RSS MB':>12} {'client s':>9} {'status s':>9} {'fail':>5} {'CPU s':>6} "
          f"{'log lines':>9} {'log kB':>7} {'tracebacks':>10}")
    for r in rows:
        print(f"{r.phase:32} {f'{r.fds_peak}/{r.fds}':>10} {f'{r.rss_peak:.1f}/{r.rss:.1f}':>12} "
              f"{r.client_max:>9.3f} {r.status_max:>9.3f} {r.failures:>5} {r.cpu:>6.2f} {r.log_lines:>9} "
              f"{r.log_bytes / 1000:>7.1f} {r.tracebacks:>10}")
    growth = max(r.rss_peak for r in rows) - rows[0].rss
    listener = mqtt["listeners"][0]
    print(f"\nconnection limit {listener['limit']}; refused at the limit {mqtt['refused_at_limit']}, closed for "
          f"newer {mqtt['closed_for_newer']}, connect timeouts {mqtt['connect_timeouts']}, oversized "
          f"{mqtt['oversized_packets']}, protocol errors {mqtt['protocol_errors']}")
    worst_client = max(r.client_max for r in rows)
    worst_status = max(r.status_max for r in rows)
    print(f"slowest normal client {worst_client:.3f} s, slowest status {worst_status:.3f} s (target < 1 s); "
          f"RSS growth {growth:.1f} MB (target < 10); tracebacks {log.count('Traceback')} (target 0); "
          f"whole log {len(log.splitlines())} lines; daemon {'alive' if alive else 'DEAD'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--silent", type=int, default=3000)
    parser.add_argument("--idle", type=int, default=1100)
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (the daemon's default: 10)")
    parser.add_argument("--attack", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=float, default=12.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker needs more than 1,024
        kind, count = args.attack[0], int(args.attack[1])
        if kind == "silent":
            attack_silent(args.port, count)
        elif kind == "idle":
            attack_idle(args.port, count, args.hold)
        else:
            asyncio.run(attack_oversized(args.port, count))
        return
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
