"""The console's libraries are installed from pinned tarballs: a tarball that differs from its pin writes nothing.

The tarballs here are made by the test in npm's layout (``package/...``),
read through ``--from`` as a plant without internet would; the pins are
those tarballs' SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from cloud.console import vendor


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def setup(tmp_path: Path, data: bytes, pin: str | None = None,
          files: dict[str, str] | None = None) -> tuple[Path, Path, Path]:
    source = tmp_path / "tarballs"
    source.mkdir(exist_ok=True)
    (source / "chart-1.0.0.tgz").write_bytes(data)
    lock = tmp_path / "vendor.json"
    lock.write_text(json.dumps({"packages": [{
        "name": "chart", "version": "1.0.0", "sha256": pin or hashlib.sha256(data).hexdigest(),
        "files": files or {"package/dist/chart.js": "chart/chart.js"}}]}))
    return lock, tmp_path / "vendor", source


def test_the_pinned_files_are_unpacked_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock, into, source = setup(tmp_path, tarball({"package/dist/chart.js": b"export const chart = 1;\n",
                                                  "package/README.md": b"not taken"}))
    assert vendor.main(["--lock", str(lock), "--into", str(into), "--from", str(source)]) == 0
    assert (into / "chart" / "chart.js").read_bytes() == b"export const chart = 1;\n"
    assert sorted(p.name for p in into.rglob("*") if p.is_file()) == [".lock-sha256", "chart.js"]
    assert capsys.readouterr().out == "console libraries: chart 1.0.0 installed\n"
    assert vendor.main(["--lock", str(lock), "--into", str(into), "--from", str(source)]) == 0
    assert capsys.readouterr().out == "console libraries: up to date\n"


def test_a_tarball_that_differs_from_its_pin_writes_nothing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tarball({"package/dist/chart.js": b"alert('changed upstream')"})
    lock, into, source = setup(tmp_path, data, pin="0" * 64)
    assert vendor.main(["--lock", str(lock), "--into", str(into), "--from", str(source)]) == 1
    err = capsys.readouterr().err
    assert err == (f"console libraries: chart-1.0.0.tgz: SHA-256 is {hashlib.sha256(data).hexdigest()}, the lock "
                   f"pins {'0' * 64}; nothing of it was written\n")
    assert not into.exists()


@pytest.mark.parametrize(("data", "files", "message"), [
    pytest.param(tarball({"package/other.js": b""}), None, "chart-1.0.0.tgz: has no package/dist/chart.js",
                 id="missing-file"),
    pytest.param(b"not a tarball", None, "chart-1.0.0.tgz: not a readable tarball", id="garbage"),
    pytest.param(tarball({"package/dist/chart.js": b""}), {"package/dist/chart.js": "../../escape.js"},
                 "target '../../escape.js' leaves the vendor directory", id="escape"),
])
def test_broken_tarballs_and_locks_are_refused_with_the_reason(tmp_path: Path, data: bytes,
                                                                files: dict[str, str] | None, message: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    lock, into, source = setup(tmp_path, data, files=files)
    assert vendor.main(["--lock", str(lock), "--into", str(into), "--from", str(source)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "escape.js").exists() and not into.exists()


def test_a_missing_tarball_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock, into, source = setup(tmp_path, b"")
    (source / "chart-1.0.0.tgz").unlink()
    assert vendor.main(["--lock", str(lock), "--into", str(into), "--from", str(source)]) == 1
    assert "chart-1.0.0.tgz: cannot read it in" in capsys.readouterr().err


def test_the_shipped_lock_pins_every_library_the_console_needs() -> None:
    packages, _ = vendor.read_lock()
    assert {p.name: p.version for p in packages} == {"uplot": "1.6.32", "three": "0.187.0"}
    assert all(len(p.sha256) == 64 for p in packages)
