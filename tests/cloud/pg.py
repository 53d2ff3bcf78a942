"""A throw-away PostgreSQL server for the tests: initdb in a temp directory, started on a free port.

``TWINEDGE_TEST_PG_URL`` points the tests at an existing server instead (a CI
service container, say). Otherwise the server binaries are looked up on PATH
and in /usr/lib/postgresql/*/bin; when none is found the tests FAIL with a
message that says what to install — they never skip quietly. PostgreSQL
refuses to run as root, so as root the cluster belongs to the ``postgres``
system user (created by the Debian package) and runs under ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

__all__ = ["PgServer", "PgUnavailable", "find_pg_bin", "fresh_pg_database", "start_cluster"]

URL_ENV = "TWINEDGE_TEST_PG_URL"
MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in /usr/lib/postgresql/*/bin. "
           "Install them with `deploy/scripts/system-deps.sh` (Debian package 'postgresql'), or set "
           f"{URL_ENV}=postgresql://user@host:port/db to use a running server.")


class PgUnavailable(RuntimeError):
    pass


def find_pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PgServer:
    url: str  # postgresql://user@127.0.0.1:port/postgres
    datadir: Path | None = None
    bindir: Path | None = None
    run_as: str | None = None

    def dsn(self, database: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + database

    def stop(self) -> None:
        if self.datadir is None or self.bindir is None:
            return
        _run(self.run_as, [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
             check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _run(user: str | None, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise PgUnavailable(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return proc


async def fresh_pg_database(server: PgServer) -> str:
    """A new empty database on the test server; returns its URL."""
    import asyncpg

    name = f"twincloud_test_{uuid.uuid4().hex[:12]}"
    con = await asyncpg.connect(server.url)
    try:
        await con.execute(f"CREATE DATABASE {name}")
    finally:
        await con.close()
    return server.dsn(name)


def start_cluster() -> PgServer:
    """Use TWINEDGE_TEST_PG_URL, or create and start a private cluster; raise PgUnavailable with the reason."""
    if url := os.environ.get(URL_ENV):
        return PgServer(url)
    bindir = find_pg_bin()
    if bindir is None:
        raise PgUnavailable(MISSING)
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgUnavailable("running as root, and there is no 'postgres' user to run the test server as "
                                "(the Debian 'postgresql' package creates it)") from None
        run_as = "postgres"
    # Not under pytest's tmp_path: that one is private to root, and the server runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="twinedge-pg-"))
    datadir, sockdir = base / "data", base / "sock"
    sockdir.mkdir()
    if run_as:
        shutil.chown(base, run_as)
        shutil.chown(sockdir, run_as)
    _run(run_as, [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C"])
    port = free_port()
    options = (f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -F -c full_page_writes=off "
               "-c synchronous_commit=off -c max_connections=200")
    _run(run_as, [str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options, "-l", str(base / "server.log"),
                  "-w", "-t", "60", "start"])
    return PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", datadir, bindir, run_as)
