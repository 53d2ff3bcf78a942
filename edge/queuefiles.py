"""The queue on disk: its files, how much disk it may use, the reserve, the "disk full" report, its errors.

The queue's directory is created 0750 and its file 0640 (SQLite gives the WAL
and its index the file's mode); a file that SQLite finds damaged is set aside.

The queue's budget is the smaller of ``store.disk_budget`` and what the
filesystem can still give: the queue's files as they are, plus the free space,
minus a headroom kept free for SQLite's write-ahead log (WAL) to grow until its
next checkpoint. The WAL and its index (``-wal``, ``-shm``) count as used.

SQLite needs free disk to delete rows (each delete is written to the WAL first),
so a full disk could leave a queue that can neither take nor drain. A reserve
file beside the queue (``queue.db-reserve``) is removed when SQLite reports a
full disk, which gives it the room to delete; it is made again once the disk
has room. The reserve counts against the configured budget.

One unit, the *slack*, sizes the WAL's steady size (its checkpoint point and
``journal_size_limit``), the reserve and the headroom: 1/32 of what the queue
can hold, between 64 KiB and 4 MiB.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.sources.base import QueueFull
from shared.errors import TwinedgeError

__all__ = [
    "HINT",
    "DiskFull",
    "DiskSpace",
    "DiskUsage",
    "FullReport",
    "QueueFull",
    "StoreError",
    "prepare_files",
    "set_aside_if_damaged",
    "slack_for",
]

log = logging.getLogger(__name__)

SLACK_MIN = 64 * 1024
SLACK_MAX = 4 * 1024 * 1024
REPORT_EVERY = 60.0  # seconds between two "the queue is full" warnings
FILE_MODE = 0o640
DIR_MODE = 0o750
HINT = "check that the service user may read and write it and that the disk is not full"


class StoreError(TwinedgeError):
    """The queue file cannot be opened, read or written."""


class DiskFull(StoreError):
    """SQLite reported a full disk (SQLITE_FULL)."""


def _why_not_a_directory(directory: Path, exc: OSError) -> str:
    """The cause of a failed mkdir in words: which part of the path is a file, or the OS's reason."""
    for part in (directory, *directory.parents):
        if part.exists():
            if not part.is_dir():
                return f"{part} is a file, not a directory"
            break
    if isinstance(exc, PermissionError):
        return f"permission denied for user id {os.geteuid()}"
    return exc.strerror or str(exc)


def prepare_files(path: Path) -> None:
    """Create the queue's directory (0750) and file (0640); take other users' access away from older files."""
    directory = path.parent
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the queue directory {directory}: {_why_not_a_directory(directory, exc)}; "
            "set edge.state_dir (or store.path) to a directory the service can write"
        ) from None
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        os.close(fd)  # SQLite gives the -wal and -shm files the same mode as this one
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(
            f"cannot create the queue file {path}: {exc.strerror}; check that the service may write {directory}"
        ) from None
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):  # a file we do not own keeps its mode; SQLite says if it cannot use it
            mode = file.stat().st_mode
            if mode & 0o007 and file.stat().st_uid == os.geteuid():
                file.chmod(mode & 0o770)
                log.info("took other users' access away from %s (it was mode %03o)", file, mode & 0o777)


def set_aside_if_damaged(path: Path) -> str | None:
    """Move a damaged queue file aside (loudly) so the edge can go on with a fresh one."""
    if not path.exists():
        return None
    reason: str | None = None
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            reason = "; ".join(str(r) for r in rows[:5])
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            # Unreadable (permissions, I/O, a full disk), not damaged: never set a good file aside for that.
            raise StoreError(f"cannot read the queue file {path}: {exc}; {HINT}") from None
        reason = str(exc)
    if reason is None:
        return None
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                src.rename(Path(str(aside) + suffix))
    except OSError as exc:
        raise StoreError(f"the queue file {path} is damaged ({reason}) and cannot be moved aside: "
                         f"{exc.strerror}; move it away by hand") from None
    log.error(
        "queue file %s is damaged (%s); it was moved to %s and a new, empty queue was started. "
        "Frames in the damaged file were NOT sent; keep that file for recovery.",
        path, reason, aside,
    )
    return reason


def slack_for(capacity: int, page_size: int = 4096) -> int:
    """The WAL's steady size and the unit of the reserve and the headroom, for a queue of ``capacity`` bytes."""
    slack = min(max(capacity // 32, SLACK_MIN), SLACK_MAX)
    return max(page_size, slack - slack % page_size)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


@dataclass(frozen=True)
class DiskUsage:
    """One measurement of the queue's disk use against its budget (all in bytes)."""

    used: int  # the queue's pages in use (not the free list), plus the WAL and its index
    wal: int  # the -wal (at least its steady size) and -shm files, part of ``used``
    fs_free: int  # what the filesystem can still give this process
    budget: int  # the effective budget: ``limit``, capped by the disk
    limit: int  # store.disk_budget minus the reserve
    configured: int  # store.disk_budget
    reserve: int  # the reserve file's size (0 while it is released)

    @property
    def capped(self) -> bool:
        """Is the budget smaller than configured because the filesystem has no more room?"""
        return self.budget < self.limit

    def describe(self) -> str:
        """The budget in words: '256 MB budget' or '17.4 MB (budget 256 MB capped by the disk, ...)'."""
        if not self.capped:
            return f"{self.configured / 1e6:.0f} MB budget"
        return (f"{_mb(self.budget)} (budget {self.configured / 1e6:.0f} MB capped by the disk: "
                f"the filesystem has {_mb(self.fs_free)} free)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used, "budget_bytes": self.budget, "budget_configured_bytes": self.configured,
            "capped_by_disk": self.capped, "fs_free_bytes": self.fs_free, "wal_bytes": self.wal,
            "reserve_bytes": self.reserve,
        }


class DiskSpace:
    """Measures the queue's files and the filesystem under them; owns the reserve file."""

    def __init__(self, path: Path, configured: int) -> None:
        self.path = path
        self.configured = configured
        self.reserve_path = path.with_name(path.name + "-reserve")
        self._files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        self.slack = slack_for(configured)
        self._can_reserve = True  # False once the filesystem refused the reserve for a reason other than room

    def setup(self, page_size: int) -> int:
        """Size the slack from the budget and the filesystem; returns it (the WAL's steady size in bytes)."""
        st = os.statvfs(self.path.parent)
        self.slack = slack_for(min(self.configured, st.f_blocks * st.f_frsize), page_size)
        return self.slack

    @property
    def reserve_size(self) -> int:
        return 2 * self.slack

    @property
    def headroom(self) -> int:
        """Free disk kept for the WAL to grow until its next checkpoint (and a transaction beyond it)."""
        return 2 * self.slack

    def measure(self, live: int) -> DiskUsage:
        """``live``: bytes of the queue's pages in use (page_count - freelist_count, times the page size)."""
        db, wal, shm = (_size(p) for p in self._files)
        st = os.statvfs(self.path.parent)
        fs_free = st.f_bavail * st.f_frsize
        reserve = _size(self.reserve_path)
        # A released reserve stays set aside: the queue must not grow into the room it needs back.
        cap = db + wal + shm + fs_free - self.headroom - (self.reserve_size - reserve)
        limit = max(0, self.configured - self.reserve_size)
        # The WAL counts at least at its steady size: it goes back there after each checkpoint.
        wal_counted = max(wal, self.slack) + shm
        return DiskUsage(
            used=live + wal_counted, wal=wal_counted, fs_free=fs_free, budget=max(0, min(limit, cap)),
            limit=limit, configured=self.configured, reserve=reserve,
        )

    # --- the reserve -----------------------------------------------------------

    def make_reserve(self) -> bool:
        """Create the reserve file if it is missing and the disk has room for it; True when it exists."""
        if _size(self.reserve_path) >= self.reserve_size:
            return True
        if not self._can_reserve:
            return False
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < self.reserve_size + self.headroom:
                return False
            fd = os.open(self.reserve_path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_size)
            finally:
                os.close(fd)
        except OSError as exc:
            # No room after all (tried again later), or a filesystem that cannot: go on without a reserve.
            self._can_reserve = exc.errno == errno.ENOSPC
            log.log(logging.DEBUG if self._can_reserve else logging.WARNING,
                    "could not create the queue's reserve file %s: %s", self.reserve_path, exc.strerror or exc)
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            return False
        return True

    def release_reserve(self) -> bool:
        """Remove the reserve file to give SQLite room; True if there was one."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot remove the queue's reserve file %s: %s", self.reserve_path, exc.strerror or exc)
            return False
        log.warning(
            "the disk under %s is full; released the queue's %s reserve so that frames can still be "
            "deleted (it is made again once the disk has room)", self.path.parent, _mb(self.reserve_size),
        )
        return True


class FullReport:
    """The "queue is full" WARNING: at once the first time, then at most one per interval, with counts.

    Also what ``status`` shows: whether the policy applied within the last interval.
    """

    def __init__(self, policy: str, every: float = REPORT_EVERY) -> None:
        self.policy = policy
        self.every = every
        self.last_applied: float | None = None  # monotonic time the policy last applied
        self._last_log: float | None = None
        self._pending: Counter[str] = Counter()
        self.usage: DiskUsage | None = None
        # Told each line this report logs: (kind, line, counts) with kind "queue_full" or "queue_room_again".
        self.observer: Callable[[str, str, dict[str, int]], None] | None = None

    def applied(self, usage: DiskUsage, counts: dict[str, int], totals: dict[str, int]) -> None:
        """The policy dropped or refused frames (``counts`` by kind: dropped, refused, unacked)."""
        now = time.monotonic()
        self.last_applied = now
        self.usage = usage
        self._pending.update({k: v for k, v in counts.items() if v})
        if self._last_log is not None and now - self._last_log < self.every:
            return
        first = self._last_log is None or now - self._last_log >= 2 * self.every
        self._tell(logging.WARNING, "queue_full", self._line(usage, totals, first=first))
        self._last_log = now
        self._pending.clear()

    def room_again(self, usage: DiskUsage) -> None:
        """Below the budget again after the policy applied: say so once (with what the last interval held)."""
        if self.last_applied is None:
            return
        if self._pending:
            self._tell(logging.WARNING, "queue_full", self._line(self.usage or usage, {}, first=False))
            self._pending.clear()
        self._tell(logging.INFO, "queue_room_again",
                   f"the queue has room again: {_mb(usage.used)} of {usage.describe()}")
        self.last_applied = None
        self._last_log = None

    def _tell(self, level: int, kind: str, line: str) -> None:
        log.log(level, "%s", line)
        if self.observer is not None:
            self.observer(kind, line, dict(self._pending))

    def is_full(self) -> bool:
        return self.last_applied is not None and time.monotonic() - self.last_applied < self.every

    def _line(self, usage: DiskUsage, totals: dict[str, int], *, first: bool) -> str:
        why = (f"the disk is full: the filesystem has {_mb(usage.fs_free)} free and the queue keeps "
               f"{_mb(usage.used)} (budget {usage.configured / 1e6:.0f} MB capped by the disk)"
               if usage.capped else f"the queue reached its disk budget of {usage.configured / 1e6:.0f} MB")
        done = []
        if n := self._pending["dropped_oldest"]:
            done.append(f"dropped the {n:,} oldest frames")
        if n := self._pending["unacked"]:
            done.append(f"refused {n:,} frames from MQTT devices without acknowledging them (they resend)")
        if n := self._pending["dropped_new"]:
            done.append(f"dropped {n:,} new frames from pollers and QoS 0 publishers")
        since = "since it filled" if first else f"in the last {self.every:.0f} s"
        total = ", ".join(f"{k} {v:,}" for k, v in sorted(totals.items()) if v)
        return f"{why}; policy {self.policy}: {'; '.join(done) or 'nothing dropped'} {since}" + (
            f" (so far: {total})" if total else "")
