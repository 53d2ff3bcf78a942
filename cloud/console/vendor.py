"""Fetch the console's third-party browser libraries (uPlot, three.js) at install time, pinned and checked.

    python -m cloud.console.vendor            # from the npm registry (make install runs this)
    python -m cloud.console.vendor --from DIR # from tarballs copied in by hand (a plant without internet)

``vendor.json`` names each npm package's version, the SHA-256 of its tarball
and the files taken from it. A tarball whose SHA-256 differs is refused and
nothing of it is written. The registry is the npm client's own setting: the
``npm_config_registry`` environment variable, else what ``npm config get
registry`` answers (npm is asked for its setting only; no Node.js code runs).
``--from DIR`` reads ``NAME-VERSION.tgz`` files instead, as ``npm pack
NAME@VERSION`` writes them on any machine. The files land in
``cloud/console/static/vendor`` (not in git), with a stamp of the lock they
came from, so that a second run with nothing changed does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import URLError

__all__ = ["LOCK", "VENDOR", "Package", "VendorError", "install", "read_lock"]

HERE = Path(__file__).parent
LOCK = HERE / "vendor.json"
VENDOR = HERE / "static" / "vendor"
STAMP = ".lock-sha256"
MAX_TARBALL = 64 * 1024**2


class VendorError(Exception):
    """A library cannot be fetched or does not match its pin."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    files: dict[str, str]

    @property
    def tarball(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def read_lock(path: Path = LOCK) -> tuple[list[Package], str]:
    """The pinned packages and the lock's own SHA-256."""
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        packages = [Package(p["name"], p["version"], p["sha256"].lower(), dict(p["files"])) for p in data["packages"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise VendorError(f"{path}: not a valid lock ({exc})") from None
    for package in packages:
        for target in package.files.values():
            parts = PurePosixPath(target).parts
            if PurePosixPath(target).is_absolute() or ".." in parts:
                raise VendorError(f"{path}: {package.name}: target {target!r} leaves the vendor directory")
    return packages, hashlib.sha256(raw).hexdigest()


def npm_registry() -> str:
    """The npm client's registry setting (its environment variable, else its own answer)."""
    for key in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        if os.environ.get(key):
            return os.environ[key].rstrip("/")
    npm = shutil.which("npm")
    if npm is not None:
        try:
            answer = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True,
                                    timeout=60, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            answer = ""
        if answer.startswith(("https://", "http://")):
            return answer.rstrip("/")
    raise VendorError("no npm registry is configured: set npm_config_registry to your npm registry's URL, "
                      "or copy the tarballs (npm pack NAME@VERSION) into a directory and pass --from DIR")


def _download(registry: str, package: Package) -> bytes:
    url = f"{registry}/{package.name}/-/{package.tarball}"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - an https URL from npm's setting
            data: bytes = response.read(MAX_TARBALL + 1)
    except (URLError, OSError) as exc:
        raise VendorError(f"{package.name} {package.version}: cannot download {url}: {exc}") from None
    if len(data) > MAX_TARBALL:
        raise VendorError(f"{package.name} {package.version}: the tarball is larger than {MAX_TARBALL:,} bytes")
    return data


def _extract(package: Package, data: bytes, vendor: Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != package.sha256:
        raise VendorError(f"{package.tarball}: SHA-256 is {digest}, the lock pins {package.sha256}; "
                          "nothing of it was written")
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for source in package.files:
                try:
                    member = tar.getmember(source)
                except KeyError:
                    raise VendorError(f"{package.tarball}: has no {source}") from None
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise VendorError(f"{package.tarball}: {source} is not a file")
                contents[source] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VendorError(f"{package.tarball}: not a readable tarball ({exc})") from None
    for source, target in package.files.items():
        path = vendor / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[source])


def install(lock: Path = LOCK, vendor: Path = VENDOR, source: Path | None = None) -> list[str]:
    """Fetch, check and unpack every pinned package unless the vendor directory holds this lock's already;
    returns what was installed (``name version``), empty when nothing needed doing."""
    packages, lock_sha = read_lock(lock)
    stamp = vendor / STAMP
    if stamp.exists() and stamp.read_text().strip() == lock_sha and all(
            (vendor / t).is_file() for p in packages for t in p.files.values()):
        return []
    registry = None if source is not None else npm_registry()
    for package in packages:
        if source is not None:
            try:
                data = (source / package.tarball).read_bytes()
            except OSError as exc:
                raise VendorError(f"{package.tarball}: cannot read it in {source}: {exc.strerror}") from None
        else:
            assert registry is not None
            data = _download(registry, package)
        _extract(package, data, vendor)
    stamp.write_text(lock_sha + "\n")
    return [f"{p.name} {p.version}" for p in packages]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud.console.vendor", description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="a directory of NAME-VERSION.tgz tarballs")
    parser.add_argument("--lock", type=Path, default=LOCK, help=argparse.SUPPRESS)
    parser.add_argument("--into", type=Path, default=VENDOR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        done = install(args.lock, args.into, args.source)
    except VendorError as exc:
        print(f"console libraries: {exc}", file=sys.stderr)
        return 1
    print(f"console libraries: {', '.join(done)} installed" if done else "console libraries: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
