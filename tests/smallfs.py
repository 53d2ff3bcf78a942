"""A real, small filesystem for disk-full tests: a tmpfs of a few MB that the test mounts (root only).

Without root the test is skipped with the reason. As root the mount must work:
CI runs as root, and a disk-full test that quietly skipped there would leave
the queue's promises on a full disk untested, so a failed mount fails the test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill_up", "small_filesystem"]


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: int) -> Iterator[Path]:
    """Mount a ``size_mb`` MB tmpfs at ``path`` for the duration of the block."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "twinedge-test", str(path)],
        capture_output=True, text=True, check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"running as root, but a tmpfs cannot be mounted at {path}: "
                    f"{mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill_up(path: Path, leave: int = 0) -> int:
    """Write ``path`` until the filesystem under it has at most ``leave`` bytes free; returns bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("ab", buffering=0) as out:
        while True:
            st = os.statvfs(path.parent)
            room = st.f_bavail * st.f_frsize - leave
            if room <= 0:
                return written
            try:
                out.write(chunk[: min(len(chunk), room)])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written
            written += min(len(chunk), room)
