"""The harvester's file side, run in a worker thread: list a folder's program files, and read one file
(bounded) into its record. Nothing here raises on a file's content, its size or its permissions.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
from dataclasses import dataclass, field
from pathlib import Path

from edge.programs import Limits, analyse
from edge.programs.profiles import MachineProfile
from shared.cnc import ProgramRecord

__all__ = ["FileStat", "FolderScan", "ReadResult", "read_program", "scan_folder"]

MAX_DEPTH = 16


@dataclass(frozen=True)
class FileStat:
    path: str  # relative to the folder, with '/'
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ReadResult:
    """A file read: its hash and record, or why it could not be read (``problem``, in plain words)."""

    sha256: str | None
    record: ProgramRecord | None = None
    problem: str | None = None


@dataclass
class FolderScan:
    """A folder's program files, and what the scan could not see: ``problem`` (the folder as a whole, in plain
    words), ``unread`` (subfolders that could not be listed) and ``truncated`` (more files than the limit).
    Known files in what was not seen are not gone."""

    files: list[FileStat] = field(default_factory=list)
    problem: str | None = None
    unread: list[str] = field(default_factory=list)
    truncated: bool = False
    device: int | None = None  # the folder's filesystem: a share unmounted leaves a mount point on another one


def scan_folder(root: Path, extensions: tuple[str, ...], *, recursive: bool, limit: int) -> FolderScan:
    """The folder's program files (at most ``limit``) and what could not be seen of it."""
    scan = FolderScan()
    found = scan.files
    try:
        st = root.stat()
    except OSError:
        st = None
    if st is None or not stat_module.S_ISDIR(st.st_mode):
        scan.problem = f"folder {root} is not there or not reachable"
        return scan
    scan.device = st.st_dev
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        if len(found) >= limit:
            scan.truncated = True
            break
        rel, depth = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as entries:
                for entry in entries:
                    name = entry.name
                    sub = f"{rel}/{name}" if rel else name
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if recursive and depth < MAX_DEPTH and not name.startswith("."):
                                stack.append((sub, depth + 1))
                        elif entry.is_file() and name.lower().endswith(extensions):
                            if len(found) >= limit:
                                scan.truncated = True
                                break
                            st = entry.stat()
                            found.append(FileStat(sub, st.st_size, st.st_mtime_ns))
                    except OSError:
                        if name.lower().endswith(extensions):  # a file seen but not stat-able: not gone
                            scan.unread.append(sub)
                        continue
        except OSError as exc:
            if not rel:
                scan.problem = f"folder {root} cannot be read ({exc.strerror or exc})"
                return scan
            scan.unread.append(rel)
    return scan


def _binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    text = sum(1 for b in head if b >= 32 or b in (9, 10, 13, 12))
    return bool(head) and text < 0.9 * len(head)


def read_program(root: Path, stat: FileStat, *, folder: str, max_size: int, profile: MachineProfile,
                 dialect: str | None, max_blocks: int, tool_diameters: dict[int, float] | None = None) -> ReadResult:
    """Read and interpret one program file (called in a worker thread)."""
    if stat.size > max_size:
        return ReadResult(None, problem=f"is {stat.size:,} bytes, larger than the {max_size:,} bytes the "
                                        "harvester reads (max_file_size)")
    try:
        with open(root / stat.path, "rb") as handle:
            data = handle.read(max_size + 1)
    except OSError as exc:
        return ReadResult(None, problem=f"cannot be read ({exc.strerror or exc})")
    if len(data) > max_size:
        return ReadResult(None, problem=f"grew past the {max_size:,} bytes the harvester reads (max_file_size)")
    sha = hashlib.sha256(data).hexdigest()
    if _binary(data):
        return ReadResult(sha, problem="is not a text file (binary content)")
    record = analyse(data, path=stat.path, folder=folder, mtime=stat.mtime_ns / 1e9, profile=profile,
                     dialect=dialect, limits=Limits(max_blocks=max_blocks), tool_diameters=tool_diameters)
    return ReadResult(sha, record=record)
